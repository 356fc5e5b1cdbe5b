/* AVX-512 kernel set (F/BW/VL/DQ + FMA + F16C): 16 floats per vector. Weights are read in
 * their stored format and widened in registers; quantized groups are accumulated as
 * sum(q * x) and scaled once per group, the affine bias term as bias * sum(x). */
#include "backend/cpu/cpu_simd.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "core/util.h"
#include "quant/quant.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

/* --- loads ------------------------------------------------------------------------------------- */

TGT static inline __m512 ld_bf16(const uint16_t *p) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}
TGT static inline __m512 ld_bf16_m(const uint16_t *p, __mmask16 m) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}
TGT static inline __m512 ld_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
TGT static inline __m512 ld_f16_m(const uint16_t *p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
/* 16 unsigned bytes as floats */
TGT static inline __m512 u8_ps(__m128i b) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)); }
/* 16 bytes of nibbles (low first) -> bytes of elements 0..15 and 16..31 */
TGT static inline void nibbles(const uint8_t *p, __m128i *e0, __m128i *e1) {
    __m128i b = _mm_loadu_si128((const __m128i *)p), m = _mm_set1_epi8(0x0f);
    __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
    *e0 = _mm_unpacklo_epi8(lo, hi);
    *e1 = _mm_unpackhi_epi8(lo, hi);
}

static inline float e8m0(uint8_t e) {
    uint32_t u = e == 0 ? 0x00400000u : e == 0xff ? 0x7fc00000u : (uint32_t)e << 23;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float sval(const uint8_t *p, lm_dtype dt, int i) {
    if (dt == LM_DT_BF16)
        return lm_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    return lm_scalar_to_f32(p, dt, (size_t)i);
}

/* --- dense dot products -------------------------------------------------------------------------- */

TGT static float dot_f32(const float *a, const float *b, int n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

TGT static float dot_half(const float *x, const uint16_t *w, int n, int bf) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int i = 0;
    if (bf) {
        for (; i + 64 <= n; i += 64) {
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), ld_bf16(w + i), s0);
            s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), ld_bf16(w + i + 16), s1);
            s2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), ld_bf16(w + i + 32), s2);
            s3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), ld_bf16(w + i + 48), s3);
        }
    } else {
        for (; i + 64 <= n; i += 64) {
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), ld_f16(w + i), s0);
            s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), ld_f16(w + i + 16), s1);
            s2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), ld_f16(w + i + 32), s2);
            s3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), ld_f16(w + i + 48), s3);
        }
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 wv = bf ? ld_bf16_m(w + i, m) : ld_f16_m(w + i, m);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), wv, s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* --- quantized rows ------------------------------------------------------------------------------- */

/* sum over one group of q * x (8-bit: group bytes; 4-bit: group/2 bytes) */
TGT static inline __m512 group_q8(const uint8_t *q, const float *x, int group) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (int i = 0; i < group; i += 32) {
        a0 = _mm512_fmadd_ps(u8_ps(_mm_loadu_si128((const __m128i *)(q + i))), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(u8_ps(_mm_loadu_si128((const __m128i *)(q + i + 16))), _mm512_loadu_ps(x + i + 16), a1);
    }
    return _mm512_add_ps(a0, a1);
}
TGT static inline __m512 group_q4(const uint8_t *q, const float *x, int group) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (int i = 0; i < group; i += 32) {
        __m128i e0, e1;
        nibbles(q + i / 2, &e0, &e1);
        a0 = _mm512_fmadd_ps(u8_ps(e0), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(u8_ps(e1), _mm512_loadu_ps(x + i + 16), a1);
    }
    return _mm512_add_ps(a0, a1);
}

TGT static float affine_dot(const lm_linear *w, int r, const float *x, const float *xsum) {
    const uint8_t *row = (const uint8_t *)w->w + (size_t)r * w->w_row_bytes;
    const uint8_t *sc = (const uint8_t *)w->scales + (size_t)r * w->s_row_bytes;
    const uint8_t *bi = (const uint8_t *)w->biases + (size_t)r * w->s_row_bytes;
    int G = w->group, ng = w->in / G, gb = G * w->bits / 8;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    float bsum = 0;
    int g = 0;
    if (w->bits == 8) {
        for (; g + 2 <= ng; g += 2) {
            __m512 q0 = group_q8(row + (size_t)g * gb, x + (size_t)g * G, G);
            __m512 q1 = group_q8(row + (size_t)(g + 1) * gb, x + (size_t)(g + 1) * G, G);
            acc0 = _mm512_fmadd_ps(_mm512_set1_ps(sval(sc, w->dtype, g)), q0, acc0);
            acc1 = _mm512_fmadd_ps(_mm512_set1_ps(sval(sc, w->dtype, g + 1)), q1, acc1);
        }
        for (; g < ng; g++)
            acc0 = _mm512_fmadd_ps(_mm512_set1_ps(sval(sc, w->dtype, g)),
                                   group_q8(row + (size_t)g * gb, x + (size_t)g * G, G), acc0);
    } else {
        for (; g + 2 <= ng; g += 2) {
            __m512 q0 = group_q4(row + (size_t)g * gb, x + (size_t)g * G, G);
            __m512 q1 = group_q4(row + (size_t)(g + 1) * gb, x + (size_t)(g + 1) * G, G);
            acc0 = _mm512_fmadd_ps(_mm512_set1_ps(sval(sc, w->dtype, g)), q0, acc0);
            acc1 = _mm512_fmadd_ps(_mm512_set1_ps(sval(sc, w->dtype, g + 1)), q1, acc1);
        }
        for (; g < ng; g++)
            acc0 = _mm512_fmadd_ps(_mm512_set1_ps(sval(sc, w->dtype, g)),
                                   group_q4(row + (size_t)g * gb, x + (size_t)g * G, G), acc0);
    }
    for (g = 0; g < ng; g++)
        bsum += sval(bi, w->dtype, g) * xsum[g];
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + bsum;
}

TGT static float mxfp4_dot(const lm_linear *w, int r, const float *x) {
    const uint8_t *row = (const uint8_t *)w->w + (size_t)r * w->w_row_bytes;
    const uint8_t *sc = (const uint8_t *)w->scales + (size_t)r * w->s_row_bytes;
    const __m512 lut = _mm512_loadu_ps(LM_E2M1);
    __m512 acc = _mm512_setzero_ps();
    for (int g = 0; g < w->in / 32; g++) {
        __m128i e0, e1;
        nibbles(row + (size_t)g * 16, &e0, &e1);
        __m512 v0 = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(e0), lut);
        __m512 v1 = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(e1), lut);
        __m512 q = _mm512_fmadd_ps(v1, _mm512_loadu_ps(x + g * 32 + 16), _mm512_mul_ps(v0, _mm512_loadu_ps(x + g * 32)));
        acc = _mm512_fmadd_ps(_mm512_set1_ps(e8m0(sc[g])), q, acc);
    }
    return _mm512_reduce_add_ps(acc);
}

static int fast_affine(const lm_linear *w) {
    return w->kind == LM_W_AFFINE && (w->bits == 8 || w->bits == 4) && w->group % 32 == 0 && w->in % w->group == 0;
}

static int avx512_matvec_ok(const lm_linear *w) {
    if (w->kind == LM_W_DENSE)
        return w->in_step <= 1;
    if (w->kind == LM_W_MXFP4)
        return w->in % 32 == 0;
    return fast_affine(w);
}

TGT static void avx512_matvec(const lm_linear *w, const float *x, const float *xsum, int r0, int r1, float *y) {
    for (int r = r0; r < r1; r++) {
        const void *row = (const uint8_t *)w->w + (size_t)r * w->w_row_bytes;
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

/* --- row conversion -------------------------------------------------------------------------------- */

TGT static void avx512_row_f32(const lm_linear *w, int r, float *out) {
    const uint8_t *row = (const uint8_t *)w->w + (size_t)r * w->w_row_bytes;
    int n = w->in;
    if (w->kind == LM_W_DENSE && w->in_step <= 1 && w->dtype != LM_DT_F32) {
        const uint16_t *p = (const uint16_t *)row;
        int bf = w->dtype == LM_DT_BF16, i = 0;
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(out + i, bf ? ld_bf16(p + i) : ld_f16(p + i));
        if (i < n) {
            __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
            _mm512_mask_storeu_ps(out + i, m, bf ? ld_bf16_m(p + i, m) : ld_f16_m(p + i, m));
        }
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
        __m512 s = _mm512_set1_ps(sval(sc, w->dtype, g)), b = _mm512_set1_ps(sval(bi, w->dtype, g));
        for (int i = g * G; i < (g + 1) * G; i += 32) {
            __m128i e0, e1;
            if (w->bits == 8) {
                e0 = _mm_loadu_si128((const __m128i *)(row + i));
                e1 = _mm_loadu_si128((const __m128i *)(row + i + 16));
            } else {
                nibbles(row + i / 2, &e0, &e1);
            }
            _mm512_storeu_ps(out + i, _mm512_fmadd_ps(u8_ps(e0), s, b));
            _mm512_storeu_ps(out + i + 16, _mm512_fmadd_ps(u8_ps(e1), s, b));
        }
    }
}

/* --- GEMM: 4 tokens x 4 rows per tile, reduced along n ------------------------------------------- */

TGT static void tile4x4(const float *x, int ldx, int nt, const float *wf, int nr, int n, float *y, int ldy) {
    const float *xp[4], *wp[4];
    for (int i = 0; i < 4; i++) {
        xp[i] = x + (size_t)(i < nt ? i : 0) * ldx;
        wp[i] = wf + (size_t)(i < nr ? i : 0) * n;
    }
    __m512 c[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            c[i][j] = _mm512_setzero_ps();
    for (int k = 0; k < n; k += 16) {
        __mmask16 m = n - k >= 16 ? 0xffff : (__mmask16)((1u << (n - k)) - 1);
        __m512 w0 = _mm512_maskz_loadu_ps(m, wp[0] + k), w1 = _mm512_maskz_loadu_ps(m, wp[1] + k);
        __m512 w2 = _mm512_maskz_loadu_ps(m, wp[2] + k), w3 = _mm512_maskz_loadu_ps(m, wp[3] + k);
        for (int i = 0; i < 4; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, xp[i] + k);
            c[i][0] = _mm512_fmadd_ps(xv, w0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(xv, w1, c[i][1]);
            c[i][2] = _mm512_fmadd_ps(xv, w2, c[i][2]);
            c[i][3] = _mm512_fmadd_ps(xv, w3, c[i][3]);
        }
    }
    for (int i = 0; i < nt; i++)
        for (int j = 0; j < nr; j++)
            y[(size_t)i * ldy + j] = _mm512_reduce_add_ps(c[i][j]);
}

TGT static void avx512_gemm(const float *x, int ldx, int T, const float *wf, int R, int n, float *y, int ldy) {
    for (int t = 0; t < T; t += 4)
        for (int r = 0; r < R; r += 4)
            tile4x4(x + (size_t)t * ldx, ldx, T - t < 4 ? T - t : 4, wf + (size_t)r * n, R - r < 4 ? R - r : 4, n,
                    y + (size_t)t * ldy + r, ldy);
}

TGT static void avx512_axpy(float *y, float a, const float *x, int n) {
    __m512 av = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

static const lm_cpu_kernels AVX512 = {
    .isa = LM_ISA_AVX512,
    .name = "avx512",
    .matvec_ok = avx512_matvec_ok,
    .matvec = avx512_matvec,
    .row_f32 = avx512_row_f32,
    .gemm = avx512_gemm,
    .dot = dot_f32,
    .axpy = avx512_axpy,
};

const lm_cpu_kernels *lm_cpu_kernels_avx512(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma"))
        return &AVX512;
    return NULL;
}

#else
const lm_cpu_kernels *lm_cpu_kernels_avx512(void) { return NULL; }
#endif
