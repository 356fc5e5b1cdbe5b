/* CPU versions of the version-2 backend ops, argmax and the KV-row quantization (cpu_ops_extra.c),
 * entered in CPU_OPS. */
#ifndef LM_CPU_OPS_EXTRA_H
#define LM_CPU_OPS_EXTRA_H
#include "backend/backend.h"

void lm_cpu_upload(lm_backend *be, void *dst, const void *src, size_t bytes);
void lm_cpu_download(lm_backend *be, void *dst, const void *src, size_t bytes);
void lm_cpu_zero(lm_backend *be, void *p, size_t bytes);
void lm_cpu_softcap(lm_backend *be, float *x, float cap, size_t n);
void lm_cpu_mul_rows(lm_backend *be, float *x, const float *w, int rows, int n);
void lm_cpu_copy_rows(lm_backend *be, float *dst, size_t dst_ld, const float *src, size_t src_ld, int rows, int n);
void lm_cpu_argmax(lm_backend *be, const float *x, int V, lm_argmax_out *out);
/* x[V] (host memory) = lm_logit_ops_apply(x, ops, n) */
void lm_cpu_edit_logits(lm_backend *be, float *x, const lm_logit_op *ops, int n);
void lm_cpu_kv_quantize(lm_backend *be, const float *x, int n, int dim, int bits, int group, uint8_t *q, float *s,
                        float *b);
void lm_cpu_kv_dequant(lm_backend *be, const uint8_t *q, const float *s, const float *b, int n, int dim, int bits,
                       int group, float *out);
void lm_cpu_moe_route(lm_backend *be, const float *logits, int T, int E, int K, int topk_softmax, int norm_topk,
                      int32_t *idx, float *w);
void lm_cpu_gather_rows(lm_backend *be, const float *src, const int32_t *rows, int n, int dim, float *dst);
void lm_cpu_scatter_add_rows(lm_backend *be, float *dst, const float *src, const int32_t *rows, const float *w, int n,
                             int dim);
void lm_cpu_sparsify(lm_backend *be, float *x, int T, int n, float mult);
void lm_cpu_rms_match(lm_backend *be, float *y, const float *ref, int T, int n);
void lm_cpu_altup_predict(lm_backend *be, const float *streams, const float *coef, int ns, int T, int H, float *pred);
void lm_cpu_altup_correct(lm_backend *be, float *streams, const float *pred, const float *x, const float *active,
                          const float *w, int ns, int T, int H);

#endif
