/* The portable kernel set: plain C, the reference for every SIMD set. */
#include <math.h>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/cpu_simd.h"
#include "core/util.h"
#include "quant/quant.h"

static int scalar_matvec_ok(const lm_linear *w) {
    return w->kind == LM_W_AFFINE || w->kind == LM_W_MXFP4 || (w->kind == LM_W_DENSE && w->in_step <= 1);
}

static float affine_row_dot(const lm_linear *w, int r, const float *x, const float *xsum) {
    const uint8_t *row = (const uint8_t *)w->w + (size_t)r * w->w_row_bytes;
    const uint8_t *sc = (const uint8_t *)w->scales + (size_t)r * w->s_row_bytes;
    const uint8_t *bi = (const uint8_t *)w->biases + (size_t)r * w->s_row_bytes;
    float acc = 0;
    for (int g = 0; g < w->in / w->group; g++) {
        float s = lm_scalar_to_f32(sc, w->dtype, (size_t)g), b = lm_scalar_to_f32(bi, w->dtype, (size_t)g);
        float q = 0;
        for (int i = g * w->group; i < (g + 1) * w->group; i++)
            q += (float)lm_bits_get(row, w->bits, (size_t)i) * x[i];
        acc += s * q + b * xsum[g];
    }
    return acc;
}

static float mxfp4_row_dot(const lm_linear *w, int r, const float *x) {
    const uint8_t *row = (const uint8_t *)w->w + (size_t)r * w->w_row_bytes;
    const uint8_t *sc = (const uint8_t *)w->scales + (size_t)r * w->s_row_bytes;
    float acc = 0;
    for (int g = 0; g < w->in / 32; g++) {
        float q = 0;
        for (int i = 0; i < 16; i++) {
            uint8_t b = row[g * 16 + i];
            q += LM_E2M1[b & 15] * x[g * 32 + 2 * i] + LM_E2M1[b >> 4] * x[g * 32 + 2 * i + 1];
        }
        acc += q * lm_e8m0_to_f32(sc[g]);
    }
    return acc;
}

static void scalar_matvec(const lm_linear *w, const lm_xvec *xv, int r0, int r1, float *y) {
    const float *x = xv->x, *xsum = xv->sum;
    for (int r = r0; r < r1; r++) {
        float v;
        if (w->kind == LM_W_AFFINE)
            v = affine_row_dot(w, r, x, xsum);
        else if (w->kind == LM_W_MXFP4)
            v = mxfp4_row_dot(w, r, x);
        else
            v = lm_dot_dense(x, (const uint8_t *)w->w + (size_t)r * w->w_row_bytes, w->dtype, w->in);
        y[r - r0] = v;
    }
}

static void scalar_gemm(const float *x, int ldx, int T, const float *wf, int R, int n, float *y, int ldy) {
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++)
            y[(size_t)t * ldy + r] = lm_dot_f32(x + (size_t)t * ldx, wf + (size_t)r * n, n);
}

static void scalar_axpy(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

static int natural_layout(const lm_linear *w) { return LM_XL_NATURAL; }

void lm_gemm_rows_f32(const lm_cpu_kernels *k, const lm_linear *w, const lm_xmat *x, int r0, int nr, float *y, int ldy,
                      float *scratch) {
    for (int r = 0; r < nr; r++)
        k->row_f32(w, r0 + r, scratch + (size_t)r * w->in);
    k->gemm(x->x, w->in, x->T, scratch, nr, w->in, y, ldy);
}

static void scalar_gemm_rows(const lm_linear *w, const lm_xmat *x, int r0, int nr, float *y, int ldy, float *scratch) {
    lm_gemm_rows_f32(lm_cpu_kernels_scalar(), w, x, r0, nr, y, ldy, scratch);
}

void lm_attn_scores_ref(const lm_attn_rows *a, const float *q, float scale, float *s, size_t lds) {
    int per = a->nh / a->nkv;
    for (int h = 0; h < a->nh; h++)
        for (int r = 0; r < a->n; r++) {
            const void *k = lm_kv_at(a->k, r * a->stride + (size_t)(h / per) * a->hd, a->f16);
            const float *qh = q + (size_t)h * a->hd;
            s[h * lds + r] = scale * (a->f16 ? lm_dot_f16(qh, k, a->hd) : lm_dot_f32(qh, k, a->hd));
        }
}

void lm_attn_values_ref(const lm_attn_rows *a, const float *p, size_t lds, float *out) {
    int per = a->nh / a->nkv;
    for (int h = 0; h < a->nh; h++)
        for (int r = 0; r < a->n; r++) {
            const void *v = lm_kv_at(a->v, r * a->stride + (size_t)(h / per) * a->hd, a->f16);
            float *o = out + (size_t)h * a->hd, w = p[h * lds + r];
            if (a->f16)
                for (int i = 0; i < a->hd; i++)
                    o[i] += w * lm_f16_to_f32(((const uint16_t *)v)[i]);
            else
                scalar_axpy(o, w, v, a->hd);
        }
}

float lm_exp_sum_ref(float *s, int n, float mx) {
    float sum = 0;
    for (int i = 0; i < n; i++) {
        s[i] = s[i] == -INFINITY ? 0.0f : expf(s[i] - mx);
        sum += s[i];
    }
    return sum;
}

void lm_silu_mul_ref(const float *g, const float *u, float *out, int n) {
    for (int i = 0; i < n; i++)
        out[i] = lm_silu(g[i]) * u[i];
}

static const lm_cpu_kernels SCALAR = {
    .isa = LM_ISA_SCALAR,
    .name = "scalar",
    .matvec_ok = scalar_matvec_ok,
    .matvec = scalar_matvec,
    .quant_x = NULL,
    .x_layout = natural_layout,
    .row_f32 = lm_linear_row_f32,
    .gemm = scalar_gemm,
    .prep_xmat = NULL,
    .gemm_rows = scalar_gemm_rows,
    .dot = lm_dot_f32,
    .exp_sum = lm_exp_sum_ref,
    .silu_mul = lm_silu_mul_ref,
    .axpy = scalar_axpy,
    .attn_scores = lm_attn_scores_ref,
    .attn_values = lm_attn_values_ref,
};

const lm_cpu_kernels *lm_cpu_kernels_scalar(void) { return &SCALAR; }

void lm_group_sums(const float *x, int in, int group, float *out) {
    for (int g = 0; g < in / group; g++) {
        float s = 0;
        for (int i = 0; i < group; i++)
            s += x[g * group + i];
        out[g] = s;
    }
}

void lm_quant_x_i16(const float *x, int in, int group, int layout, int16_t *q, float *d, float *sum, float *corr) {
    for (int g = 0; g < in / group; g++) {
        const float *xg = x + (size_t)g * group;
        float amax = 0, s = 0;
        for (int i = 0; i < group; i++) {
            amax = fmaxf(amax, fabsf(xg[i]));
            s += xg[i];
        }
        float dg = amax / LM_XQ_MAX, id = amax > 0 ? LM_XQ_MAX / amax : 0.0f;
        long qs = 0;
        for (int i = 0; i < group; i++) {
            long v = lrintf(xg[i] * id);
            v = v > (long)LM_XQ_MAX ? (long)LM_XQ_MAX : v < -(long)LM_XQ_MAX ? -(long)LM_XQ_MAX : v;
            lm_xq_set(q, g * group + i, in, layout, (int)v);
            qs += v;
        }
        d[g] = dg;
        sum[g] = s;
        corr[g] = s - dg * (float)qs;
    }
}
