/* Every CPU kernel set this machine runs (and the portable one) against a double-precision
 * reference built from lm_linear_row_f32, on random and ragged shapes, for every weight
 * format. Tolerance: |got - ref| <= 2e-5 * sum|x_i w_i| + 1e-6 (reassociation of f32 sums). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_simd.h"
#include "core/util.h"
#include "quant/quant.h"
#include "test_util.h"

typedef struct rng {
    uint64_t s;
} rng;
static uint32_t rnd(rng *r) {
    r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(r->s >> 33);
}
static float rndf(rng *r) { return (float)rnd(r) / 2147483648.0f - 1.0f; } /* [-1, 1) */

/* A weight with owned storage. */
typedef struct tw {
    lm_linear w;
    uint8_t *data, *scales, *biases;
    float *bias;
} tw;

static void put_scalar(uint8_t *p, lm_dtype dt, size_t i, float v) {
    if (dt == LM_DT_F32) {
        memcpy(p + 4 * i, &v, 4);
    } else {
        uint16_t h = dt == LM_DT_BF16 ? lm_f32_to_bf16(v) : lm_f32_to_f16(v);
        memcpy(p + 2 * i, &h, 2);
    }
}

static tw make_weight(rng *r, lm_wkind kind, lm_dtype dt, int bits, int group, int out, int in, int with_bias) {
    tw t;
    memset(&t, 0, sizeof t);
    lm_linear *w = &t.w;
    w->kind = kind;
    w->dtype = dt;
    w->out = out;
    w->in = in;
    w->in_step = 1;
    if (kind == LM_W_DENSE) {
        w->w_row_bytes = (size_t)in * LM_DTYPES[dt].size;
        t.data = malloc(w->w_row_bytes * out);
        for (size_t i = 0; i < (size_t)out * in; i++)
            put_scalar(t.data, dt, i, rndf(r));
    } else {
        int ng = kind == LM_W_MXFP4 ? in / 32 : in / group;
        w->bits = kind == LM_W_MXFP4 ? 4 : bits;
        w->group = kind == LM_W_MXFP4 ? 32 : group;
        w->w_row_bytes = (size_t)in * w->bits / 8;
        t.data = malloc(w->w_row_bytes * out);
        for (size_t i = 0; i < w->w_row_bytes * out; i++)
            t.data[i] = (uint8_t)rnd(r);
        if (kind == LM_W_MXFP4) {
            w->s_row_bytes = (size_t)ng;
            t.scales = malloc((size_t)ng * out);
            for (size_t i = 0; i < (size_t)ng * out; i++)
                t.scales[i] = (uint8_t)(120 + rnd(r) % 12);
        } else {
            w->s_row_bytes = (size_t)ng * LM_DTYPES[dt].size;
            t.scales = malloc(w->s_row_bytes * out);
            t.biases = malloc(w->s_row_bytes * out);
            for (size_t i = 0; i < (size_t)ng * out; i++) {
                put_scalar(t.scales, dt, i, 0.02f * rndf(r));
                put_scalar(t.biases, dt, i, 0.5f * rndf(r));
            }
        }
        w->scales = t.scales;
        w->biases = t.biases;
    }
    w->w = t.data;
    if (with_bias) {
        t.bias = malloc((size_t)out * sizeof(float));
        for (int i = 0; i < out; i++)
            t.bias[i] = rndf(r);
        w->bias = t.bias;
    }
    return t;
}

static void free_weight(tw *t) {
    free(t->data);
    free(t->scales);
    free(t->biases);
    free(t->bias);
}

/* reference y[T, out] in double from the portable row conversion, and the error scale */
static void reference(const lm_linear *w, const float *x, int T, double *y, double *mag) {
    float *row = malloc((size_t)w->in * sizeof(float));
    for (int r = 0; r < w->out; r++) {
        lm_linear_row_f32(w, r, row);
        for (int t = 0; t < T; t++) {
            double s = 0, m = 0;
            for (int i = 0; i < w->in; i++) {
                s += (double)x[(size_t)t * w->in + i] * row[i];
                m += fabs((double)x[(size_t)t * w->in + i] * row[i]);
            }
            y[(size_t)t * w->out + r] = s + (w->bias ? w->bias[r] : 0.0);
            mag[(size_t)t * w->out + r] = m;
        }
    }
    free(row);
}

static double worst_err(const float *got, const double *ref, const double *mag, size_t n) {
    double worst = 0; /* error in units of the tolerance; > 1 fails */
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - ref[i]) / (2e-5 * mag[i] + 1e-6);
        if (!(e <= worst))
            worst = isnan(e) ? INFINITY : e;
    }
    return worst;
}

/* mag[r] for token 0 of a packed weight, for int16-activation paths: 2 * sum_i |x_i| (|w_i| + 2|b_g|)
 * (the unit 2e-5 becomes 4e-5 of that; the rounding of x alone is 1.5e-5 of max|x_group|) */
static void widen_mag_t(const lm_linear *w, const float *x, int T, double *mag) {
    float *row = malloc((size_t)w->in * sizeof(float));
    for (int r = 0; r < w->out; r++) {
        lm_linear_row_f32(w, r, row);
        for (int t = 0; t < T; t++) {
            double m = 0;
            for (int i = 0; i < w->in; i++) {
                double b = 0;
                if (w->kind == LM_W_AFFINE)
                    b = fabs(lm_scalar_to_f32((const uint8_t *)w->biases + (size_t)r * w->s_row_bytes, w->dtype,
                                              (size_t)(i / w->group)));
                m += fabs((double)x[(size_t)t * w->in + i]) * (fabs(row[i]) + 2 * b);
            }
            mag[(size_t)t * w->out + r] = 2 * m;
        }
    }
    free(row);
}
static void widen_mag(const lm_linear *w, const float *x, double *mag) { widen_mag_t(w, x, 1, mag); }

/* quant_x against its contract and against the portable version */
static void check_quant_x(const lm_cpu_kernels *k, const float *x, int in, int group, int layout, const int16_t *q,
                          const float *d, const float *sum, const float *corr) {
    int16_t *q2 = malloc((size_t)in * sizeof(int16_t));
    float *c2 = malloc((size_t)in * sizeof(float));
    float *d2 = malloc((size_t)in * sizeof(float)), *s2 = malloc((size_t)in * sizeof(float));
    lm_quant_x_i16(x, in, group, layout, q2, d2, s2, c2);
    int bad = 0;
    for (int g = 0; g < in / group; g++) {
        double resid = 0, l1 = 0; /* sum(x) - d sum(q), in double; float sums err by ~1e-7 sum|x| */
        for (int i = g * group; i < (g + 1) * group; i++) {
            resid += x[i] - (double)d[g] * lm_xq_get(q, i, in, layout);
            l1 += fabs(x[i]);
        }
        double tol = 1e-6 * l1 + 1e-9;
        bad += fabsf(d[g] - d2[g]) > 1e-6f * d2[g] || fabs(sum[g] - s2[g]) > 2 * tol || fabs(corr[g] - resid) > tol ||
               fabs(c2[g] - resid) > tol;
        for (int i = g * group; i < (g + 1) * group; i++) {
            int qi = lm_xq_get(q, i, in, layout), q2i = lm_xq_get(q2, i, in, layout);
            /* half a step, plus the f32 rounding of x * (1/d) at |q| up to LM_XQ_MAX */
            bad += fabs(x[i] - (double)qi * d[g]) > 0.5 * d[g] + 4e-7 * fabs(x[i]) + 1e-12 || abs(qi - q2i) > 1 ||
                   abs(qi) > (int)LM_XQ_MAX;
        }
    }
    CHECKF(bad == 0, "%s quant_x in=%d group=%d: %d bad", k->name, in, group, bad);
    free(q2);
    free(c2);
    free(d2);
    free(s2);
}

typedef struct fmt {
    const char *name;
    lm_wkind kind;
    lm_dtype dt;
    int bits, group;
} fmt;

static const fmt FORMATS[] = {
    {"f32", LM_W_DENSE, LM_DT_F32, 0, 0},        {"bf16", LM_W_DENSE, LM_DT_BF16, 0, 0},
    {"f16", LM_W_DENSE, LM_DT_F16, 0, 0},        {"q8/g64 bf16", LM_W_AFFINE, LM_DT_BF16, 8, 64},
    {"q8/g32 f16", LM_W_AFFINE, LM_DT_F16, 8, 32}, {"q8/g128 f32", LM_W_AFFINE, LM_DT_F32, 8, 128},
    {"q4/g64 bf16", LM_W_AFFINE, LM_DT_BF16, 4, 64},
    {"q4/g128 f32", LM_W_AFFINE, LM_DT_F32, 4, 128}, {"q4/g32 f16", LM_W_AFFINE, LM_DT_F16, 4, 32},
    {"q2/g64", LM_W_AFFINE, LM_DT_BF16, 2, 64},  {"q3/g64", LM_W_AFFINE, LM_DT_BF16, 3, 64},
    {"q5/g32", LM_W_AFFINE, LM_DT_F16, 5, 32},   {"q6/g64", LM_W_AFFINE, LM_DT_BF16, 6, 64},
    {"q7/g128", LM_W_AFFINE, LM_DT_BF16, 7, 128}, {"mxfp4", LM_W_MXFP4, LM_DT_U8, 4, 32},
};

/* Kernel-level checks of one set: matvec, row_f32, gemm, dot, axpy. */
static void test_set(const lm_cpu_kernels *k, rng *r) {
    for (size_t f = 0; f < sizeof FORMATS / sizeof FORMATS[0]; f++) {
        const fmt *F = &FORMATS[f];
        for (int shape = 0; shape < 4; shape++) {
            int unit = F->kind == LM_W_DENSE ? 1 : F->group;
            int in = F->kind == LM_W_DENSE ? 1 + (int)(rnd(r) % 300) : unit * (1 + (int)(rnd(r) % 6));
            if (shape == 0)
                in = F->kind == LM_W_DENSE ? 16 * (1 + (int)(rnd(r) % 8)) : in; /* aligned too */
            if (shape == 3 && F->kind != LM_W_DENSE) /* rows of more than 16 groups, any count */
                in = unit * (17 + (int)(rnd(r) % 24));
            int out = 1 + (int)(rnd(r) % 37), T = 1 + (int)(rnd(r) % 9);
            tw t = make_weight(r, F->kind, F->dt, F->bits, F->group, out, in, 0);
            float *x = malloc((size_t)T * in * sizeof(float)), *y = malloc((size_t)T * out * sizeof(float));
            float *wf = malloc((size_t)out * in * sizeof(float)), *ref_row = malloc((size_t)in * sizeof(float));
            double *ref = malloc((size_t)T * out * sizeof(double)), *mag = malloc((size_t)T * out * sizeof(double));
            for (int i = 0; i < T * in; i++)
                x[i] = rndf(r);
            reference(&t.w, x, T, ref, mag);
            /* row conversion: bit-exact for dense, within f32 rounding of s*q+b for affine */
            double rerr = 0;
            for (int row = 0; row < out; row++) {
                k->row_f32(&t.w, row, wf + (size_t)row * in);
                lm_linear_row_f32(&t.w, row, ref_row);
                for (int i = 0; i < in; i++)
                    rerr = fmax(rerr, fabs(wf[(size_t)row * in + i] - ref_row[i]) / (1e-6 + 1e-6 * fabs(ref_row[i])));
            }
            CHECKF(rerr <= 1.0, "%s %s row_f32 out=%d in=%d: err %.3g", k->name, F->name, out, in, rerr);
            /* GEMM over all tokens */
            k->gemm(x, in, T, wf, out, in, y, out);
            double e = worst_err(y, ref, mag, (size_t)T * out);
            CHECKF(e <= 1.0, "%s %s gemm T=%d out=%d in=%d: err %.3g", k->name, F->name, T, out, in, e);
            /* prefill blocks of up to LM_GEMM_ROWS rows, the input prepared as the backend does */
            {
                int group = lm_xvec_group(&t.w);
                int16_t *mq = malloc((size_t)T * in * sizeof(int16_t));
                float *md = malloc(((size_t)T * in / 32 + 1) * sizeof(float));
                float *ms = malloc(((size_t)T * in / 32 + 1) * sizeof(float));
                float *scratch = malloc(LM_GEMM_SCRATCH(in) * sizeof(float));
                lm_xmat xm = {x, T, NULL, NULL, NULL};
                double *mag2 = malloc((size_t)T * out * sizeof(double));
                memcpy(mag2, mag, (size_t)T * out * sizeof(double));
                if (k->prep_xmat && group && k->prep_xmat(&t.w, x, T, mq, md, ms)) {
                    xm = (lm_xmat){x, T, mq, md, ms};
                    widen_mag_t(&t.w, x, T, mag2);
                }
                for (int r0 = 0; r0 < out; r0 += LM_GEMM_ROWS) {
                    int nr = out - r0 < LM_GEMM_ROWS ? out - r0 : LM_GEMM_ROWS;
                    k->gemm_rows(&t.w, &xm, r0, nr, y + r0, out, scratch);
                }
                e = worst_err(y, ref, mag2, (size_t)T * out);
                CHECKF(e <= 1.0, "%s %s gemm_rows T=%d out=%d in=%d%s: err %.3g", k->name, F->name, T, out, in,
                       xm.q ? " (int16 input)" : "", e);
                free(mq), free(md), free(ms), free(scratch), free(mag2);
            }
            /* matvec of token 0 over a ragged row range */
            if (k->matvec_ok(&t.w)) {
                float *xsum = malloc((size_t)in * sizeof(float)), *xd = malloc((size_t)in * sizeof(float));
                int16_t *xq = malloc((size_t)in * sizeof(int16_t));
                float *xc = malloc((size_t)in * sizeof(float));
                int group = lm_xvec_group(&t.w);
                if (group && k->quant_x) {
                    int layout = k->x_layout(&t.w);
                    k->quant_x(x, in, group, layout, xq, xd, xsum, xc);
                    check_quant_x(k, x, in, group, layout, xq, xd, xsum, xc);
                    /* int16 activations: error bound |x - q d| <= d/2 = 1.5e-5 max|x_group| per term of
                     * s*q (|s q| <= |w| + |b|), so scale the tolerance with sum |x| (|w| + 2|b|) */
                    widen_mag(&t.w, x, mag);
                } else if (group) {
                    lm_group_sums(x, in, group, xsum);
                }
                lm_xvec xv = {x, xsum, xq, xd, xc};
                int r0 = out > 2 ? (int)(rnd(r) % (out / 2)) : 0;
                k->matvec(&t.w, &xv, r0, out, y);
                e = worst_err(y, ref + r0, mag + r0, (size_t)(out - r0));
                CHECKF(e <= 1.0, "%s %s matvec rows %d..%d in=%d: err %.3g", k->name, F->name, r0, out, in, e);
                free(xsum);
                free(xd);
                free(xq);
                free(xc);
            }
            free(x);
            free(y);
            free(wf);
            free(ref_row);
            free(ref);
            free(mag);
            free_weight(&t);
        }
    }
    /* a format every set must read directly */
    tw t = make_weight(r, LM_W_DENSE, LM_DT_BF16, 0, 0, 4, 64, 0);
    CHECKF(k->matvec_ok(&t.w), "%s: bf16 matvec", k->name);
    free_weight(&t);
    /* exp_sum and silu_mul against libm, incl. -inf (masked keys), huge and tiny arguments */
    for (int n = 1; n < 80; n += 7) {
        float s0[80], s1[80], g[80], u[80], o0[80], o1[80];
        for (int i = 0; i < n; i++) {
            s0[i] = s1[i] = i % 9 == 4 ? -INFINITY : 30.0f * rndf(r);
            g[i] = i % 11 == 3 ? 95.0f * rndf(r) : 8.0f * rndf(r);
            u[i] = rndf(r);
        }
        float mx = 25.0f, a = k->exp_sum(s1, n, mx), b = lm_exp_sum_ref(s0, n, mx);
        double worst = fabs(a - b) / (fabs(b) + 1e-30);
        for (int i = 0; i < n; i++)
            worst = fmax(worst, fabs(s1[i] - s0[i]) / (fabs(s0[i]) + 1e-30));
        CHECKF(worst <= 2e-6, "%s exp_sum n=%d: rel err %g", k->name, n, worst);
        k->silu_mul(g, u, o1, n);
        lm_silu_mul_ref(g, u, o0, n);
        worst = 0;
        for (int i = 0; i < n; i++)
            worst = fmax(worst, fabs(o1[i] - o0[i]) / (fabs(o0[i]) + 1e-30));
        CHECKF(worst <= 2e-6, "%s silu_mul n=%d: rel err %g", k->name, n, worst);
    }
    /* dot and axpy on ragged lengths */
    for (int n = 1; n < 70; n += 3) {
        float a[70], b[70], y0[70], y1[70];
        double s = 0, m = 0;
        for (int i = 0; i < n; i++) {
            a[i] = rndf(r);
            b[i] = rndf(r);
            y0[i] = y1[i] = rndf(r);
            s += (double)a[i] * b[i];
            m += fabs((double)a[i] * b[i]);
        }
        float d = k->dot(a, b, n);
        CHECKF(fabs(d - s) <= 2e-5 * m + 1e-6, "%s dot n=%d: %g vs %g", k->name, n, d, s);
        k->axpy(y1, 0.75f, a, n);
        double ae = 0;
        for (int i = 0; i < n; i++)
            ae = fmax(ae, fabs(y1[i] - (y0[i] + 0.75 * a[i])));
        CHECKF(ae <= 1e-6, "%s axpy n=%d: err %g", k->name, n, ae);
    }
}

/* The fused decode ops (linear_n, linear_glu) against the separate ones, same input preparation:
 * equal to float rounding; weights of one format (one run) and of mixed formats (fallback). */
static void test_backend_fused(const char *isa, rng *r) {
    setenv("LMCORE_ISA", isa, 1);
    lm_backend *be = NULL;
    CHECK(lm_backend_cpu_new(2, &be) == LM_OK);
    if (!be)
        return;
    for (int c = 0; c < 4; c++) {
        const fmt *fa = &FORMATS[c == 0 ? 1 : c == 1 ? 3 : c == 2 ? 5 : 13], *fb = c == 3 ? &FORMATS[5] : fa;
        int in = 256, outs[3] = {96 + (int)(rnd(r) % 40), 40 + (int)(rnd(r) % 30), 40};
        CHECK(be->ops->reserve(be, in, 16) == LM_OK);
        tw t[3];
        for (int i = 0; i < 3; i++)
            t[i] = make_weight(r, i == 2 ? fb->kind : fa->kind, i == 2 ? fb->dt : fa->dt, i == 2 ? fb->bits : fa->bits,
                               i == 2 ? fb->group : fa->group, outs[i], in, i == 1);
        for (int T = 1; T <= 3; T += 2) {
            float *x = malloc((size_t)T * in * sizeof(float)), *y[3], *z[3];
            for (int i = 0; i < T * in; i++)
                x[i] = rndf(r);
            const lm_linear *ws[3] = {&t[0].w, &t[1].w, &t[2].w};
            for (int i = 0; i < 3; i++) {
                y[i] = malloc((size_t)T * outs[i] * sizeof(float));
                z[i] = malloc((size_t)T * outs[i] * sizeof(float));
                be->ops->linear(be, ws[i], x, T, z[i]);
            }
            be->ops->linear_n(be, 3, ws, x, T, y);
            double e = 0;
            for (int i = 0; i < 3; i++)
                for (int k = 0; k < T * outs[i]; k++)
                    e = fmax(e, fabs(y[i][k] - z[i][k]) / (1e-6 + 1e-6 * fabs(z[i][k])));
            CHECKF(e <= 1.0, "backend %s linear_n %s/%s T=%d: err %.3g", isa, fa->name, fb->name, T, e);
            lm_linear gate = t[0].w, up = t[0].w; /* act(g) * g */
            int I = outs[0];
            float *g = malloc((size_t)T * I * sizeof(float)), *u = malloc((size_t)T * I * sizeof(float));
            float *o = malloc((size_t)T * I * sizeof(float)), *o2 = malloc((size_t)T * I * sizeof(float));
            be->ops->linear_glu(be, &gate, &up, x, T, LM_ACT_SILU, 0.0f, g, u, o);
            be->ops->glu(be, z[0], z[0], I, T, I, LM_ACT_SILU, 0.0f, o2);
            e = 0;
            for (int k = 0; k < T * I; k++)
                e = fmax(e, fabs(o[k] - o2[k]) / (1e-6 + 1e-5 * fabs(o2[k])));
            CHECKF(e <= 1.0, "backend %s linear_glu %s T=%d: err %.3g", isa, fa->name, T, e);
            free(g), free(u), free(o), free(o2), free(x);
            for (int i = 0; i < 3; i++)
                free(y[i]), free(z[i]);
        }
        for (int i = 0; i < 3; i++)
            free_weight(&t[i]);
    }
    be->ops->destroy(be);
}

/* attn_scores and attn_values against double sums on ragged shapes (head dims off the vector
 * width, odd group sizes, padded rows, row counts off the blocks), on f32 and f16 rows (the
 * reference reads the f16 values as floats) */
static void test_attn_kernels(const lm_cpu_kernels *k, rng *r) {
    static const int shapes[][3] = {{16, 8, 128}, {32, 8, 64}, {4, 4, 80},   {6, 2, 17},  {3, 1, 256},
                                    {7, 7, 33},   {8, 2, 64},  {2, 1, 144},  {16, 16, 32}, {32, 4, 128},
                                    {16, 1, 64},  {48, 8, 16}, {16, 8, 256}, {16, 4, 96}, {64, 8, 128},
                                    {48, 24, 32}, {80, 8, 32}};
    /* stream = 1 (decode): sets may take another path (AVX-512: rows front to back) */
    for (size_t c = 0; c < 4 * sizeof shapes / sizeof shapes[0]; c++) {
        int sh = (int)(c / 4), stream = (int)(c % 2), f16 = (int)(c / 2 % 2);
        int nh = shapes[sh][0], nkv = shapes[sh][1], hd = shapes[sh][2], n = 1 + (int)(rnd(r) % 45);
        size_t stride = (size_t)nkv * hd + (sh % 2 ? 0 : 5), lds = (size_t)n + c % 3;
        float *kv = malloc((2 * n * stride + 1) * sizeof(float)), *q = malloc((size_t)nh * hd * sizeof(float));
        float *s = malloc(nh * lds * sizeof(float)), *out = malloc((size_t)nh * hd * sizeof(float));
        float *o0 = malloc((size_t)nh * hd * sizeof(float));
        uint16_t *kv16 = malloc((2 * n * stride + 1) * sizeof(uint16_t));
        for (size_t i = 0; i < 2 * n * stride; i++) {
            kv[i] = rndf(r);
            kv16[i] = lm_f32_to_f16(kv[i]);
            if (f16)
                kv[i] = lm_f16_to_f32(kv16[i]);
        }
        for (int i = 0; i < nh * hd; i++)
            q[i] = rndf(r);
        lm_attn_rows a = {kv, kv + n * stride, stride, n, nh, nkv, hd, stream, f16};
        if (f16)
            a.k = kv16, a.v = kv16 + n * stride;
        k->attn_scores(&a, q, 0.125f, s, lds);
        double se = 0, ve = 0;
        int per = nh / nkv;
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < n; i++) {
                double d = 0, m = 0;
                for (int e = 0; e < hd; e++) {
                    double t = (double)q[h * hd + e] * kv[i * stride + (size_t)(h / per) * hd + e];
                    d += t;
                    m += fabs(t);
                }
                se = fmax(se, fabs(s[h * lds + i] - 0.125 * d) / (2e-5 * 0.125 * m + 1e-6));
            }
        CHECKF(se <= 1.0, "%s attn_scores nh=%d nkv=%d hd=%d n=%d stream=%d f16=%d: err %.3g", k->name, nh, nkv, hd, n,
               stream, f16, se);
        for (int h = 0; h < nh; h++)
            for (size_t i = 0; i < (size_t)n; i++)
                s[h * lds + i] = 0.5f * (rndf(r) + 1.0f);
        for (int i = 0; i < nh * hd; i++)
            out[i] = o0[i] = rndf(r);
        k->attn_values(&a, s, lds, out);
        for (int h = 0; h < nh; h++)
            for (int e = 0; e < hd; e++) {
                double d = o0[h * hd + e], m = fabs(d);
                for (int i = 0; i < n; i++) {
                    double t = (double)s[h * lds + i] * kv[n * stride + i * stride + (size_t)(h / per) * hd + e];
                    d += t;
                    m += fabs(t);
                }
                ve = fmax(ve, fabs(out[h * hd + e] - d) / (2e-5 * m + 1e-6));
            }
        CHECKF(ve <= 1.0, "%s attn_values nh=%d nkv=%d hd=%d n=%d stream=%d f16=%d: err %.3g", k->name, nh, nkv, hd, n,
               stream, f16, ve);
        free(kv), free(kv16), free(q), free(s), free(out), free(o0);
    }
}

/* The backend's attention op against a double-precision softmax: causal prefill, decode over a
 * long cache (split into chunks and merged), cache positions with holes, windows, sinks, softcap;
 * each on f32 and on f16 rows (the reference reads the f16 values). */
static void test_backend_attention(const char *isa, rng *r) {
    setenv("LMCORE_ISA", isa, 1);
    lm_backend *be = NULL;
    CHECK(lm_backend_cpu_new(2, &be) == LM_OK);
    if (!be)
        return;
    for (int cf = 0; cf < 16; cf++) {
        int c = cf % 8, f16 = cf / 8;
        int nh = c % 2 ? 8 : 6, nkv = c % 2 ? 2 : 3, hd = c % 3 == 0 ? 64 : 40 + c;
        int n = c < 4 ? 9 + c : 300 + 37 * c, T = c < 4 ? 5 : 1 + c % 2;
        int window = c == 2 || c == 5 ? 50 + c : 0, sinks = c == 3 || c == 6, holes = c == 1 || c == 7;
        float cap = c == 4 ? 5.0f : 0.0f;
        size_t ks = (size_t)nkv * hd;
        float *k = malloc(n * ks * sizeof(float)), *v = malloc(n * ks * sizeof(float));
        float *q = malloc((size_t)T * nh * hd * sizeof(float)), *out = malloc((size_t)T * nh * hd * sizeof(float));
        float sk[8];
        int32_t *kpos = malloc((size_t)n * sizeof(int32_t)), qpos[2 + 5];
        double *p = malloc((size_t)n * sizeof(double));
        uint16_t *k16 = malloc(n * ks * sizeof(uint16_t)), *v16 = malloc(n * ks * sizeof(uint16_t));
        for (size_t i = 0; i < n * ks; i++) {
            k[i] = 2 * rndf(r);
            v[i] = rndf(r);
            k16[i] = lm_f32_to_f16(k[i]);
            v16[i] = lm_f32_to_f16(v[i]);
            if (f16) {
                k[i] = lm_f16_to_f32(k16[i]);
                v[i] = lm_f16_to_f32(v16[i]);
            }
        }
        for (int i = 0; i < T * nh * hd; i++)
            q[i] = rndf(r);
        for (int i = 0; i < n; i++)
            kpos[i] = holes && i % 7 == 3 ? -1 : i;
        for (int t = 0; t < T; t++)
            qpos[t] = n - T + t;
        for (int h = 0; h < nh; h++)
            sk[h] = rndf(r);
        lm_attn_args a = {.q = q, .k = f16 ? (const void *)k16 : k, .v = f16 ? (const void *)v16 : v, .kv_f16 = f16,
                          .kpos = kpos, .n_rows = n, .qpos = qpos, .T = T, .n_heads = nh,
                          .n_kv = nkv, .head_dim = hd, .window = window, .scale = 0.2f, .softcap = cap,
                          .sinks = sinks ? sk : NULL, .out = out};
        be->ops->attention(be, &a);
        double worst = 0;
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nh; h++) {
                const float *qh = q + ((size_t)t * nh + h) * hd;
                double mx = sinks ? sk[h] : -INFINITY, sum = 0;
                for (int i = 0; i < n; i++) {
                    int vis = kpos[i] >= 0 && kpos[i] <= qpos[t] && !(window && qpos[t] - kpos[i] >= window);
                    double d = 0;
                    for (int e = 0; e < hd; e++)
                        d += (double)qh[e] * k[i * ks + (size_t)(h / (nh / nkv)) * hd + e];
                    d *= 0.2;
                    if (cap > 0)
                        d = cap * tanh(d / cap);
                    p[i] = vis ? d : -INFINITY;
                    mx = fmax(mx, p[i]);
                }
                for (int i = 0; i < n; i++)
                    sum += p[i] = exp(p[i] - mx);
                sum += sinks ? exp(sk[h] - mx) : 0;
                for (int e = 0; e < hd; e++) {
                    double o = 0;
                    for (int i = 0; i < n; i++)
                        o += p[i] / sum * v[i * ks + (size_t)(h / (nh / nkv)) * hd + e];
                    worst = fmax(worst, fabs(out[((size_t)t * nh + h) * hd + e] - o));
                }
            }
        CHECKF(worst <= 2e-5, "backend %s attention case %d (T=%d n=%d hd=%d f16=%d): err %.3g", isa, c, T, n, hd, f16,
               worst);
        free(k), free(v), free(k16), free(v16), free(q), free(out), free(kpos), free(p);
    }
    be->ops->destroy(be);
}

/* The backend's linear op (decode and prefill paths, with bias) with the set forced by LMCORE_ISA. */
static void test_backend_linear(const char *isa, rng *r) {
    setenv("LMCORE_ISA", isa, 1);
    lm_backend *be = NULL;
    CHECK(lm_backend_cpu_new(2, &be) == LM_OK);
    if (!be)
        return;
    const fmt *cases[] = {&FORMATS[1], &FORMATS[3], &FORMATS[5], &FORMATS[9], &FORMATS[13]};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int in = 256, out = 300 + (int)(rnd(r) % 50);
        CHECK(be->ops->reserve(be, in, 16) == LM_OK);
        tw t = make_weight(r, cases[c]->kind, cases[c]->dt, cases[c]->bits, cases[c]->group, out, in, 1);
        for (int T = 1; T <= 7; T += 6) {
            float *x = be->ops->alloc(be, (size_t)T * in * sizeof(float));
            float *y = be->ops->alloc(be, (size_t)T * out * sizeof(float));
            double *ref = malloc((size_t)T * out * sizeof(double)), *mag = malloc((size_t)T * out * sizeof(double));
            for (int i = 0; i < T * in; i++)
                x[i] = rndf(r);
            reference(&t.w, x, T, ref, mag);
            if (lm_xvec_group(&t.w))
                widen_mag_t(&t.w, x, T, mag); /* packed weights may meet int16 activations */
            be->ops->linear(be, &t.w, x, T, y);
            double e = worst_err(y, ref, mag, (size_t)T * out);
            CHECKF(e <= 1.0, "backend %s %s T=%d: err %.3g", isa, cases[c]->name, T, e);
            be->ops->release(be, x);
            be->ops->release(be, y);
            free(ref);
            free(mag);
        }
        free_weight(&t);
    }
    be->ops->destroy(be);
}

int main(void) {
    rng r = {42};
    int ran = 0;
    for (int i = 0; i < LM_ISA_COUNT; i++) {
        const lm_cpu_kernels *k = lm_cpu_kernels_get((lm_isa)i);
        if (!k) {
            printf("kernel set %s: not supported here, skipped\n", lm_isa_name((lm_isa)i));
            continue;
        }
        CHECK(k->isa == (lm_isa)i);
        test_set(k, &r);
        test_attn_kernels(k, &r);
        test_backend_linear(k->name, &r);
        test_backend_attention(k->name, &r);
        test_backend_fused(k->name, &r);
        ran++;
        printf("kernel set %s: tested\n", k->name);
    }
    CHECK(ran >= 1);
    CHECK(lm_cpu_kernels_get(LM_ISA_SCALAR) != NULL);
    /* the env cap selects the portable set */
    setenv("LMCORE_ISA", "scalar", 1);
    CHECK(lm_cpu_kernels_best()->isa == LM_ISA_SCALAR);
    unsetenv("LMCORE_ISA");
    CHECK(lm_cpu_kernels_best() != NULL);
    return test_done("cpu_kernels");
}
