/* AVX2 kernel set (AVX2 + FMA + F16C): 8 floats per vector. Same structure as the AVX-512
 * set: weights widened in registers, quantized groups scaled once, bias term via sum(x). */
#include "backend/cpu/cpu_simd.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "core/util.h"
#include "quant/quant.h"

#define TGT __attribute__((target("avx2,fma,f16c")))

TGT static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
TGT static inline __m256 ld_bf16(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
TGT static inline __m256 ld_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
/* 8 unsigned bytes (low half of b) as floats */
TGT static inline __m256 u8_ps(__m128i b) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)); }
TGT static inline void nibbles(const uint8_t *p, __m128i *e0, __m128i *e1) {
    __m128i b = _mm_loadu_si128((const __m128i *)p), m = _mm_set1_epi8(0x0f);
    __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
    *e0 = _mm_unpacklo_epi8(lo, hi);
    *e1 = _mm_unpackhi_epi8(lo, hi);
}

TGT static float dot_f32(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    float s = hsum(_mm256_add_ps(s0, s1));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

TGT static float dot_half(const float *x, const uint16_t *w, int n, int bf) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), bf ? ld_bf16(w + i) : ld_f16(w + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), bf ? ld_bf16(w + i + 8) : ld_f16(w + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), bf ? ld_bf16(w + i + 16) : ld_f16(w + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), bf ? ld_bf16(w + i + 24) : ld_f16(w + i + 24), s3);
    }
    float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++)
        s += x[i] * (bf ? lm_bf16_to_f32(w[i]) : lm_f16_to_f32(w[i]));
    return s;
}

/* sum over 32 elements of q * x, given their bytes as two 16-byte halves */
TGT static inline __m256 q32(__m128i e0, __m128i e1, const float *x) {
    __m256 a = _mm256_mul_ps(u8_ps(e0), _mm256_loadu_ps(x));
    a = _mm256_fmadd_ps(u8_ps(_mm_unpackhi_epi64(e0, e0)), _mm256_loadu_ps(x + 8), a);
    a = _mm256_fmadd_ps(u8_ps(e1), _mm256_loadu_ps(x + 16), a);
    return _mm256_fmadd_ps(u8_ps(_mm_unpackhi_epi64(e1, e1)), _mm256_loadu_ps(x + 24), a);
}
TGT static inline void bytes32(const uint8_t *row, int bits, int i, __m128i *e0, __m128i *e1) {
    if (bits == 8) {
        *e0 = _mm_loadu_si128((const __m128i *)(row + i));
        *e1 = _mm_loadu_si128((const __m128i *)(row + i + 16));
    } else {
        nibbles(row + i / 2, e0, e1);
    }
}

TGT static float affine_dot(const lm_linear *w, int r, const float *x, const float *xsum) {
    const uint8_t *row = (const uint8_t *)w->w + (size_t)r * w->w_row_bytes;
    const uint8_t *sc = (const uint8_t *)w->scales + (size_t)r * w->s_row_bytes;
    const uint8_t *bi = (const uint8_t *)w->biases + (size_t)r * w->s_row_bytes;
    int G = w->group, ng = w->in / G;
    __m256 acc = _mm256_setzero_ps();
    float bsum = 0;
    for (int g = 0; g < ng; g++) {
        __m256 q = _mm256_setzero_ps();
        for (int i = g * G; i < (g + 1) * G; i += 32) {
            __m128i e0, e1;
            bytes32(row, w->bits, i, &e0, &e1);
            q = _mm256_add_ps(q, q32(e0, e1, x + i));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(lm_scale_f32(sc, w->dtype, g)), q, acc);
        bsum += lm_scale_f32(bi, w->dtype, g) * xsum[g];
    }
    return hsum(acc) + bsum;
}

TGT static float mxfp4_dot(const lm_linear *w, int r, const float *x) {
    const uint8_t *row = (const uint8_t *)w->w + (size_t)r * w->w_row_bytes;
    const uint8_t *sc = (const uint8_t *)w->scales + (size_t)r * w->s_row_bytes;
    const __m256 lo = _mm256_loadu_ps(LM_E2M1), hi = _mm256_loadu_ps(LM_E2M1 + 8);
    __m256 acc = _mm256_setzero_ps();
    for (int g = 0; g < w->in / 32; g++) {
        __m128i e[2];
        nibbles(row + (size_t)g * 16, &e[0], &e[1]);
        __m256 q = _mm256_setzero_ps();
        for (int h = 0; h < 4; h++) {
            __m128i b = h & 1 ? _mm_unpackhi_epi64(e[h / 2], e[h / 2]) : e[h / 2];
            __m256i idx = _mm256_cvtepu8_epi32(b);
            __m256 v0 = _mm256_permutevar8x32_ps(lo, idx), v1 = _mm256_permutevar8x32_ps(hi, idx);
            __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)); /* bit 3 -> sign bit */
            q = _mm256_fmadd_ps(_mm256_blendv_ps(v0, v1, sel), _mm256_loadu_ps(x + g * 32 + h * 8), q);
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(lm_e8m0_to_f32(sc[g])), q, acc);
    }
    return hsum(acc);
}

static int fast_affine(const lm_linear *w) {
    return w->kind == LM_W_AFFINE && (w->bits == 8 || w->bits == 4) && w->group % 32 == 0 && w->in % w->group == 0;
}

static int avx2_matvec_ok(const lm_linear *w) {
    if (w->kind == LM_W_DENSE)
        return w->in_step <= 1;
    if (w->kind == LM_W_MXFP4)
        return w->in % 32 == 0;
    return fast_affine(w);
}

TGT static void avx2_matvec(const lm_linear *w, const lm_xvec *xv, int r0, int r1, float *y) {
    const float *x = xv->x, *xsum = xv->sum;
    for (int r = r0; r < r1; r++) {
        const void *row = (const uint8_t *)w->w + (size_t)r * w->w_row_bytes;
        _mm_prefetch((const char *)row + LM_PAGE_AHEAD, _MM_HINT_T0); /* the page walk ahead */
        float v;
        if (w->kind == LM_W_AFFINE)
            v = affine_dot(w, r, x, xsum);
        else if (w->kind == LM_W_MXFP4)
            v = mxfp4_dot(w, r, x);
        else if (w->dtype == LM_DT_F32)
            v = dot_f32(x, row, w->in);
        else
            v = dot_half(x, row, w->in, w->dtype == LM_DT_BF16);
        y[r - r0] = v;
    }
}

TGT static void avx2_row_f32(const lm_linear *w, int r, float *out) {
    const uint8_t *row = (const uint8_t *)w->w + (size_t)r * w->w_row_bytes;
    int n = w->in;
    if (w->kind == LM_W_DENSE && w->in_step <= 1 && w->dtype != LM_DT_F32) {
        const uint16_t *p = (const uint16_t *)row;
        int bf = w->dtype == LM_DT_BF16, i = 0;
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(out + i, bf ? ld_bf16(p + i) : ld_f16(p + i));
        for (; i < n; i++)
            out[i] = bf ? lm_bf16_to_f32(p[i]) : lm_f16_to_f32(p[i]);
        return;
    }
    if (!fast_affine(w)) {
        lm_linear_row_f32(w, r, out);
        return;
    }
    const uint8_t *sc = (const uint8_t *)w->scales + (size_t)r * w->s_row_bytes;
    const uint8_t *bi = (const uint8_t *)w->biases + (size_t)r * w->s_row_bytes;
    int G = w->group;
    for (int g = 0; g < n / G; g++) {
        __m256 s = _mm256_set1_ps(lm_scale_f32(sc, w->dtype, g)), b = _mm256_set1_ps(lm_scale_f32(bi, w->dtype, g));
        for (int i = g * G; i < (g + 1) * G; i += 32) {
            __m128i e0, e1;
            bytes32(row, w->bits, i, &e0, &e1);
            _mm256_storeu_ps(out + i, _mm256_fmadd_ps(u8_ps(e0), s, b));
            _mm256_storeu_ps(out + i + 8, _mm256_fmadd_ps(u8_ps(_mm_unpackhi_epi64(e0, e0)), s, b));
            _mm256_storeu_ps(out + i + 16, _mm256_fmadd_ps(u8_ps(e1), s, b));
            _mm256_storeu_ps(out + i + 24, _mm256_fmadd_ps(u8_ps(_mm_unpackhi_epi64(e1, e1)), s, b));
        }
    }
}

/* 4 tokens x 3 rows per tile: 12 accumulators + 3 weight vectors + 1 input vector */
TGT static void tile4x3(const float *x, int ldx, int nt, const float *wf, int nr, int n, float *y, int ldy) {
    const float *xp[4], *wp[3];
    for (int i = 0; i < 4; i++)
        xp[i] = x + (size_t)(i < nt ? i : 0) * ldx;
    for (int j = 0; j < 3; j++)
        wp[j] = wf + (size_t)(j < nr ? j : 0) * n;
    __m256 c[4][3];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++)
            c[i][j] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 w0 = _mm256_loadu_ps(wp[0] + k), w1 = _mm256_loadu_ps(wp[1] + k), w2 = _mm256_loadu_ps(wp[2] + k);
        for (int i = 0; i < 4; i++) {
            __m256 xv = _mm256_loadu_ps(xp[i] + k);
            c[i][0] = _mm256_fmadd_ps(xv, w0, c[i][0]);
            c[i][1] = _mm256_fmadd_ps(xv, w1, c[i][1]);
            c[i][2] = _mm256_fmadd_ps(xv, w2, c[i][2]);
        }
    }
    for (int i = 0; i < nt; i++)
        for (int j = 0; j < nr; j++) {
            float s = hsum(c[i][j]);
            for (int kk = k; kk < n; kk++)
                s += xp[i][kk] * wp[j][kk];
            y[(size_t)i * ldy + j] = s;
        }
}

TGT static void avx2_gemm(const float *x, int ldx, int T, const float *wf, int R, int n, float *y, int ldy) {
    for (int t = 0; t < T; t += 4)
        for (int r = 0; r < R; r += 3)
            tile4x3(x + (size_t)t * ldx, ldx, T - t < 4 ? T - t : 4, wf + (size_t)r * n, R - r < 3 ? R - r : 3, n,
                    y + (size_t)t * ldy + r, ldy);
}

TGT static void avx2_axpy(float *y, float a, const float *x, int n) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * x[i];
}

static void avx2_gemm_rows(const lm_linear *w, const lm_xmat *x, int r0, int nr, float *y, int ldy, float *scratch);

/* y[i] += a * x[i], x f16 */
TGT static void axpy_f16(float *y, float a, const uint16_t *x, int n) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, ld_f16(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * lm_f16_to_f32(x[i]);
}

/* attention over cache rows: the portable loops on this set's dot and axpy */
TGT static void avx2_attn_scores(const lm_attn_rows *a, const float *q, float scale, float *s, size_t lds) {
    int per = a->nh / a->nkv;
    for (int h = 0; h < a->nh; h++)
        for (int r = 0; r < a->n; r++) {
            const void *k = lm_kv_at(a->k, r * a->stride + (size_t)(h / per) * a->hd, a->f16);
            const float *qh = q + (size_t)h * a->hd;
            s[h * lds + r] = scale * (a->f16 ? dot_half(qh, k, a->hd, 0) : dot_f32(qh, k, a->hd));
        }
}

TGT static void avx2_attn_values(const lm_attn_rows *a, const float *p, size_t lds, float *out) {
    int per = a->nh / a->nkv;
    for (int h = 0; h < a->nh; h++)
        for (int r = 0; r < a->n; r++) {
            const void *v = lm_kv_at(a->v, r * a->stride + (size_t)(h / per) * a->hd, a->f16);
            if (a->f16)
                axpy_f16(out + (size_t)h * a->hd, p[h * lds + r], v, a->hd);
            else
                avx2_axpy(out + (size_t)h * a->hd, p[h * lds + r], v, a->hd);
        }
}

static int natural_layout(const lm_linear *w) { return LM_XL_NATURAL; }

static const lm_cpu_kernels AVX2 = {
    .isa = LM_ISA_AVX2,
    .name = "avx2",
    .matvec_ok = avx2_matvec_ok,
    .matvec = avx2_matvec,
    .quant_x = NULL,
    .x_layout = natural_layout,
    .row_f32 = avx2_row_f32,
    .gemm = avx2_gemm,
    .prep_xmat = NULL,
    .gemm_rows = avx2_gemm_rows,
    .dot = dot_f32,
    .exp_sum = lm_exp_sum_ref,
    .silu_mul = lm_silu_mul_ref,
    .axpy = avx2_axpy,
    .attn_scores = avx2_attn_scores,
    .attn_values = avx2_attn_values,
};

static void avx2_gemm_rows(const lm_linear *w, const lm_xmat *x, int r0, int nr, float *y, int ldy, float *scratch) {
    lm_gemm_rows_f32(&AVX2, w, x, r0, nr, y, ldy, scratch);
}

const lm_cpu_kernels *lm_cpu_kernels_avx2(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return &AVX2;
    return NULL;
}

#else
static void avx2_gemm_rows(const lm_linear *w, const lm_xmat *x, int r0, int nr, float *y, int ldy, float *scratch) {
    lm_gemm_rows_f32(&AVX2, w, x, r0, nr, y, ldy, scratch);
}

const lm_cpu_kernels *lm_cpu_kernels_avx2(void) { return NULL; }
#endif
