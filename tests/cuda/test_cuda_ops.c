/* Every CUDA op against the CPU op (the scalar reference) on random and ragged shapes: linear
 * over every stored format (dense f32/f16/bf16 and strided, MLX affine 2-8 bit with groups
 * 32/64/128, MXFP4), embedding, norms, rope, attention (GQA, empty rows, out-of-order rows,
 * window, softcap, sinks, head_dim not a multiple of 32), activations, MoE routing and row
 * moves, Gemma 3n ops; the decode (matvec), cuBLAS (many tokens) and split-attention paths;
 * the fused decode ops (q/k/v, gate/up/activation, add+rmsnorm, KV rows, input norms and residual
 * adds inside the matvecs); quantized KV rows (bit
 * for bit); the greedy pick (argmax) against the host sampler at temp 0, also recorded in a CUDA
 * graph; sampling (the sample op) against the host sampler with the same draw.
 * Tolerance: |gpu - cpu| <= 1e-4 * max(1, |cpu|) (fp32, other summation order), except the
 * f16 tensor-core paths (prefill GEMMs, prompt attention), whose bounds are given where they
 * are checked, and the 4/8-bit decode products, which round x to 16 bits per block (qx_round);
 * the argmax token is identical and its logprob within 1e-6 * max(1, |lp|).
 * Exits 77 (skipped) without a GPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/util.h"
#include "generate/sampler.h"
#include "test_util.h"

static lm_backend *cpu, *gpu;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float rndf(void) { return (float)(rnd32() % 20001) / 10000.0f - 1.0f; } /* [-1, 1] */

/* A host array mirrored into both backends. */
typedef struct { size_t bytes; void *h, *c, *g; } buf;

static buf mk(size_t bytes) {
    buf b = {bytes, calloc(1, bytes + 4), cpu->ops->alloc(cpu, bytes + 4), gpu->ops->alloc(gpu, bytes + 4)};
    return b;
}
static buf mkf(size_t n, float lo_hi) { /* random floats in [-lo_hi, lo_hi] */
    buf b = mk(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        ((float *)b.h)[i] = rndf() * lo_hi;
    memcpy(b.c, b.h, n * sizeof(float));
    gpu->ops->upload(gpu, b.g, b.h, n * sizeof(float));
    return b;
}
static buf mki(const int32_t *v, size_t n) {
    buf b = mk(n * sizeof(int32_t));
    memcpy(b.h, v, n * sizeof *v);
    memcpy(b.c, v, n * sizeof *v);
    gpu->ops->upload(gpu, b.g, v, n * sizeof *v);
    return b;
}
static void drop(buf *b) {
    free(b->h);
    cpu->ops->release(cpu, b->c);
    gpu->ops->release(gpu, b->g);
}

/* Compare n floats of the CPU result with the GPU's: worst |gpu - cpu| / max(1, |cpu|) <= tol. */
static void cmp_tol(const char *what, const buf *b, size_t n, double tol) {
    float *g = malloc(n * sizeof *g);
    gpu->ops->download(gpu, g, b->g, n * sizeof *g);
    const float *c = b->c;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)g[i] - c[i]) / fmax(1.0, fabs(c[i]));
        if (!(d <= worst))
            worst = isnan(d) ? INFINITY : d;
    }
    free(g);
    CHECKF(worst <= tol, "%s: worst relative |gpu - cpu| %.3g", what, worst);
    CHECKF(gpu->ops->status(gpu) == LM_OK, "%s: %s", what, lm_last_error());
}

static void cmp(const char *what, const buf *b, size_t n) { cmp_tol(what, b, n, 1e-4); }

/* --- linear ------------------------------------------------------------------------------------ */

typedef struct { lm_linear c, g; void *gw, *gs, *gb, *gbias; void *hw, *hs, *hb; float *hbias; } wpair;

static void *dev_copy(const void *h, size_t n) { return h ? gpu->ops->upload_weights(gpu, h, n) : NULL; }

/* kind: dense (dt, step), affine (bits, group, dt of scales), mxfp4 */
static wpair mkw(lm_wkind kind, lm_dtype dt, int out, int in, int bits, int group, int step, int bias) {
    wpair p;
    memset(&p, 0, sizeof p);
    lm_linear w = {.kind = kind, .dtype = dt, .out = out, .in = in, .bits = bits, .group = group};
    size_t wb, sb = 0;
    if (kind == LM_W_DENSE) {
        w.in_step = (size_t)step;
        w.w_row_bytes = (size_t)in * step * LM_DTYPES[dt].size;
        wb = (size_t)out * w.w_row_bytes;
        p.hw = malloc(wb);
        size_t ne = wb / LM_DTYPES[dt].size;
        for (size_t i = 0; i < ne; i++) {
            float v = rndf();
            if (dt == LM_DT_F32)
                ((float *)p.hw)[i] = v;
            else if (dt == LM_DT_BF16)
                ((uint16_t *)p.hw)[i] = lm_f32_to_bf16(v);
            else
                ((uint16_t *)p.hw)[i] = lm_f32_to_f16(v);
        }
    } else {
        if (kind == LM_W_MXFP4) {
            w.bits = 4;
            w.group = 32;
            w.dtype = LM_DT_U8;
        }
        w.w_row_bytes = (size_t)in * w.bits / 8;
        int ng = in / w.group;
        w.s_row_bytes = kind == LM_W_MXFP4 ? (size_t)ng : (size_t)ng * LM_DTYPES[dt].size;
        wb = (size_t)out * w.w_row_bytes;
        sb = (size_t)out * w.s_row_bytes;
        p.hw = malloc(wb);
        for (size_t i = 0; i < wb; i++)
            ((uint8_t *)p.hw)[i] = (uint8_t)rnd32();
        p.hs = malloc(sb);
        if (kind == LM_W_MXFP4) {
            for (size_t i = 0; i < sb; i++)
                ((uint8_t *)p.hs)[i] = (uint8_t)(120 + rnd32() % 10);
        } else {
            p.hb = malloc(sb);
            for (size_t i = 0; i < sb / 2; i++) {
                float s = 0.5f / (float)(1 << w.bits), b = rndf();
                ((uint16_t *)p.hs)[i] = dt == LM_DT_BF16 ? lm_f32_to_bf16(s) : lm_f32_to_f16(s);
                ((uint16_t *)p.hb)[i] = dt == LM_DT_BF16 ? lm_f32_to_bf16(b) : lm_f32_to_f16(b);
            }
        }
    }
    if (bias) {
        p.hbias = malloc((size_t)out * sizeof(float));
        for (int i = 0; i < out; i++)
            p.hbias[i] = rndf();
    }
    p.c = w;
    p.c.w = p.hw;
    p.c.scales = p.hs;
    p.c.biases = p.hb;
    p.c.bias = p.hbias;
    p.g = w;
    p.g.w = p.gw = dev_copy(p.hw, wb);
    p.g.scales = p.gs = dev_copy(p.hs, sb);
    p.g.biases = p.gb = dev_copy(p.hb, sb);
    p.g.bias = p.gbias = dev_copy(p.hbias, (size_t)out * sizeof(float));
    return p;
}

static void dropw(wpair *p) {
    void *g[] = {p->gw, p->gs, p->gb, p->gbias};
    for (int i = 0; i < 4; i++)
        gpu->ops->release(gpu, g[i]);
    free(p->hw);
    free(p->hs);
    free(p->hb);
    free(p->hbias);
}

/* The decode products of MLX 4/8-bit rows (matvec.cu, integer dots) first round x to 16 bits in
 * blocks of xb elements: q = rint(x * 32767 / m), m the block's largest |x|, x' = q * m / 32767.
 * The CPU then gets x' too (rounding x' again gives x' back), so that both compute W x'. */
static int qx_block(const lm_linear *w, int T) {
    return T == 1 && w->kind == LM_W_AFFINE && (w->bits == 4 || w->bits == 8) ? (w->bits == 4 ? 32 : 16) : 0;
}

static void qx_round_f32(float *v, size_t n, int xb) {
    for (size_t b = 0; b + (size_t)xb <= n; b += (size_t)xb) {
        float m = 0;
        for (int j = 0; j < xb; j++)
            m = fmaxf(m, fabsf(v[b + j]));
        float inv = m > 0 ? 32767.0f / m : 0.0f, sx = m * (1.0f / 32767.0f);
        for (int j = 0; j < xb; j++)
            v[b + j] = rintf(v[b + j] * inv) * sx;
    }
}

static void qx_round(buf *x, size_t n, int xb) {
    float *v = x->h;
    qx_round_f32(v, n, xb);
    memcpy(x->c, v, n * sizeof(float));
    gpu->ops->upload(gpu, x->g, v, n * sizeof(float));
}

static void check_linear(const char *what, wpair *w, int T) {
    buf x = mkf((size_t)T * w->c.in, 1.0f), y = mk((size_t)T * w->c.out * sizeof(float));
    if (qx_block(&w->c, T))
        qx_round(&x, (size_t)T * w->c.in, qx_block(&w->c, T));
    cpu->ops->linear(cpu, &w->c, x.c, T, y.c);
    gpu->ops->linear(gpu, &w->g, x.g, T, y.g);
    char name[128];
    snprintf(name, sizeof name, "linear %s out %d in %d T %d", what, w->c.out, w->c.in, T);
    cmp(name, &y, (size_t)T * w->c.out);
    drop(&x);
    drop(&y);
}

static void test_linear(void) {
    static const int TS[] = {1, 3, 8, 17};
    lm_dtype dts[] = {LM_DT_F32, LM_DT_F16, LM_DT_BF16};
    for (int d = 0; d < 3; d++)
        for (int step = 1; step <= 3; step += 2) {
            wpair w = mkw(LM_W_DENSE, dts[d], 37, 70, 0, 0, step, d == 1);
            for (int t = 0; t < 4; t++)
                check_linear(LM_DTYPES[dts[d]].short_name, &w, TS[t]);
            dropw(&w);
        }
    static const int BITS[] = {2, 3, 4, 5, 6, 8}, GROUPS[] = {32, 64, 128};
    for (int b = 0; b < 6; b++)
        for (int g = 0; g < 3; g++) {
            char what[32];
            snprintf(what, sizeof what, "q%d/g%d", BITS[b], GROUPS[g]);
            wpair w = mkw(LM_W_AFFINE, g == 1 ? LM_DT_F16 : LM_DT_BF16, 33, 256, BITS[b], GROUPS[g], 1, b == 2);
            check_linear(what, &w, 1);
            check_linear(what, &w, 11);
            dropw(&w);
        }
    /* decode shapes where each warp of the integer-dot kernel walks several row groups; then x
     * not rounded beforehand: within the rounding's bound, sum |W| * half a step of x's block */
    for (int b = 4; b <= 8; b += 4) {
        char what[32];
        snprintf(what, sizeof what, "q%d/g64 wide", b);
        int out = 9001, in = 2048, xb = b == 4 ? 32 : 16;
        wpair w = mkw(LM_W_AFFINE, LM_DT_BF16, out, in, b, 64, 1, 1);
        check_linear(what, &w, 1);
        buf x = mkf((size_t)in, 1.0f), y = mk((size_t)out * sizeof(float));
        float *xs = x.h, *row = malloc((size_t)in * sizeof *row), *g = malloc((size_t)out * sizeof *g);
        for (int i = 0; i < in; i++) /* blocks of very different sizes */
            xs[i] *= (i / xb) % 3 == 0 ? 1e3f : (i / xb) % 3 == 1 ? 1e-3f : 1.0f;
        memcpy(x.c, xs, (size_t)in * sizeof(float));
        gpu->ops->upload(gpu, x.g, xs, (size_t)in * sizeof(float));
        cpu->ops->linear(cpu, &w.c, x.c, 1, y.c);
        gpu->ops->linear(gpu, &w.g, x.g, 1, y.g);
        gpu->ops->download(gpu, g, y.g, (size_t)out * sizeof *g);
        double worst = 0;
        for (int r = 0; r < out; r++) {
            lm_linear_row_f32(&w.c, r, row);
            double bound = 1e-5 * (1 + fabs(((float *)y.c)[r]));
            for (int i0 = 0; i0 < in; i0 += xb) {
                float m = 0;
                for (int i = i0; i < i0 + xb; i++)
                    m = fmaxf(m, fabsf(xs[i]));
                for (int i = i0; i < i0 + xb; i++)
                    bound += fabs(row[i]) * m / 65534.0 * 1.001;
            }
            double e = fabs((double)g[r] - ((float *)y.c)[r]) / bound;
            if (!(e <= worst))
                worst = isnan(e) ? INFINITY : e;
        }
        CHECKF(worst <= 1.0, "linear %s, x unrounded: error %.3g x the bound", what, worst);
        free(row);
        free(g);
        drop(&x);
        drop(&y);
        dropw(&w);
    }
    wpair w = mkw(LM_W_MXFP4, LM_DT_U8, 29, 96, 0, 0, 1, 1);
    check_linear("mxfp4", &w, 1);
    check_linear("mxfp4", &w, 9);
    /* embedding rows of a packed table */
    int32_t ids[4] = {3, 0, 28, 3};
    buf id = mki(ids, 4), out = mk(4 * 96 * sizeof(float));
    cpu->ops->embed(cpu, &w.c, id.c, 4, 1.5f, out.c);
    gpu->ops->embed(gpu, &w.g, id.g, 4, 1.5f, out.g);
    cmp("embed mxfp4", &out, 4 * 96);
    drop(&id);
    drop(&out);
    dropw(&w);
}

/* Many tokens go through cuBLAS. f16 path (every weight but a dense bf16 one): x row t enters as
 * f16(x[t] * 2^e) with e = 0 unless the row's largest magnitude m lies outside [2^-7, 2^15), then
 * e = 15 - k for m in [2^(k-1), 2^k); the weight is rounded to f16 (dequantized first). bf16 path:
 * the weight as stored and x split into two bf16 halves (nearly exact). The reference does the
 * same roundings and sums in double; the tolerance scales with the sum of |terms| (f32
 * accumulation of large, cancelling products). Rows of x are scaled by 1, 3e5 and 1e-4 in turn,
 * so that both scalings run. */
static double f16_row_scale(const float *x, int n) {
    float m = 0;
    for (int i = 0; i < n; i++)
        m = fmaxf(m, fabsf(x[i]));
    int k = 0;
    if (m > 0)
        frexpf(m, &k);
    return m > 0 && (k > 15 || k <= -7) ? ldexp(1.0, 15 - k) : 1.0;
}

static void check_linear_gemm(const char *what, wpair *w, int T) {
    int in = w->c.in, out = w->c.out;
    int f16 = !(w->g.kind == LM_W_DENSE && w->g.dtype == LM_DT_BF16 && w->g.in_step <= 1);
    buf x = mkf((size_t)T * in, 1.0f), y = mk((size_t)T * out * sizeof(float));
    float *xs = x.h;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < in; i++)
            xs[(size_t)t * in + i] *= t % 3 == 1 ? 3e5f : t % 3 == 2 ? 1e-4f : 1.0f;
    gpu->ops->upload(gpu, x.g, x.h, (size_t)T * in * sizeof(float));
    float *row = malloc((size_t)in * sizeof *row), *g = malloc((size_t)T * out * sizeof *g);
    float *xr = malloc((size_t)T * in * sizeof *xr); /* x as the GEMM sees it */
    double *mag = malloc((size_t)T * out * sizeof *mag);
    for (int t = 0; t < T; t++) {
        double s = f16 ? f16_row_scale(xs + (size_t)t * in, in) : 1.0;
        for (int i = 0; i < in; i++) {
            float v = xs[(size_t)t * in + i];
            xr[(size_t)t * in + i] = f16 ? (float)(lm_f16_to_f32(lm_f32_to_f16((float)(v * s))) / s) : v;
        }
    }
    for (int r = 0; r < out; r++) {
        lm_linear_row_f32(&w->c, r, row);
        for (int t = 0; t < T; t++) {
            double acc = w->c.bias ? w->c.bias[r] : 0.0, m = fabs(acc);
            for (int i = 0; i < in; i++) {
                float wr = f16 ? lm_f16_to_f32(lm_f32_to_f16(row[i])) : lm_bf16_to_f32(lm_f32_to_bf16(row[i]));
                double p = (double)wr * xr[(size_t)t * in + i];
                acc += p;
                m += fabs(p);
            }
            ((float *)y.c)[(size_t)t * out + r] = (float)acc;
            mag[(size_t)t * out + r] = m;
        }
    }
    gpu->ops->linear(gpu, &w->g, x.g, T, y.g);
    gpu->ops->download(gpu, g, y.g, (size_t)T * out * sizeof *g);
    /* f32 accumulation: error within a small multiple of 2^-24 * n * sum |terms|; a rounding of x
     * or W the reference does not make would be ~2^-12 * sum |terms| / sqrt(n) or more */
    double worst = 0;
    for (size_t i = 0; i < (size_t)T * out; i++) {
        double e = fabs((double)g[i] - ((float *)y.c)[i]) / (1e-6 * (1 + fabs(((float *)y.c)[i])) + 2e-5 * mag[i]);
        if (!(e <= worst))
            worst = isnan(e) ? INFINITY : e;
    }
    CHECKF(worst <= 1.0, "linear (GEMM) %s out %d in %d T %d: error %.3g x the tolerance", what, out, in, T, worst);
    CHECKF(gpu->ops->status(gpu) == LM_OK, "linear (GEMM) %s: %s", what, lm_last_error());
    free(g);
    free(mag);
    free(xr);
    free(row);
    drop(&x);
    drop(&y);
}

static void test_linear_gemm(void) {
    wpair w = mkw(LM_W_DENSE, LM_DT_BF16, 67, 96, 0, 0, 1, 1); /* bf16 kept: x in two halves */
    check_linear_gemm("bf16", &w, 64);
    check_linear_gemm("bf16", &w, 131);
    /* stored as f16 on the device (as the model loader does): the same values, read as f16 */
    CHECK(gpu->ops->weights_to_f16(gpu, w.gw, (size_t)67 * 96) == 1);
    w.g.dtype = LM_DT_F16;
    check_linear_gemm("bf16 stored as f16", &w, 64);
    check_linear("bf16 stored as f16", &w, 1);
    dropw(&w);
    /* a value beyond f16's range: the weight stays bf16, untouched */
    w = mkw(LM_W_DENSE, LM_DT_BF16, 20, 64, 0, 0, 1, 0);
    ((uint16_t *)w.hw)[77] = lm_f32_to_bf16(-1.0e5f);
    gpu->ops->upload(gpu, w.gw, w.hw, (size_t)20 * 64 * 2);
    CHECK(gpu->ops->weights_to_f16(gpu, w.gw, (size_t)20 * 64) == 0);
    check_linear_gemm("bf16 beyond f16", &w, 70);
    dropw(&w);
    w = mkw(LM_W_DENSE, LM_DT_F16, 40, 70, 0, 0, 3, 0); /* strided f16: dequantized first */
    check_linear_gemm("f16 step 3", &w, 70);
    dropw(&w);
    w = mkw(LM_W_DENSE, LM_DT_F16, 50, 72, 0, 0, 1, 1); /* f16 read as stored */
    check_linear_gemm("f16", &w, 66);
    dropw(&w);
    w = mkw(LM_W_AFFINE, LM_DT_BF16, 45, 256, 4, 64, 1, 1);
    check_linear_gemm("q4/g64", &w, 100);
    { /* linear_n converts x once for all its weights: the same results as one linear each */
        wpair u = mkw(LM_W_AFFINE, LM_DT_BF16, 30, 256, 8, 64, 1, 0);
        int T = 67;
        buf x = mkf((size_t)T * 256, 1.0f), y1 = mk((size_t)T * 45 * 4), y2 = mk((size_t)T * 30 * 4);
        float *a = malloc((size_t)T * 45 * 4), *b = malloc((size_t)T * 30 * 4);
        gpu->ops->linear(gpu, &w.g, x.g, T, y1.g);
        gpu->ops->linear(gpu, &u.g, x.g, T, y2.g);
        gpu->ops->download(gpu, a, y1.g, (size_t)T * 45 * 4);
        gpu->ops->download(gpu, b, y2.g, (size_t)T * 30 * 4);
        const lm_linear *ws[2] = {&w.g, &u.g};
        float *ys[2] = {y1.g, y2.g};
        gpu->ops->zero(gpu, y1.g, (size_t)T * 45 * 4);
        gpu->ops->zero(gpu, y2.g, (size_t)T * 30 * 4);
        gpu->ops->linear_n(gpu, 2, ws, x.g, T, ys);
        memcpy(y1.c, a, (size_t)T * 45 * 4);
        memcpy(y2.c, b, (size_t)T * 30 * 4);
        cmp_tol("linear_n (GEMM) vs linear (0)", &y1, (size_t)T * 45, 0.0);
        cmp_tol("linear_n (GEMM) vs linear (1)", &y2, (size_t)T * 30, 0.0);
        free(a);
        free(b);
        drop(&x);
        drop(&y1);
        drop(&y2);
        dropw(&u);
    }
    dropw(&w);
    w = mkw(LM_W_AFFINE, LM_DT_F16, 33, 128, 8, 32, 1, 0);
    check_linear_gemm("q8/g32", &w, 65);
    dropw(&w);
    w = mkw(LM_W_MXFP4, LM_DT_U8, 29, 96, 0, 0, 1, 0);
    check_linear_gemm("mxfp4", &w, 64);
    dropw(&w);
}

/* h = rmsnorm(x) * nw for one row of n, on the host in double, as the norm_matvec ops see it: with
 * xb (the 4/8-bit decode products), x * nw is rounded as qx_round does before the scale. */
static void norm_ref(const float *x, const float *nw, int n, float eps, int xb, float *h) {
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float rs = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++)
        h[i] = x[i] * nw[i];
    if (xb)
        qx_round_f32(h, (size_t)n, xb);
    for (int i = 0; i < n; i++)
        h[i] *= rs;
}

/* 1 unless the environment variable is set to 0 (the backend's switches for comparisons) */
static int env_on(const char *name) {
    const char *v = getenv(name);
    return !(v && v[0] == '0');
}

/* One-token ops of backend version 6 against the CPU's separate ops: norm_matvec_n (q/k/v and a
 * single weight), norm_matvec_glu and matvec_add, for every format the decode kernels serve,
 * with row counts that take each K split (4, 2 and 1 warps per row group), over short rows and
 * rows of several steps per lane (in 2560). The norms run inside the integer-dot kernels of MLX
 * 4/8-bit rows only; elsewhere the ops return 0. */
static void test_norm_matvec(void) {
    int fuse = env_on("LMCORE_CUDA_FUSE"), qx = env_on("LMCORE_CUDA_QX");
    static const struct { lm_wkind kind; lm_dtype dt; int bits; const char *name; } F[] = {
        {LM_W_DENSE, LM_DT_F32, 0, "f32"},    {LM_W_DENSE, LM_DT_F16, 0, "f16"},  {LM_W_DENSE, LM_DT_BF16, 0, "bf16"},
        {LM_W_AFFINE, LM_DT_BF16, 4, "q4"}, {LM_W_AFFINE, LM_DT_F16, 8, "q8"},
    };
    static const int OUTS[] = {40, 3001, 9000}, INS[] = {256, 2560};
    float eps = 1e-5f;
    for (size_t f = 0; f < sizeof F / sizeof F[0]; f++)
        for (int oi = 0; oi < 6; oi++) {
            int out = OUTS[oi % 3], in = INS[oi / 3], group = F[f].bits ? 64 : 0;
            /* f32 sums of `in` terms in another order: the dots' rounding grows with in, the GLU's
             * (a product of two dots) faster (measured at in 2560: 1.1e-4 and 6e-4) */
            double tol = 1e-4 * fmax(1.0, in / 1280.0), tol_glu = 1e-4 * fmax(1.0, in / 256.0);
            wpair q = mkw(F[f].kind, F[f].dt, out, in, F[f].bits, group, 1, 1);
            wpair k = mkw(F[f].kind, F[f].dt, 24, in, F[f].bits, group, 1, 0);
            int xb = qx_block(&q.c, 1), normed = fuse && qx && xb;
            buf x = mkf((size_t)in, 3.0f), nw = mkf((size_t)in, 1.5f), h = mk((size_t)in * 4);
            buf yq = mk((size_t)out * 4), yk = mk(24 * 4), act = mk((size_t)out * 4), gb = mk((size_t)out * 4),
                ub = mk((size_t)out * 4), ya = mkf((size_t)out, 1.0f);
            char name[96];
            /* q and k over rmsnorm(x) * nw */
            norm_ref(x.h, nw.h, in, eps, xb, h.c);
            cpu->ops->linear(cpu, &q.c, h.c, 1, yq.c);
            cpu->ops->linear(cpu, &k.c, h.c, 1, yk.c);
            const lm_linear *w[2] = {&q.g, &k.g};
            float *y[2] = {yq.g, yk.g};
            CHECKF(gpu->ops->norm_matvec_n(gpu, nw.g, eps, 2, w, x.g, y) == normed, "norm_matvec_n %s: fused %d",
                   F[f].name, !normed);
            snprintf(name, sizeof name, "norm_matvec_n %s out %d in %d (0)", F[f].name, out, in);
            if (normed)
                cmp_tol(name, &yq, (size_t)out, tol);
            snprintf(name, sizeof name, "norm_matvec_n %s out %d in %d (1)", F[f].name, out, in);
            if (normed)
                cmp_tol(name, &yk, 24, tol);
            /* gate (q) and up (a second weight of q's shape) with SiLU */
            wpair u = mkw(F[f].kind, F[f].dt, out, in, F[f].bits, group, 1, 0);
            cpu->ops->linear(cpu, &q.c, h.c, 1, gb.c);
            cpu->ops->linear(cpu, &u.c, h.c, 1, ub.c);
            cpu->ops->glu(cpu, gb.c, ub.c, out, 1, out, LM_ACT_SILU, 0.0f, act.c);
            CHECKF(gpu->ops->norm_matvec_glu(gpu, nw.g, eps, &q.g, &u.g, x.g, LM_ACT_SILU, 0.0f, act.g) == normed,
                   "norm_matvec_glu %s: fused %d", F[f].name, !normed);
            snprintf(name, sizeof name, "norm_matvec_glu %s out %d in %d", F[f].name, out, in);
            if (normed)
                cmp_tol(name, &act, (size_t)out, tol_glu);
            /* y += W x (x as the decode products round it) */
            if (xb)
                qx_round(&x, (size_t)in, xb);
            cpu->ops->linear(cpu, &q.c, x.c, 1, gb.c);
            cpu->ops->add(cpu, ya.c, gb.c, (size_t)out);
            CHECKF(gpu->ops->matvec_add(gpu, &q.g, x.g, ya.g) == fuse, "matvec_add %s: fused %d", F[f].name, !fuse);
            snprintf(name, sizeof name, "matvec_add %s out %d in %d", F[f].name, out, in);
            if (fuse)
                cmp_tol(name, &ya, (size_t)out, tol);
            buf *all[] = {&x, &nw, &h, &yq, &yk, &act, &gb, &ub, &ya};
            for (int i = 0; i < 9; i++)
                drop(all[i]);
            dropw(&q);
            dropw(&k);
            dropw(&u);
        }
    /* formats the decode kernels do not serve: nothing done, 0 returned */
    wpair m = mkw(LM_W_MXFP4, LM_DT_U8, 8, 64, 4, 32, 1, 0);
    buf x = mkf(64, 1.0f), nw = mkf(64, 1.0f), y = mkf(8, 1.0f);
    const lm_linear *w[1] = {&m.g};
    float *yy[1] = {y.g};
    memcpy(y.c, y.h, 8 * sizeof(float));
    CHECK(!gpu->ops->norm_matvec_n(gpu, nw.g, 1e-5f, 1, w, x.g, yy));
    CHECK(!gpu->ops->matvec_add(gpu, &m.g, x.g, y.g));
    cmp("unserved formats leave y alone", &y, 8);
    drop(&x);
    drop(&nw);
    drop(&y);
    dropw(&m);
}

/* The fused decode ops against the CPU's separate ops. */
static void test_fused(void) {
    for (int fmt = 0; fmt < 2; fmt++) { /* bf16 rows, then MLX 4-bit */
        lm_wkind kind = fmt ? LM_W_AFFINE : LM_W_DENSE;
        int bits = fmt ? 4 : 0, group = fmt ? 64 : 0;
        wpair q = mkw(kind, LM_DT_BF16, 40, 128, bits, group, 1, 1), k = mkw(kind, LM_DT_BF16, 9, 128, bits, group, 1, 0),
              v = mkw(kind, LM_DT_BF16, 17, 128, bits, group, 1, 0);
        for (int T = 1; T <= 2; T++) { /* T 2: the separate kernels behind the same slot */
            buf x = mkf((size_t)T * 128, 1.0f), yq = mk((size_t)T * 40 * 4), yk = mk((size_t)T * 9 * 4),
                yv = mk((size_t)T * 17 * 4);
            if (qx_block(&q.c, T))
                qx_round(&x, (size_t)T * 128, qx_block(&q.c, T));
            cpu->ops->linear(cpu, &q.c, x.c, T, yq.c);
            cpu->ops->linear(cpu, &k.c, x.c, T, yk.c);
            cpu->ops->linear(cpu, &v.c, x.c, T, yv.c);
            const lm_linear *w[3] = {&q.g, &k.g, &v.g};
            float *y[3] = {yq.g, yk.g, yv.g};
            gpu->ops->linear_n(gpu, 3, w, x.g, T, y);
            cmp(fmt ? "linear_n q4 (q)" : "linear_n bf16 (q)", &yq, (size_t)T * 40);
            cmp(fmt ? "linear_n q4 (k)" : "linear_n bf16 (k)", &yk, (size_t)T * 9);
            cmp(fmt ? "linear_n q4 (v)" : "linear_n bf16 (v)", &yv, (size_t)T * 17);
            /* gate/up with each activation */
            wpair g = mkw(kind, LM_DT_BF16, 33, 128, bits, group, 1, 0), u = mkw(kind, LM_DT_BF16, 33, 128, bits, group, 1, 1);
            buf gb = mk((size_t)T * 33 * 4), ub = mk((size_t)T * 33 * 4), out = mk((size_t)T * 33 * 4);
            for (int act = 0; act < LM_ACT_COUNT; act++) {
                cpu->ops->linear(cpu, &g.c, x.c, T, gb.c);
                cpu->ops->linear(cpu, &u.c, x.c, T, ub.c);
                cpu->ops->glu(cpu, gb.c, ub.c, 33, T, 33, (lm_act)act, 0.9f, out.c);
                gpu->ops->linear_glu(gpu, &g.g, &u.g, x.g, T, (lm_act)act, 0.9f, gb.g, ub.g, out.g);
                char name[64];
                snprintf(name, sizeof name, "linear_glu %s T %d act %d", fmt ? "q4" : "bf16", T, act);
                cmp(name, &out, (size_t)T * 33);
            }
            buf *all[] = {&x, &yq, &yk, &yv, &gb, &ub, &out};
            for (int i = 0; i < 7; i++)
                drop(all[i]);
            dropw(&g);
            dropw(&u);
        }
        dropw(&q);
        dropw(&k);
        dropw(&v);
    }
    /* x += y; h = rmsnorm(x) * w */
    int T = 3, n = 300;
    buf x = mkf((size_t)T * n, 2.0f), y = mkf((size_t)T * n, 2.0f), w = mkf((size_t)n, 1.0f), h = mk((size_t)T * n * 4);
    cpu->ops->add(cpu, x.c, y.c, (size_t)T * n);
    cpu->ops->rmsnorm(cpu, x.c, w.c, T, n, 1e-5f, h.c);
    gpu->ops->add_rmsnorm(gpu, x.g, y.g, w.g, T, n, 1e-5f, h.g);
    cmp("add_rmsnorm (x)", &x, (size_t)T * n);
    cmp("add_rmsnorm (h)", &h, (size_t)T * n);
    if (!env_on("LMCORE_CUDA_FUSE")) { /* kv_put then does nothing (the caller copies) */
        CHECK(!gpu->ops->kv_put(gpu, h.g, h.g, x.g, y.g, 3, 70, NULL, 7, NULL, 0));
        buf *few[] = {&x, &y, &w, &h};
        for (int i = 0; i < 4; i++)
            drop(few[i]);
        return;
    }
    /* KV rows and positions: rows 2..4 of a [6, 70] plane */
    buf kd = mkf(6 * 70, 1.0f), vd = mkf(6 * 70, 1.0f), pd = mk(6 * 4);
    int32_t pos[6] = {0, 1, -1, -1, -1, 5}, want[6] = {0, 1, 7, 8, 9, 5};
    gpu->ops->upload(gpu, pd.g, pos, sizeof pos);
    CHECK(gpu->ops->kv_put(gpu, (float *)kd.g + 140, (float *)vd.g + 140, x.g, y.g, 3, 70, (int32_t *)pd.g + 2, 7,
                           NULL, 0));
    memcpy((float *)kd.c + 140, x.c, 210 * sizeof(float));
    memcpy((float *)vd.c + 140, y.c, 210 * sizeof(float));
    cmp("kv_put (k)", &kd, 6 * 70);
    cmp("kv_put (v)", &vd, 6 * 70);
    int32_t got[6];
    gpu->ops->download(gpu, got, pd.g, sizeof got);
    CHECK(memcmp(got, want, sizeof got) == 0);
    /* with RoPE: q (4 heads of 35) rotated in place, the keys (2 heads) on their way into the
     * cache, partial rotary (20 of 35), against the rope op and a copy on the CPU */
    buf q = mkf(3 * 140, 1.0f), cs = mkf(3 * 20, 1.0f), k0 = mk(210 * sizeof(float));
    memcpy(k0.h, x.c, 210 * sizeof(float)); /* the keys as they were, to see that k is left alone */
    lm_rope_args rope = {.q = q.g, .n_heads = 4, .n_kv = 2, .head_dim = 35, .rot_dim = 20, .cs = cs.g};
    CHECK(gpu->ops->kv_put(gpu, (float *)kd.g + 140, (float *)vd.g + 140, x.g, y.g, 3, 70, (int32_t *)pd.g + 2, 7,
                           &rope, 0));
    cpu->ops->rope(cpu, q.c, 3, 4, 35, 20, cs.c);
    memcpy((float *)kd.c + 140, x.c, 210 * sizeof(float));
    cpu->ops->rope(cpu, (float *)kd.c + 140, 3, 2, 35, 20, cs.c);
    cmp("kv_put with rope (q)", &q, 3 * 140);
    cmp("kv_put with rope (k)", &kd, 6 * 70);
    cmp("kv_put with rope (v)", &vd, 6 * 70);
    memcpy(k0.c, k0.h, 210 * sizeof(float));
    float *kg = malloc(210 * sizeof(float));
    gpu->ops->download(gpu, kg, x.g, 210 * sizeof(float));
    CHECK(memcmp(kg, k0.c, 210 * sizeof(float)) == 0);
    free(kg);
    /* f16 rows: the values rounded as the CPU's kv_quantize rounds them; the rotated keys (rotated
     * on each device) within f16's rounding; q rotated again from its rotated state on both */
    buf kh = mk(210 * 2), vh = mk(210 * 2), kf = mk(210 * 4);
    CHECK(gpu->ops->kv_put(gpu, kh.g, vh.g, x.g, y.g, 3, 70, (int32_t *)pd.g + 2, 7, &rope, 1));
    cpu->ops->rope(cpu, q.c, 3, 4, 35, 20, cs.c);
    cmp("kv_put f16 with rope (q)", &q, 3 * 140);
    cpu->ops->kv_quantize(cpu, y.c, 3, 70, 16, 0, vh.c, NULL, NULL);
    uint16_t got16[210];
    gpu->ops->download(gpu, got16, vh.g, sizeof got16);
    CHECK(memcmp(got16, vh.c, sizeof got16) == 0);
    memcpy(kf.c, (float *)kd.c + 140, 210 * sizeof(float));
    gpu->ops->kv_dequant(gpu, kh.g, NULL, NULL, 3, 70, 16, 0, kf.g);
    cmp_tol("kv_put f16 with rope (k)", &kf, 210, 1e-3);
    buf *all[] = {&x, &y, &w, &h, &kd, &vd, &pd, &q, &cs, &k0, &kh, &vh, &kf};
    for (int i = 0; i < 13; i++)
        drop(all[i]);
}

/* --- attention ---------------------------------------------------------------------------------- */

/* Prompts of LM_CUDA_ATTN_TC_MIN_T tokens or more (head_dim 16..128) run on the tensor cores with
 * q, k, v and the probabilities rounded to f16 (11 significant bits): outputs, averages of values
 * in [-1, 1], then agree to a few 2^-11. f16: the device reads f16 rows (kv_f16), the CPU the same
 * values as f32. */
static void check_attention_as(int T, int nh, int nkv, int hd, int rows, int window, float softcap, int sinks,
                               int f16) {
    buf q = mkf((size_t)T * nh * hd, 1.0f), k = mkf((size_t)rows * nkv * hd, 1.0f), v = mkf((size_t)rows * nkv * hd, 1.0f);
    buf s = mkf((size_t)nh, 2.0f), out = mk((size_t)T * nh * hd * sizeof(float));
    int32_t *kp = malloc((size_t)rows * sizeof *kp), *qp = malloc((size_t)T * sizeof *qp);
    for (int r = 0; r < rows; r++) /* rows out of order (a rotating cache), some empty */
        kp[r] = r % 7 == 3 ? -1 : (r * 5) % rows;
    for (int t = 0; t < T; t++)
        qp[t] = rows - T + t;
    buf kpos = mki(kp, (size_t)rows), qpos = mki(qp, (size_t)T);
    lm_attn_args a = {.n_rows = rows, .T = T, .n_heads = nh, .n_kv = nkv, .head_dim = hd, .window = window,
                      .scale = 1.0f / sqrtf((float)hd), .softcap = softcap};
    lm_attn_args ac = a, ag = a;
    ac.q = q.c, ac.k = k.c, ac.v = v.c, ac.kpos = kpos.c, ac.qpos = qpos.c, ac.out = out.c;
    ac.sinks = sinks ? s.c : NULL;
    ag.q = q.g, ag.k = k.g, ag.v = v.g, ag.kpos = kpos.g, ag.qpos = qpos.g, ag.out = out.g;
    ag.sinks = sinks ? s.g : NULL;
    size_t n = (size_t)rows * nkv * hd;
    buf kh = mk(n * 2), vh = mk(n * 2);
    if (f16) { /* the rows rounded to f16: on the CPU (and back to f32 for its attention), on the device */
        cpu->ops->kv_quantize(cpu, k.c, rows, nkv * hd, 16, 0, kh.c, NULL, NULL);
        cpu->ops->kv_quantize(cpu, v.c, rows, nkv * hd, 16, 0, vh.c, NULL, NULL);
        cpu->ops->kv_dequant(cpu, kh.c, NULL, NULL, rows, nkv * hd, 16, 0, k.c);
        cpu->ops->kv_dequant(cpu, vh.c, NULL, NULL, rows, nkv * hd, 16, 0, v.c);
        gpu->ops->kv_quantize(gpu, k.g, rows, nkv * hd, 16, 0, kh.g, NULL, NULL);
        gpu->ops->kv_quantize(gpu, v.g, rows, nkv * hd, 16, 0, vh.g, NULL, NULL);
        ag.k = kh.g, ag.v = vh.g, ag.kv_f16 = 1;
    }
    CHECK(cpu->ops->reserve(cpu, 64, rows) == LM_OK);
    cpu->ops->attention(cpu, &ac);
    gpu->ops->attention(gpu, &ag);
    char name[128];
    snprintf(name, sizeof name, "attention T %d heads %d/%d hd %d rows %d window %d cap %g sinks %d%s", T, nh, nkv,
             hd, rows, window, softcap, sinks, f16 ? " f16 rows" : "");
    int tc = T >= LM_CUDA_ATTN_TC_MIN_T && (hd == 16 || hd == 32 || hd == 64 || hd == 128);
    cmp_tol(name, &out, (size_t)T * nh * hd, tc ? 3e-3 : 1e-4);
    free(kp);
    free(qp);
    buf *all[] = {&q, &k, &v, &s, &out, &kpos, &qpos, &kh, &vh};
    for (int i = 0; i < 9; i++)
        drop(all[i]);
}

static void check_attention(int T, int nh, int nkv, int hd, int rows, int window, float softcap, int sinks) {
    check_attention_as(T, nh, nkv, hd, rows, window, softcap, sinks, 0);
    check_attention_as(T, nh, nkv, hd, rows, window, softcap, sinks, 1);
}

/* --- the rest ------------------------------------------------------------------------------------- */

static void test_small_ops(void) {
    int T = 5, n = 300;
    buf x = mkf((size_t)T * n, 3.0f), w = mkf((size_t)n, 1.0f), y = mk((size_t)T * n * sizeof(float));
    cpu->ops->rmsnorm(cpu, x.c, w.c, T, n, 1e-6f, y.c);
    gpu->ops->rmsnorm(gpu, x.g, w.g, T, n, 1e-6f, y.g);
    cmp("rmsnorm", &y, (size_t)T * n);
    cpu->ops->rmsnorm(cpu, y.c, NULL, T * 3, n / 3, 1e-5f, y.c); /* in place, no weight */
    gpu->ops->rmsnorm(gpu, y.g, NULL, T * 3, n / 3, 1e-5f, y.g);
    cmp("rmsnorm in place", &y, (size_t)T * n);
    buf cs = mkf((size_t)T * 20, 1.0f);
    cpu->ops->rope(cpu, y.c, T, 6, 50, 20, cs.c);
    gpu->ops->rope(gpu, y.g, T, 6, 50, 20, cs.g);
    cmp("rope", &y, (size_t)T * n);
    for (int act = 0; act < LM_ACT_COUNT; act++) {
        buf o = mk((size_t)T * 100 * sizeof(float));
        cpu->ops->glu(cpu, x.c, (float *)x.c + 100, n, T, 100, (lm_act)act, 0.9f, o.c);
        gpu->ops->glu(gpu, x.g, (float *)x.g + 100, n, T, 100, (lm_act)act, 0.9f, o.g);
        char name[32];
        snprintf(name, sizeof name, "glu act %d", act);
        cmp(name, &o, (size_t)T * 100);
        drop(&o);
    }
    cpu->ops->add(cpu, y.c, x.c, (size_t)T * n);
    gpu->ops->add(gpu, y.g, x.g, (size_t)T * n);
    cpu->ops->scale(cpu, y.c, 0.7f, (size_t)T * n);
    gpu->ops->scale(gpu, y.g, 0.7f, (size_t)T * n);
    cpu->ops->softcap(cpu, y.c, 2.5f, (size_t)T * n);
    gpu->ops->softcap(gpu, y.g, 2.5f, (size_t)T * n);
    cpu->ops->mul_rows(cpu, y.c, w.c, T, n);
    gpu->ops->mul_rows(gpu, y.g, w.g, T, n);
    cmp("add, scale, softcap, mul_rows", &y, (size_t)T * n);
    cpu->ops->copy_rows(cpu, y.c, 60, (float *)x.c + 7, n, T, 50);
    gpu->ops->copy_rows(gpu, y.g, 60, (float *)x.g + 7, n, T, 50);
    cpu->ops->zero(cpu, (float *)y.c + 1000, 40 * sizeof(float));
    gpu->ops->zero(gpu, (float *)y.g + 1000, 40 * sizeof(float));
    cmp("copy_rows, zero", &y, (size_t)T * n);
    cpu->ops->sparsify(cpu, y.c, T, n, 1.6448536f);
    gpu->ops->sparsify(gpu, y.g, T, n, 1.6448536f);
    cmp("sparsify", &y, (size_t)T * n);
    cpu->ops->rms_match(cpu, x.c, w.c, 1, n);
    gpu->ops->rms_match(gpu, x.g, w.g, 1, n);
    cmp("rms_match", &x, (size_t)T * n);
    /* AltUp: 4 streams of [T, 75] */
    int ns = 4, H = 75;
    buf st = mkf((size_t)ns * T * H, 1.0f), coef = mkf((size_t)T * ns * ns, 1.0f), pred = mk((size_t)ns * T * H * 4);
    cpu->ops->altup_predict(cpu, st.c, coef.c, ns, T, H, pred.c);
    gpu->ops->altup_predict(gpu, st.g, coef.g, ns, T, H, pred.g);
    cmp("altup_predict", &pred, (size_t)ns * T * H);
    cpu->ops->altup_correct(cpu, st.c, pred.c, x.c, (float *)x.c + 3, coef.c, ns, T, H);
    gpu->ops->altup_correct(gpu, st.g, pred.g, x.g, (float *)x.g + 3, coef.g, ns, T, H);
    cmp("altup_correct", &st, (size_t)ns * T * H);
    buf *all[] = {&x, &w, &y, &cs, &st, &coef, &pred};
    for (int i = 0; i < 7; i++)
        drop(all[i]);
}

static void test_moe(void) {
    int T = 7, E = 8, K = 3, H = 40;
    buf lg = mkf((size_t)T * E, 2.0f), idx = mk((size_t)T * K * 4), w = mk((size_t)T * K * 4);
    for (int mode = 0; mode < 3; mode++) {
        int topk_softmax = mode == 0, norm = mode == 2;
        cpu->ops->moe_route(cpu, lg.c, T, E, K, topk_softmax, norm, idx.c, w.c);
        gpu->ops->moe_route(gpu, lg.g, T, E, K, topk_softmax, norm, idx.g, w.g);
        int32_t gi[21];
        gpu->ops->download(gpu, gi, idx.g, sizeof gi);
        CHECKF(memcmp(gi, idx.c, sizeof gi) == 0, "moe_route mode %d: experts differ", mode);
        cmp("moe_route weights", &w, (size_t)T * K);
    }
    int32_t rows[4] = {6, 0, 3, 5};
    buf r = mki(rows, 4), src = mkf((size_t)T * H, 1.0f), g = mk(4 * (size_t)H * 4), rw = mkf(4, 1.0f);
    cpu->ops->gather_rows(cpu, src.c, r.c, 4, H, g.c);
    gpu->ops->gather_rows(gpu, src.g, r.g, 4, H, g.g);
    cmp("gather_rows", &g, 4 * (size_t)H);
    cpu->ops->scatter_add_rows(cpu, src.c, g.c, r.c, rw.c, 4, H);
    gpu->ops->scatter_add_rows(gpu, src.g, g.g, r.g, rw.g, 4, H);
    cmp("scatter_add_rows", &src, (size_t)T * H);
    buf *all[] = {&lg, &idx, &w, &r, &src, &g, &rw};
    for (int i = 0; i < 7; i++)
        drop(all[i]);
}

/* --- greedy pick ---------------------------------------------------------------------------------- */

/* The pick of backend `be` (a CUDA backend) on x[V] against lm_sampler_sample at temp 0: the same
 * token; the logprob equal, or within 1e-6 * max(1, |lp|) (the device sums in another order). When
 * `record`, the op runs recorded in a CUDA graph (the backend must record: LMCORE_CUDA_GRAPHS=1). */
static void check_argmax(lm_backend *be, const float *x, int V, int record, const char *what) {
    lm_gen_params p = lm_gen_default_params();
    lm_sampler s;
    float lp = 0;
    int32_t want = -1;
    if (lm_sampler_init(&s, V, &p, NULL, 0) == LM_OK) {
        want = lm_sampler_sample(&s, x, NULL, 0, &lp);
        lm_sampler_free(&s);
    }
    float *xd = be->ops->alloc(be, (size_t)V * sizeof *xd);
    lm_argmax_out *od = be->ops->alloc(be, sizeof *od), out = {-1, 0.0f};
    CHECK(xd && od);
    if (!xd || !od)
        return;
    be->ops->upload(be, xd, x, (size_t)V * sizeof *xd);
    int recorded = record && be->ops->record_begin(be) == LM_OK;
    CHECKF(recorded == record, "%s: record_begin failed", what);
    be->ops->argmax(be, xd, V, od);
    if (recorded)
        be->ops->record_end(be, 1);
    be->ops->download(be, &out, od, sizeof out);
    CHECKF(be->ops->status(be) == LM_OK, "%s: %s", what, lm_last_error());
    int lp_ok = out.logprob == lp || (isnan(lp) && isnan(out.logprob)) ||
                fabs((double)out.logprob - lp) <= 1e-6 * fmax(1.0, fabs(lp));
    CHECKF(out.token == want && lp_ok, "%s (V=%d%s): gpu %d %.9g, host %d %.9g", what, V, record ? ", recorded" : "",
           out.token, out.logprob, want, lp);
    be->ops->release(be, xd);
    be->ops->release(be, od);
}

/* Quantized KV rows: the GPU's codes, scales and biases equal the CPU's bit for bit (the same
 * float operations), and so do the dequantized rows; rows of random values, a constant row (the
 * scale's floor), one of a dominant negative value and one of tiny values. */
static void test_kv_quant(void) {
    static const int BITS[] = {2, 3, 4, 5, 6, 8}, GROUPS[] = {32, 64, 128};
    int n = 9, dim = 256;
    buf x = mkf((size_t)n * dim, 2.0f);
    float *xs = x.h;
    for (int i = 0; i < dim; i++) {
        xs[dim + i] = 0.75f;                          /* row 1: constant */
        xs[2 * dim + i] = i % 37 ? 0.1f * xs[i] : -9.0f; /* row 2: a dominant negative value */
        xs[3 * dim + i] *= 1e-6f;                     /* row 3: tiny */
    }
    memcpy(x.c, xs, (size_t)n * dim * sizeof(float));
    gpu->ops->upload(gpu, x.g, xs, (size_t)n * dim * sizeof(float));
    for (int b = 0; b < 6; b++)
        for (int g = 0; g < 3; g++) {
            int bits = BITS[b], group = GROUPS[g], ng = dim / group;
            size_t qb = (size_t)n * dim * bits / 8, sb = (size_t)n * ng * sizeof(float);
            buf q = mk(qb), sc = mk(sb), bi = mk(sb), out = mk((size_t)n * dim * sizeof(float));
            cpu->ops->kv_quantize(cpu, x.c, n, dim, bits, group, q.c, sc.c, bi.c);
            gpu->ops->kv_quantize(gpu, x.g, n, dim, bits, group, q.g, sc.g, bi.g);
            cpu->ops->kv_dequant(cpu, q.c, sc.c, bi.c, n, dim, bits, group, out.c);
            gpu->ops->kv_dequant(gpu, q.g, sc.g, bi.g, n, dim, bits, group, out.g);
            buf *all[] = {&q, &sc, &bi, &out};
            size_t bytes[] = {qb, sb, sb, (size_t)n * dim * sizeof(float)};
            static const char *NAMES[] = {"codes", "scales", "biases", "dequantized rows"};
            for (int k = 0; k < 4; k++) {
                uint8_t *h = malloc(bytes[k]);
                gpu->ops->download(gpu, h, all[k]->g, bytes[k]);
                CHECKF(memcmp(h, all[k]->c, bytes[k]) == 0, "kv rows q%d/g%d: the %s differ", bits, group, NAMES[k]);
                free(h);
            }
            for (int k = 0; k < 4; k++)
                drop(all[k]);
        }
    /* f16 rows (bits 16): rounded to nearest even on both, and back */
    buf h = mk((size_t)n * dim * 2), out = mk((size_t)n * dim * sizeof(float));
    cpu->ops->kv_quantize(cpu, x.c, n, dim, 16, 0, h.c, NULL, NULL);
    gpu->ops->kv_quantize(gpu, x.g, n, dim, 16, 0, h.g, NULL, NULL);
    cpu->ops->kv_dequant(cpu, h.c, NULL, NULL, n, dim, 16, 0, out.c);
    gpu->ops->kv_dequant(gpu, h.g, NULL, NULL, n, dim, 16, 0, out.g);
    buf *both[] = {&h, &out};
    for (int k = 0; k < 2; k++) {
        uint8_t *hb = malloc(both[k]->bytes);
        gpu->ops->download(gpu, hb, both[k]->g, both[k]->bytes);
        CHECKF(memcmp(hb, both[k]->c, both[k]->bytes) == 0, "kv rows f16: the %s differ", k ? "f32 rows" : "codes");
        free(hb);
        drop(both[k]);
    }
    CHECKF(gpu->ops->status(gpu) == LM_OK, "kv rows: %s", lm_last_error());
    drop(&x);
}

/* The sample op against lm_sampler_sample on the same row and draw (the sampler's first draw, as
 * the session passes it): the same token, its logprob within 1e-6 * max(1, |lp|). Top-p runs on
 * peaked rows only: on flat rows the host's float running sum over ~1e5 tokens is itself off by
 * more than the smallest probabilities near the cut, where the device sums in double. */
static void check_sample(const float *x, int V, const lm_gen_params *p, const char *what) {
    float *xd = gpu->ops->alloc(gpu, (size_t)V * sizeof *xd);
    lm_argmax_out *od = gpu->ops->alloc(gpu, sizeof *od);
    gpu->ops->upload(gpu, xd, x, (size_t)V * sizeof *xd);
    for (int d = 0; d < 6; d++) {
        lm_gen_params q = *p;
        q.seed = (uint64_t)(d + 1) * 7919u;
        lm_sampler s;
        if (lm_sampler_init(&s, V, &q, NULL, 0) != LM_OK)
            break;
        lm_sample_args a;
        CHECK(lm_sampler_chain_args(&s, &a));
        lm_rng r = s.rng;
        a.u = lm_rng_uniform(&r);
        float lp = 0;
        int32_t want = lm_sampler_sample(&s, x, NULL, 0, &lp);
        lm_sampler_free(&s);
        lm_argmax_out out = {-1, 0.0f};
        gpu->ops->sample(gpu, xd, V, &a, od);
        gpu->ops->download(gpu, &out, od, sizeof out);
        CHECKF(gpu->ops->status(gpu) == LM_OK, "%s: %s", what, lm_last_error());
        int lp_ok = out.logprob == lp || (isnan(lp) && isnan(out.logprob)) ||
                    fabs((double)out.logprob - lp) <= 1e-6 * fmax(1.0, fabs(lp));
        CHECKF(out.token == want && lp_ok, "sample %s (V=%d, u=%.6f): gpu %d %.9g, host %d %.9g", what, V, a.u,
               out.token, out.logprob, want, lp);
    }
    gpu->ops->release(gpu, xd);
    gpu->ops->release(gpu, od);
}

static void test_sample(void) {
    static const int SIZES[] = {1000, 128256};
    for (size_t k = 0; k < 2; k++) {
        int V = SIZES[k];
        float *x = malloc((size_t)V * sizeof *x);
        for (int row = 0; row < 6; row++) {
            static const char *ROWS[] = {"peaked", "peaked, -inf entries", "flat", "ties", "NaN", "all -inf"};
            for (int i = 0; i < V; i++)
                x[i] = row == 3 ? (float)(rnd32() % 16) * 0.5f : rndf() * 3.0f;
            if (row <= 1)
                for (int j = 0; j < 12; j++) /* a dozen likely tokens over a long tail */
                    x[rnd32() % (uint32_t)V] += 12.0f + (float)j * 0.7f;
            if (row == 1)
                for (int i = 0; i < V; i += 2)
                    x[i] = -INFINITY;
            if (row == 4)
                x[V / 2] = NAN;
            if (row == 5)
                for (int i = 0; i < V; i++)
                    x[i] = -INFINITY;
            struct { float temp, top_p, min_p; int min_keep, top_k; } C[] = {
                {1.0f, 0, 0, 0, 0},    {0.7f, 0.9f, 0, 0, 0},     {0.8f, 0, 0.05f, 0, 0}, {0.8f, 0, 0.3f, 5, 0},
                {1.2f, 0, 0, 0, 40},   {0.6f, 0.95f, 0.02f, 0, 50}, {1.5f, 0.5f, 0, 0, 3},
            };
            for (size_t c = 0; c < sizeof C / sizeof C[0]; c++) {
                if (C[c].top_p > 0 && (row == 2 || row == 3))
                    continue;
                lm_gen_params p = lm_gen_default_params();
                p.temp = C[c].temp, p.top_p = C[c].top_p, p.min_p = C[c].min_p;
                p.min_tokens_to_keep = C[c].min_keep, p.top_k = C[c].top_k;
                char what[96];
                snprintf(what, sizeof what, "%s, temp %g top-p %g min-p %g/%d top-k %d", ROWS[row], C[c].temp,
                         C[c].top_p, C[c].min_p, C[c].min_keep, C[c].top_k);
                check_sample(x, V, &p, what);
            }
        }
        free(x);
    }
}

/* Rows of several sizes (one block up to the capped block count) and shapes: random, ties at the
 * maximum across chunks, the maximum first or last, -inf entries, a near-tie merged by the
 * rounding of x - lse, NaN, +inf, all -inf. */
/* edit_logits against lm_logit_ops_apply, bit for bit: changes from lm_sampler_logit_ops over
 * histories long enough for many blocks of ops (and tokens with a long run of frequency
 * subtractions), on rows of negative and positive logits. */
static void test_edit_logits(void) {
    static const int VS[] = {1000, 128256}, NH[] = {30, 5000};
    for (int vi = 0; vi < 2; vi++)
        for (int hi = 0; hi < 2; hi++) {
            int V = VS[vi], nh = NH[hi];
            lm_logit_bias bias[3] = {{7, 2.5f}, {7, -0.125f}, {V - 1, 1e-3f}};
            lm_gen_params p = lm_gen_default_params();
            p.logit_bias = bias, p.n_logit_bias = 3;
            p.repetition_penalty = 1.3f, p.repetition_context_size = nh;
            p.presence_penalty = 0.4f, p.presence_context_size = nh / 2;
            p.frequency_penalty = 0.07f, p.frequency_context_size = nh;
            lm_sampler smp;
            CHECK(lm_sampler_init(&smp, V, &p, NULL, 0) == LM_OK);
            int32_t *hist = malloc((size_t)nh * sizeof *hist);
            for (int i = 0; i < nh; i++) /* a few tokens very often, the rest spread */
                hist[i] = i % 3 == 0 ? (int32_t)(i % 5) : (int32_t)((i * 7919u) % (unsigned)V);
            const lm_logit_op *ops = NULL;
            int n = lm_sampler_logit_ops(&smp, hist, nh, &ops);
            CHECKF(n > 0, "edit_logits: no changes (%d)", n);
            buf x = mkf((size_t)V, 4.0f);
            float *want = malloc((size_t)V * sizeof *want), *got = malloc((size_t)V * sizeof *got);
            memcpy(want, x.h, (size_t)V * sizeof *want);
            lm_logit_ops_apply(want, ops, n);
            gpu->ops->edit_logits(gpu, x.g, ops, n);
            gpu->ops->download(gpu, got, x.g, (size_t)V * sizeof *got);
            CHECKF(gpu->ops->status(gpu) == LM_OK, "edit_logits: %s", lm_last_error());
            int diff = 0;
            for (int i = 0; i < V; i++)
                diff += memcmp(&got[i], &want[i], sizeof *got) != 0;
            CHECKF(diff == 0, "edit_logits V %d, %d changes: %d logits differ from the host's", V, n, diff);
            free(want);
            free(got);
            free(hist);
            drop(&x);
            lm_sampler_free(&smp);
        }
}

static void test_argmax(void) {
    static const int SIZES[] = {1, 7, 1000, 128256, 262144};
    for (size_t k = 0; k < sizeof SIZES / sizeof SIZES[0]; k++) {
        int V = SIZES[k];
        float *x = malloc((size_t)V * sizeof *x);
        char what[64];
        for (int c = 0; c < 10; c++) {
            for (int i = 0; i < V; i++)
                x[i] = c == 0 ? rndf() * 20.0f : (float)(rnd32() % 64) * 0.5f - 20.0f; /* c > 0: many ties */
            const char *name = "random";
            switch (c) {
            case 0:
                break;
            case 1:
                name = "ties on a coarse grid";
                break;
            case 2: /* ties at the maximum, the first one in a later chunk */
                name = "ties at the maximum";
                x[V / 3] = x[V / 2] = x[V - 1] = 30.0f;
                break;
            case 3:
                name = "maximum first";
                x[0] = 30.0f;
                break;
            case 4:
                name = "maximum last";
                x[V - 1] = 30.0f;
                break;
            case 5:
                name = "-inf entries";
                for (int i = 0; i < V; i += 3)
                    x[i] = -INFINITY;
                break;
            case 6: /* 1 and the next float round to the same x - lse: the first wins */
                name = "rounding tie";
                for (int i = 0; i < V; i++)
                    x[i] = 0.99f;
                x[V / 2] = 1.0f;
                x[V - 1] = nextafterf(1.0f, 2.0f);
                break;
            case 7:
                name = "NaN";
                x[V / 2] = NAN;
                break;
            case 8:
                name = "+inf";
                x[V - 1] = INFINITY;
                break;
            default:
                name = "all -inf";
                for (int i = 0; i < V; i++)
                    x[i] = -INFINITY;
            }
            snprintf(what, sizeof what, "argmax, %s", name);
            check_argmax(gpu, x, V, 0, what);
        }
        free(x);
    }
    /* recorded into a graph and replayed twice (the second updates the graph in place) */
    setenv("LMCORE_CUDA_GRAPHS", "1", 1);
    lm_backend *g = NULL;
    CHECK(lm_backend_cuda_new(0, &g) == LM_OK);
    unsetenv("LMCORE_CUDA_GRAPHS");
    if (!g)
        return;
    int V = 128256;
    float *x = malloc((size_t)V * sizeof *x);
    for (int i = 0; i < V; i++)
        x[i] = rndf() * 20.0f;
    x[77] = 25.0f;
    check_argmax(g, x, V, 1, "argmax recorded");
    x[V - 5] = 26.0f;
    check_argmax(g, x, V, 1, "argmax recorded again");
    free(x);
    g->ops->destroy(g);
}

/* Errors are values: an impossible allocation and an unsupported shape report LM_ERR_DEVICE /
 * LM_ERR_UNSUPPORTED through the status op, and the backend keeps working afterwards. */
static void test_errors(void) {
    void *p = gpu->ops->alloc(gpu, (size_t)1 << 50);
    CHECK(p == NULL);
    CHECK(gpu->ops->status(gpu) == LM_ERR_DEVICE && strstr(lm_last_error(), "cudaMalloc") != NULL);
    lm_attn_args a = {.T = 1, .n_heads = 1, .n_kv = 1, .head_dim = 1024};
    gpu->ops->attention(gpu, &a);
    CHECK(gpu->ops->status(gpu) == LM_ERR_UNSUPPORTED);
    CHECK(gpu->ops->status(gpu) == LM_OK);
}

int main(void) {
    if (!lm_backend_cuda_available()) {
        printf("test_cuda_ops: SKIP: no CUDA device\n");
        return 77;
    }
    /* the reference is the portable C kernels: the SIMD sets quantize activations for packed
     * weights, which would add their own rounding to the comparison */
    setenv("LMCORE_ISA", "scalar", 1);
    if (lm_backend_cpu_new(2, &cpu) != LM_OK || lm_backend_cuda_new(0, &gpu) != LM_OK) {
        fprintf(stderr, "backends: %s\n", lm_last_error());
        return 1;
    }
    CHECK(cpu->ops->reserve(cpu, 512, 512) == LM_OK);
    test_linear();
    test_linear_gemm();
    test_fused();
    test_norm_matvec();
    check_attention(1, 4, 2, 64, 70, 0, 0, 0);
    /* one token over at most 256 rows: chunks merged inside a cluster (8 chunks of 16-32 rows) */
    check_attention(1, 32, 8, 128, 177, 0, 0, 0);
    check_attention(1, 8, 2, 128, 256, 40, 0, 1);
    check_attention(1, 12, 4, 256, 130, 0, 30.0f, 1);
    check_attention(1, 8, 8, 32, 17, 0, 0, 0);
    check_attention(1, 16, 2, 64, 257, 0, 0, 1); /* past it: the merge kernel */
    check_attention(5, 4, 2, 40, 70, 0, 0, 0);
    check_attention(5, 8, 1, 96, 130, 16, 0, 1);
    check_attention(3, 4, 4, 256, 45, 0, 20.0f, 0);
    check_attention(2, 6, 3, 32, 33, 5, 30.0f, 1);
    /* the split kernel: many chunks (flash-decoding), GQA 4 and 8, and one chunk per block; long
     * chunks (4 rows per 8 lanes) past 256 rows or for more than one token at head_dim 32-128 */
    check_attention(1, 32, 8, 128, 700, 0, 0, 1);
    check_attention(1, 16, 2, 128, 1000, 100, 0, 0);
    check_attention(40, 8, 2, 128, 300, 0, 0, 0);
    check_attention(64, 16, 8, 64, 200, 0, 0, 1);
    check_attention(1, 32, 8, 128, 4100, 0, 0, 1);
    check_attention(1, 28, 4, 128, 3001, 0, 0, 0); /* 7 heads per kv head */
    check_attention(3, 8, 2, 32, 2000, 300, 30.0f, 1);
    check_attention(1, 16, 8, 64, 513, 0, 0, 0);
    check_attention(2, 4, 4, 128, 77, 0, 0, 1);
    check_attention(40, 32, 16, 64, 100, 20, 0, 1); /* one chunk per block (enough blocks) */
    check_attention(1, 8, 8, 256, 1500, 0, 0, 1); /* head_dim 256: the short-chunk loop */
    /* the tensor-core kernel: ragged query tiles, window, softcap, sinks, every head_dim */
    check_attention(100, 8, 2, 128, 300, 50, 0, 0);
    check_attention(70, 4, 2, 16, 90, 0, 30.0f, 1);
    check_attention(65, 6, 3, 32, 65, 0, 0, 0);
    check_attention(130, 4, 1, 64, 130, 7, 0, 1);
    test_small_ops();
    test_moe();
    test_argmax();
    test_sample();
    test_edit_logits();
    test_kv_quant();
    test_errors();
    cpu->ops->destroy(cpu);
    gpu->ops->destroy(gpu);
    return test_done("cuda_ops");
}
