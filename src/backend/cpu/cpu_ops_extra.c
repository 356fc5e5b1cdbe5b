/* CPU versions of the steps that once ran as host loops in the decoder (MoE routing and
 * gather/scatter, Gemma 3n sparsity and AltUp mixing, softcaps, host<->backend copies) and the
 * greedy pick. The CPU backend's memory is host memory, so upload/download are plain copies. */
#include "backend/cpu/cpu_ops_extra.h"

#include <math.h>
#include <string.h>

#include "core/softmax.h"
#include "core/util.h"
#include "quant/quant.h"

/* --- memory ------------------------------------------------------------------------------------ */

void lm_cpu_upload(lm_backend *be, void *dst, const void *src, size_t bytes) {
    if (bytes)
        memcpy(dst, src, bytes);
}

void lm_cpu_download(lm_backend *be, void *dst, const void *src, size_t bytes) {
    if (bytes)
        memcpy(dst, src, bytes);
}

void lm_cpu_zero(lm_backend *be, void *p, size_t bytes) {
    if (bytes)
        memset(p, 0, bytes);
}

void lm_cpu_copy_rows(lm_backend *be, float *dst, size_t dst_ld, const float *src, size_t src_ld, int rows, int n) {
    for (int r = 0; r < rows; r++)
        memmove(dst + (size_t)r * dst_ld, src + (size_t)r * src_ld, (size_t)n * sizeof(float));
}

/* --- elementwise -------------------------------------------------------------------------------- */

void lm_cpu_softcap(lm_backend *be, float *x, float cap, size_t n) {
    for (size_t i = 0; i < n; i++)
        x[i] = cap * tanhf(x[i] / cap);
}

void lm_cpu_mul_rows(lm_backend *be, float *x, const float *w, int rows, int n) {
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < n; i++)
            x[(size_t)r * n + i] *= w[i];
}

/* --- greedy pick: the host sampler's own arithmetic, on the logits where they are ----------------- */

void lm_cpu_argmax(lm_backend *be, const float *x, int V, lm_argmax_out *out) {
    out->token = lm_argmax_log_softmax(x, V, &out->logprob);
}

/* --- quantized KV rows ---------------------------------------------------------------------------- */

void lm_cpu_kv_quantize(lm_backend *be, const float *x, int n, int dim, int bits, int group, uint8_t *q, float *s,
                        float *b) {
    if (bits == 16) {
        for (size_t i = 0; i < (size_t)n * dim; i++)
            ((uint16_t *)q)[i] = lm_f32_to_f16(x[i]);
        return;
    }
    size_t rb = (size_t)dim * bits / 8, ng = (size_t)(dim / group);
    for (int r = 0; r < n; r++)
        lm_affine_quantize_row(x + (size_t)r * dim, dim, bits, group, q + r * rb, s + r * ng, b + r * ng);
}

void lm_cpu_kv_dequant(lm_backend *be, const uint8_t *q, const float *s, const float *b, int n, int dim, int bits,
                       int group, float *out) {
    if (bits == 16) {
        for (size_t i = 0; i < (size_t)n * dim; i++)
            out[i] = lm_f16_to_f32(((const uint16_t *)q)[i]);
        return;
    }
    size_t rb = (size_t)dim * bits / 8, ng = (size_t)(dim / group);
    for (int r = 0; r < n; r++)
        lm_affine_dequant_row(q + r * rb, (const uint8_t *)(s + r * ng), (const uint8_t *)(b + r * ng), LM_DT_F32, bits,
                              group, dim, out + (size_t)r * dim);
}

/* --- mixture of experts ------------------------------------------------------------------------- */

void lm_cpu_moe_route(lm_backend *be, const float *logits, int T, int E, int K, int topk_softmax, int norm_topk,
                      int32_t *idx, float *w) {
    float p[LM_MOE_MAX_EXPERTS];
    for (int t = 0; t < T; t++) {
        const float *lg = logits + (size_t)t * E;
        int32_t *ti = idx + (size_t)t * K;
        float *tw = w + (size_t)t * K;
        /* probabilities over all experts (Qwen3-MoE) or raw logits (GPT-OSS) to rank by */
        float mx = -INFINITY, sum = 0;
        for (int e = 0; e < E; e++)
            mx = lg[e] > mx ? lg[e] : mx;
        for (int e = 0; e < E; e++) {
            p[e] = topk_softmax ? lg[e] : expf(lg[e] - mx);
            sum += p[e];
        }
        for (int k = 0; k < K; k++) { /* top-k by selection; ties keep the lower index */
            int b = -1;
            for (int e = 0; e < E; e++) {
                int taken = 0;
                for (int j = 0; j < k; j++)
                    taken |= ti[j] == e;
                if (!taken && (b < 0 || p[e] > p[b]))
                    b = e;
            }
            ti[k] = b;
            tw[k] = topk_softmax ? p[b] : p[b] / sum;
        }
        if (topk_softmax) { /* softmax over the chosen logits */
            float m2 = tw[0], s2 = 0;
            for (int k = 0; k < K; k++)
                s2 += (tw[k] = expf(tw[k] - m2));
            for (int k = 0; k < K; k++)
                tw[k] /= s2;
        } else if (norm_topk) {
            float s2 = 0;
            for (int k = 0; k < K; k++)
                s2 += tw[k];
            for (int k = 0; k < K; k++)
                tw[k] /= s2;
        }
    }
}

void lm_cpu_gather_rows(lm_backend *be, const float *src, const int32_t *rows, int n, int dim, float *dst) {
    for (int r = 0; r < n; r++)
        memcpy(dst + (size_t)r * dim, src + (size_t)rows[r] * dim, (size_t)dim * sizeof(float));
}

void lm_cpu_scatter_add_rows(lm_backend *be, float *dst, const float *src, const int32_t *rows, const float *w, int n,
                             int dim) {
    for (int r = 0; r < n; r++) {
        float *d = dst + (size_t)rows[r] * dim;
        const float *s = src + (size_t)r * dim;
        for (int i = 0; i < dim; i++)
            d[i] += w[r] * s[i];
    }
}

/* --- Gemma 3n ------------------------------------------------------------------------------------- */

void lm_cpu_sparsify(lm_backend *be, float *x, int T, int n, float mult) {
    for (int t = 0; t < T; t++) {
        float *r = x + (size_t)t * n;
        double mean = 0, var = 0;
        for (int i = 0; i < n; i++)
            mean += r[i];
        mean /= n;
        for (int i = 0; i < n; i++)
            var += (r[i] - mean) * (r[i] - mean);
        float cut = (float)(mean + sqrt(var / n) * mult);
        for (int i = 0; i < n; i++)
            r[i] = r[i] > cut ? r[i] - cut : 0.0f;
    }
}

static float row_rms(const float *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return (float)sqrt(s / n);
}

void lm_cpu_rms_match(lm_backend *be, float *y, const float *ref, int T, int n) {
    for (int t = 0; t < T; t++) {
        float *yr = y + (size_t)t * n;
        float target = row_rms(ref + (size_t)t * n, n), cur = row_rms(yr, n);
        float den = sqrtf(fmaxf(cur * cur, 1e-5f));
        for (int i = 0; i < n; i++)
            yr[i] = yr[i] * target / den;
    }
}

void lm_cpu_altup_predict(lm_backend *be, const float *streams, const float *coef, int ns, int T, int H, float *pred) {
    size_t TH = (size_t)T * H;
    for (int b = 0; b < ns; b++)
        for (int t = 0; t < T; t++) {
            float *dst = pred + (size_t)b * TH + (size_t)t * H;
            const float *cb = coef + (size_t)t * ns * ns + (size_t)b * ns;
            for (int i = 0; i < H; i++) {
                float s = streams[(size_t)b * TH + (size_t)t * H + i];
                for (int a = 0; a < ns; a++)
                    s += cb[a] * streams[(size_t)a * TH + (size_t)t * H + i];
                dst[i] = s;
            }
        }
}

void lm_cpu_altup_correct(lm_backend *be, float *streams, const float *pred, const float *x, const float *active,
                          const float *w, int ns, int T, int H) {
    size_t TH = (size_t)T * H;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < ns; i++) {
            float wi = w[(size_t)t * ns + i] + 1.0f;
            float *dst = streams + (size_t)i * TH + (size_t)t * H;
            const float *p = pred + (size_t)i * TH + (size_t)t * H;
            const float *xr = x + (size_t)t * H, *pa = active + (size_t)t * H;
            for (int h = 0; h < H; h++)
                dst[h] = p[h] + (xr[h] - pa[h]) * wi;
        }
}

/* --- logit processors ---------------------------------------------------------------------------- */

void lm_logit_ops_apply(float *x, const lm_logit_op *ops, int n) {
    for (int i = 0; i < n; i++) {
        const lm_logit_op *o = &ops[i];
        float *v = &x[o->token];
        if (o->kind == LM_LOGIT_ADD)
            *v += o->v;
        else if (o->kind == LM_LOGIT_REP)
            *v = *v < 0 ? *v * o->v : *v / o->v;
        else
            for (int k = 0; k < o->count; k++)
                *v -= o->v;
    }
}

void lm_cpu_edit_logits(lm_backend *be, float *x, const lm_logit_op *ops, int n) { lm_logit_ops_apply(x, ops, n); }
