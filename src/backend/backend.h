/* The op interface the decoder runs on. A backend owns its memory (host for the CPU, device
 * for CUDA); activations passed to ops live in memory from be->ops->alloc. Each optional slot
 * says what happens when it is NULL. Version bumps when a slot's meaning changes. */
#ifndef LM_BACKEND_BACKEND_H
#define LM_BACKEND_BACKEND_H
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "io/config.h"
#include "layers/linear.h"

#define LM_BACKEND_OPS_VERSION 8

typedef struct lm_backend lm_backend;

typedef struct lm_attn_args {
    const float *q;        /* [T, n_heads*head_dim] */
    const void *k, *v;     /* cache rows [n_rows, n_kv*head_dim]: f32, or f16 when kv_f16 */
    int kv_f16;            /* (version 8) only where the ops' attn_f16 is set */
    const int32_t *kpos;   /* [n_rows] absolute position of each row (< 0: empty), NULL: row i is position i */
    int n_rows;
    const int32_t *qpos;   /* [T] absolute positions of the queries */
    int T, n_heads, n_kv, head_dim;
    int window;            /* 0: none; else a key is visible when qpos - kpos < window */
    float scale;           /* on q.k */
    float softcap;         /* 0: none; else cap * tanh(s / cap) */
    const float *sinks;    /* [n_heads] extra logit per head in the softmax (GPT-OSS), or NULL */
    float *out;            /* [T, n_heads*head_dim] */
} lm_attn_args;

/* Rotary embeddings applied by the kv_put op on its way (the rope op's arithmetic): q [T,
 * n_heads * head_dim] in place, and the keys as they are written into the cache. */
typedef struct lm_rope_args {
    float *q;
    int n_heads, n_kv, head_dim, rot_dim;
    const float *cs; /* [T, rot_dim]: cos then sin per token (the rope op's table) */
} lm_rope_args;

/* The greedy pick of one row of logits (the argmax op's result, in backend memory). */
typedef struct lm_argmax_out {
    int32_t token;
    float logprob;
} lm_argmax_out;

/* A logit processor's change to one token's logit (generate/sampler.c's lm_sampler_logit_ops):
 * LM_LOGIT_ADD x += v; LM_LOGIT_REP x = x < 0 ? x * v : x / v; LM_LOGIT_SUB x -= v, `count`
 * times over (the float operations of mlx-lm's processors, in their order). */
typedef enum { LM_LOGIT_ADD, LM_LOGIT_REP, LM_LOGIT_SUB } lm_logit_kind;
typedef struct lm_logit_op {
    int32_t token; /* in [0, V) */
    int32_t kind;  /* lm_logit_kind */
    int32_t count; /* LM_LOGIT_SUB: times applied; else 1 */
    float v;
} lm_logit_op;

/* x[V] after ops[0 .. n), which are sorted by token, each token's ops in the order they apply
 * (the host's reference; the CPU backend's edit_logits op). */
void lm_logit_ops_apply(float *x, const lm_logit_op *ops, int n);

/* The sampler chain of a step with temp > 0 (generate/sampler.c's lm_sampler_sample, without the
 * logit processors and XTC), for the sample op. */
typedef struct lm_sample_args {
    float temp;
    float top_p;  /* applied when in (0, 1) */
    float min_p;  /* applied when != 0, keeping at least min_keep tokens when min_keep > 1 */
    int min_keep;
    int top_k;    /* applied when in (0, V) */
    double u;     /* the categorical draw, in [0, 1) */
} lm_sample_args;

typedef struct lm_backend_ops {
    int version;
    const char *name;
    void (*destroy)(lm_backend *be);
    void *(*alloc)(lm_backend *be, size_t bytes); /* NULL on failure */
    void (*release)(lm_backend *be, void *p);
    /* dst = src (both from alloc) */
    void (*copy)(lm_backend *be, void *dst, const void *src, size_t bytes);
    /* make room for ops on rows of up to `max_in` inputs and attention over `max_rows` keys */
    lm_status (*reserve)(lm_backend *be, int max_in, int max_rows);
    /* y[T,out] = x[T,in] W^T (+ bias) */
    void (*linear)(lm_backend *be, const lm_linear *w, const float *x, int T, float *y);
    /* out[T,dim] = table row ids[t] * scale */
    void (*embed)(lm_backend *be, const lm_linear *table, const int32_t *ids, int T, float scale, float *out);
    /* y[r] = x[r] / rms(x[r]) * w over `rows` rows of n (w NULL: no weight); y may equal x */
    void (*rmsnorm)(lm_backend *be, const float *x, const float *w, int rows, int n, float eps, float *y);
    /* rotate the first rot_dim dims of each head (half-split pairs i, i+rot_dim/2);
     * cs = [T, rot_dim] : cos[rot_dim/2] then sin[rot_dim/2] per token */
    void (*rope)(lm_backend *be, float *x, int T, int n_heads, int head_dim, int rot_dim, const float *cs);
    void (*attention)(lm_backend *be, const lm_attn_args *a);
    /* out[i] = act(gate[i]) * up[i] for T rows of n (gate/up rows strided by ld); limit: the
     * clamp of LM_ACT_SWIGLU_OAI */
    void (*glu)(lm_backend *be, const float *gate, const float *up, int ld, int T, int n, lm_act act, float limit,
                float *out);
    /* x[i] += y[i] */
    void (*add)(lm_backend *be, float *x, const float *y, size_t n);
    /* x[i] *= s */
    void (*scale)(lm_backend *be, float *x, float s, size_t n);

    /* --- version 2: every remaining step on activations (a device backend needs them all) --- */
    /* dst (backend memory) = src (host memory), and the reverse; the host buffer may be reused
     * as soon as the call returns (download waits for queued work) */
    void (*upload)(lm_backend *be, void *dst, const void *src, size_t bytes);
    void (*download)(lm_backend *be, void *dst, const void *src, size_t bytes);
    /* A backend copy of `bytes` read-only weight bytes at host address src (released with
     * release), or NULL when out of memory. Slot NULL: the backend reads weights in place. */
    void *(*upload_weights)(lm_backend *be, const void *src, size_t bytes);
    /* The first error of queued work since the last call (recorded with lm_err), else LM_OK;
     * after an error the backend skips further work until this is called. NULL: always LM_OK. */
    lm_status (*status)(lm_backend *be);
    /* p[0..bytes) = 0 */
    void (*zero)(lm_backend *be, void *p, size_t bytes);
    /* x[i] = cap * tanh(x[i] / cap) */
    void (*softcap)(lm_backend *be, float *x, float cap, size_t n);
    /* x[r][i] *= w[i] over `rows` rows of n */
    void (*mul_rows)(lm_backend *be, float *x, const float *w, int rows, int n);
    /* dst[r*dst_ld + i] = src[r*src_ld + i] for r < rows, i < n */
    void (*copy_rows)(lm_backend *be, float *dst, size_t dst_ld, const float *src, size_t src_ld, int rows, int n);
    /* Top-k experts of each token from router logits [T, E] (E <= LM_MOE_MAX_EXPERTS): idx/w
     * [T, K]. topk_softmax: softmax over the chosen logits (GPT-OSS); else the top-k of the
     * softmax, renormalised when norm_topk (Qwen3-MoE). Ties keep the lower index. */
    void (*moe_route)(lm_backend *be, const float *logits, int T, int E, int K, int topk_softmax, int norm_topk,
                      int32_t *idx, float *w);
    /* dst[r] = src[rows[r]] for n rows of dim (rows: backend memory) */
    void (*gather_rows)(lm_backend *be, const float *src, const int32_t *rows, int n, int dim, float *dst);
    /* dst[rows[r]] += w[r] * src[r] for n rows of dim; rows are distinct */
    void (*scatter_add_rows)(lm_backend *be, float *dst, const float *src, const int32_t *rows, const float *w, int n,
                             int dim);
    /* Gemma 3n gelu_topk: per row of n, x = max(x - (mean + mult * std), 0) (population std) */
    void (*sparsify)(lm_backend *be, float *x, int T, int n, float mult);
    /* Gemma 3n: scale each row of y to the RMS of the same row of ref (y's mean square floored
     * at 1e-5) */
    void (*rms_match)(lm_backend *be, float *y, const float *ref, int T, int n);
    /* AltUp predict: pred[b][t] = streams[b][t] + sum_a coef[t][b*ns + a] * streams[a][t];
     * streams/pred [ns, T, H], coef [T, ns*ns] */
    void (*altup_predict)(lm_backend *be, const float *streams, const float *coef, int ns, int T, int H, float *pred);
    /* AltUp correct: streams[i][t] = pred[i][t] + (x[t] - active[t]) * (w[t][i] + 1); w [T, ns] */
    void (*altup_correct)(lm_backend *be, float *streams, const float *pred, const float *x, const float *active,
                          const float *w, int ns, int T, int H);

    /* --- version 3: whole steps recorded and replayed (CUDA graphs) --- */
    /* Start recording the ops that follow instead of running them; returns LM_OK when recording
     * (else nothing changes and ops run as called). Between the two calls no op may wait for
     * queued work (download, status) or allocate/release backend memory. NULL: never records. */
    lm_status (*record_begin)(lm_backend *be);
    /* Stop recording and run what was recorded (run != 0), or drop it (run == 0). Errors are
     * reported by the status op. NULL when record_begin is NULL. */
    void (*record_end)(lm_backend *be, int run);
    /* --- version 3: fused steps (fewer launches per layer on a device) --- */
    /* y[i][T, w[i]->out] = x W[i]^T for n <= 3 weights sharing x (q, k, v). NULL: linear each. */
    void (*linear_n)(lm_backend *be, int n, const lm_linear *const *w, const float *x, int T, float *const *y);
    /* out[T, I] = act(x Wg^T) * (x Wu^T) (no sparsity); g_buf/u_buf [T, I] are scratch the backend
     * may use. NULL: two linears and glu. */
    void (*linear_glu)(lm_backend *be, const lm_linear *gate, const lm_linear *up, const float *x, int T, lm_act act,
                       float limit, float *g_buf, float *u_buf, float *out);
    /* x += y, then h = rmsnorm(x) * w over `rows` rows of n (w NULL: no weight). NULL: add, rmsnorm. */
    void (*add_rmsnorm)(lm_backend *be, float *x, const float *y, const float *w, int rows, int n, float eps,
                        float *h);
    /* KV rows: kd/vd [T, dim] = k/v (f32, or rounded to f16 when f16; version 8) and pos_d[t] =
     * p0 + t (all backend memory); with rope (version 5), rope->q is rotated in place and kd
     * receives the rotated keys (k is not modified). Returns 0 when it did nothing (the caller
     * rotates, copies and uploads). NULL: the same as returning 0. */
    int (*kv_put)(lm_backend *be, void *kd, void *vd, const float *k, const float *v, int T, int dim,
                  int32_t *pos_d, int32_t p0, const lm_rope_args *rope, int f16);
    /* --- version 4 --- */
    /* At load: the n bf16 weight values at backend address p may be stored as f16 instead (same
     * bytes, for the backend's f16 tensor-core paths); returns 1 when they were converted (the
     * caller then reads them as f16), 0 when kept. NULL: weights stay as stored. */
    int (*weights_to_f16)(lm_backend *be, void *p, size_t n);
    /* Greedy decoding without downloading the logits: out (backend memory) = the token
     * lm_argmax_log_softmax (core/softmax.h) picks from x[V]
     * (backend memory, not modified) and its log-softmax value: lse = (float)(max + log(sum of
     * exp(x - max) in double)), then the first maximum of the float values x - lse (token 0 when
     * a logit is NaN or +inf, or all are -inf). A device may sum in another order (the last bit of
     * lse). May be recorded. NULL: the caller downloads x and picks on the host. */
    void (*argmax)(lm_backend *be, const float *x, int V, lm_argmax_out *out);
    /* --- version 5 --- */
    /* Sampling without downloading the logits: out (backend memory) = the token lm_sampler_sample
     * picks from x[V] (backend memory, not modified) with these settings and draw, and its
     * log-softmax value: log_softmax as for argmax; top-p (the most likely tokens while the mass
     * ranked above each is below top_p), min-p (log p >= the top's + log(min_p), or among the
     * min_keep most likely), top-k, each a prefix of the order (larger first, ties: lower id);
     * then the first token, in id order, whose running sum of exp(lp / temp - max) exceeds u times
     * the sum over the kept tokens. A device may sum in another order (the last bits of a sum
     * can move a boundary that lies within them). Not recorded. NULL: the caller samples on the
     * host from downloaded logits. */
    void (*sample)(lm_backend *be, const float *x, int V, const lm_sample_args *a, lm_argmax_out *out);
    /* Quantized KV rows (MLX affine with f32 scales and biases, as lm_affine_quantize_row and
     * lm_affine_dequant_row in quant/quant.h compute them): n rows of dim values x (f32) into
     * codes q [n, dim * bits / 8] and s, b [n, dim / group]; and back into out [n, dim].
     * bits 16 (version 8): f16 values (rounded to nearest even), no scales (s, b, group unused). */
    void (*kv_quantize)(lm_backend *be, const float *x, int n, int dim, int bits, int group, uint8_t *q, float *s,
                        float *b);
    void (*kv_dequant)(lm_backend *be, const uint8_t *q, const float *s, const float *b, int n, int dim, int bits,
                       int group, float *out);
    /* --- version 6: one-token steps with the norms and residual adds inside the matvecs --- */
    /* y[w->out] += x W^T for one row x (a residual stream). Returns 0 when it did nothing (the
     * caller computes and adds). NULL: the same as returning 0. */
    int (*matvec_add)(lm_backend *be, const lm_linear *w, const float *x, float *y);
    /* For one row x: linear_n's y[i] = h W[i]^T (n <= 3) with h = rmsnorm(x) * nw (the rmsnorm
     * op's result; nw not NULL), without h in memory. Returns 0 when it did nothing. NULL: the
     * same as returning 0. */
    int (*norm_matvec_n)(lm_backend *be, const float *nw, float eps, int n, const lm_linear *const *w, const float *x,
                         float *const *y);
    /* For one row x: linear_glu's out = act(h Wg^T) * (h Wu^T) with h as for norm_matvec_n.
     * Returns 0 when it did nothing. NULL: the same as returning 0. */
    int (*norm_matvec_glu)(lm_backend *be, const float *nw, float eps, const lm_linear *gate, const lm_linear *up,
                           const float *x, lm_act act, float limit, float *out);
    /* --- version 7 --- */
    /* The logit processors where the logits are: x[V] (backend memory) = lm_logit_ops_apply(x,
     * ops, n) with ops in host memory (read before the call returns), so that argmax and sample
     * pick from processed logits without a download. Not recorded. NULL: the caller processes
     * downloaded logits on the host. */
    void (*edit_logits)(lm_backend *be, float *x, const lm_logit_op *ops, int n);
    /* --- version 8 --- */
    /* 1: the attention op reads f16 rows (lm_attn_args.kv_f16); 0: it is handed f32 rows only. */
    int attn_f16;
} lm_backend_ops;

#define LM_MOE_MAX_EXPERTS 4096

struct lm_backend {
    const lm_backend_ops *ops;
};

lm_status lm_backend_cpu_new(int n_threads, lm_backend **out);
int lm_backend_cpu_threads(const lm_backend *be);
/* CUDA (built with LMCORE_CUDA): device `device`; LM_ERR_DEVICE when there is none.
 * lm_backend_cuda_available() returns 0 when the build has no CUDA or no device is visible. */
lm_status lm_backend_cuda_new(int device, lm_backend **out);
/* CUDA attention for this many query tokens or more (head_dim 16..128) runs on the tensor cores
 * with f16 q, k, v and probabilities (attention_tc.cu). */
#define LM_CUDA_ATTN_TC_MIN_T 64
int lm_backend_cuda_available(void);

#endif
