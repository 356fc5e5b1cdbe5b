/* AVX-512 kernel set (F/BW/VL/DQ/VNNI/VBMI + FMA + F16C): 16 floats per vector. Dense weights
 * are widened to f32 in registers. Packed weights (MLX affine 2-8 bit, MXFP4) are unpacked to
 * byte codes by a byte gather + multishift (any width), and for decode multiplied with int16
 * activations (vpdpwssd; the input is quantized per group with 15-bit precision), scaled once
 * per group; the affine bias term is bias * sum(x). */
#include "backend/cpu/cpu_simd.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "core/util.h"
#include "quant/quant.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,avx2,fma,f16c")))

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

#define MAXG 512 /* groups per row the packed matvec handles (in <= 16384 for group 32) */

/* --- packed codes ------------------------------------------------------------------------------- */

/* Constants of the bit unpacker for one width: 64-bit lane i gathers the bytes holding codes
 * 8i..8i+7 (they start at byte i*bits), then each byte k of the lane takes bits k*bits.. */
typedef struct unpacker {
    __m512i perm, shifts, mask;
    int bits;
} unpacker;

TGT static unpacker unpacker_new(int bits) {
    uint8_t perm[64], sh[64];
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++) {
            perm[i * 8 + j] = (uint8_t)(i * bits + j < 64 ? i * bits + j : 63);
            sh[i * 8 + j] = (uint8_t)(j * bits);
        }
    unpacker u = {_mm512_loadu_si512(perm), _mm512_loadu_si512(sh), _mm512_set1_epi8((char)((1 << bits) - 1)), bits};
    return u;
}

/* n (32 or 64) codes starting at code 0 of p, as bytes in order */
TGT static inline __m512i unpack(const unpacker *u, const uint8_t *p, int n) {
    __mmask64 m = n * u->bits >= 512 ? ~0ull : (1ull << (n * u->bits / 8)) - 1;
    __m512i v = _mm512_maskz_loadu_epi8(m, p);
    if (u->bits == 8)
        return v;
    v = _mm512_permutexvar_epi8(u->perm, v);
    return _mm512_and_si512(_mm512_multishift_epi64_epi8(u->shifts, v), u->mask);
}


/* 16 scales/biases (f32, f16 or bf16) of groups g.. as floats; lanes outside m are 0 */
TGT static inline __m512 ld_sc(const uint8_t *p, lm_dtype dt, int g, __mmask16 m) {
    if (dt == LM_DT_F32)
        return _mm512_maskz_loadu_ps(m, (const float *)p + g);
    if (dt == LM_DT_F16)
        return ld_f16_m((const uint16_t *)p + g, m);
    return ld_bf16_m((const uint16_t *)p + g, m);
}

/* 4-bit affine rows: 64 codes = 32 bytes, widened to int16 and split into low nibbles (even
 * codes) and high nibbles (odd codes); the input is in LM_XL_NIBBLES order to match. With
 * group 32, lanes 0..7 of a chunk's sums belong to one group and lanes 8..15 to the next. */
TGT static inline __attribute__((always_inline)) void q4_loop(const lm_linear *w, const uint8_t *const *row, const int nr,
                                                              const lm_xvec *x, float (*cs)[MAXG], __m512 *acc) {
    const int G = w->group, n = w->in, cpg = G / 64; /* 64-code chunks per group; 0: group 32 */
    const __m512i lo = _mm512_set1_epi16(0x0f);
    const uint8_t *p[4];
    __m512i gi[4];
    for (int j = 0; j < nr; j++) {
        p[j] = row[j];
        gi[j] = _mm512_setzero_si512();
    }
    int cleft = cpg, g = 0;
    for (int i = 0; i < n; i += 64) {
        int full = n - i >= 64;
        __m512i xe, xo;
        if (full) {
            xe = _mm512_loadu_si512(x->q + i);
            xo = _mm512_loadu_si512(x->q + i + 32);
        } else { /* 32 codes: 16 even then 16 odd inputs */
            xe = _mm512_maskz_loadu_epi16(0xffff, x->q + i);
            xo = _mm512_maskz_loadu_epi16(0xffff, x->q + i + 16);
        }
        for (int j = 0; j < nr; j++) {
            _mm_prefetch((const char *)(p[j] + LM_LINE_AHEAD), _MM_HINT_T1);
            __m512i b = _mm512_cvtepu8_epi16(full ? _mm256_loadu_si256((const __m256i *)p[j])
                                                  : _mm256_maskz_loadu_epi8(0xffff, p[j]));
            p[j] += 32;
            gi[j] = _mm512_dpwssd_epi32(gi[j], _mm512_and_si512(b, lo), xe);
            gi[j] = _mm512_dpwssd_epi32(gi[j], _mm512_srli_epi16(b, 4), xo);
        }
        if (cpg == 0 || --cleft == 0) {
            for (int j = 0; j < nr; j++) {
                __m512 sv = _mm512_set1_ps(cs[j][g]);
                if (cpg == 0)
                    sv = _mm512_insertf32x8(sv, _mm256_set1_ps(full ? cs[j][g + 1] : 0.0f), 1);
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(gi[j]), sv, acc[j]);
                gi[j] = _mm512_setzero_si512();
            }
            g += cpg == 0 ? 2 : 1;
            cleft = cpg;
        }
    }
}

/* 64 4-bit codes (32 bytes at p) against 64 int16 inputs in LM_XL_NIBBLES order, into s */
TGT static inline __attribute__((always_inline)) __m512i q4_chunk(__m512i s, const uint8_t *p, const int16_t *xq) {
    const __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)p));
    s = _mm512_dpwssd_epi32(s, _mm512_and_si512(b, _mm512_set1_epi16(0x0f)), _mm512_loadu_si512(xq));
    return _mm512_dpwssd_epi32(s, _mm512_srli_epi16(b, 4), _mm512_loadu_si512(xq + 32));
}

/* 4-bit affine rows r0..r1 whose groups are whole 64-code chunks (group 64, 128, ...), one row
 * after the other (one sequential stream). Per row, the scales of all groups times the input
 * scales first, through whole-vector stores (a masked store read back by the broadcasts waits
 * until it retires), the bias and centring terms kept in a vector that joins the products in
 * the row's one horizontal sum; then the products as q4_loop without its tail cases, four
 * groups per iteration into four accumulators. Measured on Zen 4 (one core, in cache) against
 * the loop of two groups per iteration with the scales set up by masked stores: rows of 1024
 * 17.5 -> 20.7 GB/s, 2048 20.0 -> 21.7, 3072 21.2 -> 22.8; Qwen3-0.6B q4 linear time 0.91-0.96
 * on top of contiguous row ranges per thread (A/B in one process, bench/README.md). */
TGT static inline __attribute__((always_inline)) void q4_rows(const lm_linear *w, const lm_xvec *x, int r0, int r1,
                                                              float *y, const int CPG) {
    const int cpg = CPG ? CPG : w->group / 64, ng = w->in / w->group;
    const size_t wb = w->w_row_bytes, sb = w->s_row_bytes;
    for (int r = r0; r < r1; r++) {
        const uint8_t *p = (const uint8_t *)w->w + (size_t)r * wb;
        const uint8_t *sc = (const uint8_t *)w->scales + (size_t)r * sb;
        const uint8_t *bi = (const uint8_t *)w->biases + (size_t)r * sb;
        _mm_prefetch((const char *)(p + LM_PAGE_AHEAD), _MM_HINT_T0); /* the page walk ahead */
        for (size_t o = 0; o < sb; o += 64) { /* scales and biases two rows ahead in the stream */
            _mm_prefetch((const char *)(sc + 2 * sb + o), _MM_HINT_T0);
            _mm_prefetch((const char *)(bi + 2 * sb + o), _MM_HINT_T0);
        }
        /* per group: its scale times the input scale, whole-vector stores (zeros past ng) */
        float cs[MAXG + 16] __attribute__((aligned(64)));
        __m512 ab = _mm512_setzero_ps();
        for (int g = 0; g < ng; g += 16) {
            const __mmask16 m = ng - g >= 16 ? 0xffff : (__mmask16)((1u << (ng - g)) - 1);
            const __m512 sg = ld_sc(sc, w->dtype, g, m);
            _mm512_store_ps(cs + g, _mm512_mul_ps(sg, _mm512_maskz_loadu_ps(m, x->d + g)));
            /* bias * sum(x), and the codes' centre 8 times the rounding left in the input */
            ab = _mm512_fmadd_ps(ld_sc(bi, w->dtype, g, m), _mm512_maskz_loadu_ps(m, x->sum + g), ab);
            ab = _mm512_fmadd_ps(_mm512_mul_ps(sg, _mm512_set1_ps(8.0f)), _mm512_maskz_loadu_ps(m, x->corr + g), ab);
        }
        const int16_t *xq = x->q;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int g = 0;
        for (; g + 4 <= ng; g += 4) { /* group g + k: chunks k*cpg .. k*cpg + cpg-1 */
            __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
            for (int c = 0; c < cpg; c++) {
                _mm_prefetch((const char *)(p + 128 * c + LM_LINE_AHEAD), _MM_HINT_T1);
                _mm_prefetch((const char *)(p + 128 * c + 64 + LM_LINE_AHEAD), _MM_HINT_T1);
                s0 = q4_chunk(s0, p + 32 * c, xq + 64 * c);
                s1 = q4_chunk(s1, p + 32 * (cpg + c), xq + 64 * (cpg + c));
                s2 = q4_chunk(s2, p + 32 * (2 * cpg + c), xq + 64 * (2 * cpg + c));
                s3 = q4_chunk(s3, p + 32 * (3 * cpg + c), xq + 64 * (3 * cpg + c));
            }
            p += 128 * cpg;
            xq += 256 * cpg;
            a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_set1_ps(cs[g]), a0);
            a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_set1_ps(cs[g + 1]), a1);
            a2 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s2), _mm512_set1_ps(cs[g + 2]), a2);
            a3 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s3), _mm512_set1_ps(cs[g + 3]), a3);
        }
        for (; g < ng; g++) {
            __m512i s0 = _mm512_setzero_si512();
            for (int c = 0; c < cpg; c++, p += 32, xq += 64) {
                _mm_prefetch((const char *)(p + LM_LINE_AHEAD), _MM_HINT_T1);
                s0 = q4_chunk(s0, p, xq);
            }
            a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_set1_ps(cs[g]), a0);
        }
        const __m512 a = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
        y[r - r0] = _mm512_reduce_add_ps(_mm512_add_ps(a, ab));
    }
}

/* Affine rows of any width but 4 against the input in LM_XL_BYTES order: per 64 codes (bytes,
 * straight from memory when 8-bit, else unpacked) two vpdpbusd, unsigned codes times the signed
 * high and low bytes of the input; per group acc += (256 hi + lo) * scale. Group 32: lanes
 * 0..7 of a 64-code chunk belong to one group and 8..15 to the next. Written without branches
 * in the inner loop (the 32-code tail of group 32 comes last). */
TGT static inline __attribute__((always_inline)) __m512i codes64(const unpacker *u, const uint8_t *p, const int b8,
                                                                 int n) {
    if (b8)
        return n == 64 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(0xffffffffull, p);
    return unpack(u, p, n);
}

TGT static inline __attribute__((always_inline)) void bytes_loop(const lm_linear *w, const unpacker *u,
                                                                 const uint8_t *const *row, const int nr,
                                                                 const lm_xvec *x, float (*cs)[MAXG], __m512 *acc,
                                                                 const int b8) {
    const int G = w->group, n = w->in, cpg = G >= 64 ? G / 64 : 1, nfull = n / 64 * 64, bits = u->bits;
    const int8_t *xb = (const int8_t *)x->q;
    int i = 0, g = 0;
    while (i < nfull) {
        __m512i gh[4], gl[4];
        for (int j = 0; j < nr; j++)
            gh[j] = gl[j] = _mm512_setzero_si512();
        for (int c = 0; c < cpg; c++, i += 64) {
            const __m512i xh = _mm512_loadu_si512(xb + 2 * i), xl = _mm512_loadu_si512(xb + 2 * i + 64);
            for (int j = 0; j < nr; j++) {
                const uint8_t *p = row[j] + (size_t)i * bits / 8;
                _mm_prefetch((const char *)(p + LM_LINE_AHEAD), _MM_HINT_T1);
                __m512i cv = codes64(u, p, b8, 64);
                gh[j] = _mm512_dpbusd_epi32(gh[j], cv, xh);
                gl[j] = _mm512_dpbusd_epi32(gl[j], cv, xl);
            }
        }
        for (int j = 0; j < nr; j++) {
            __m512 sv = _mm512_set1_ps(cs[j][g]);
            if (G == 32)
                sv = _mm512_insertf32x8(sv, _mm256_set1_ps(cs[j][g + 1]), 1);
            __m512i t = _mm512_add_epi32(_mm512_slli_epi32(gh[j], 8), gl[j]);
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), sv, acc[j]);
        }
        g += G == 32 ? 2 : 1;
    }
    if (i < n) { /* group 32: the last 32 codes; the input is 32 h bytes, 32 l bytes */
        const __m512i xh = _mm512_maskz_loadu_epi8(0xffffffffull, xb + 2 * i);
        const __m512i xl = _mm512_maskz_loadu_epi8(0xffffffffull, xb + 2 * i + 32);
        for (int j = 0; j < nr; j++) {
            __m512i cv = codes64(u, row[j] + (size_t)i * bits / 8, b8, 32);
            __m512i t = _mm512_add_epi32(_mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), cv, xh), 8),
                                         _mm512_dpbusd_epi32(_mm512_setzero_si512(), cv, xl));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_set1_ps(cs[j][g]), acc[j]);
        }
    }
}

/* One row whose groups are whole 64-code chunks (8-bit: b8; or unpacked widths): the products
 * of bytes_loop, two groups per iteration into two accumulators (Qwen3-0.6B q8
 * decode steps 8% faster; Llama-3.2-1B q8 unchanged, its stream is the limit). */
TGT static inline __attribute__((always_inline)) __m512 bytes_row(const lm_linear *w, const unpacker *u,
                                                                  const uint8_t *row, const lm_xvec *x, const float *cs,
                                                                  const int b8, const int CPG) {
    const int cpg = CPG ? CPG : w->group / 64, ng = w->in / w->group, bits = u->bits, cb = 8 * bits; /* bytes/chunk */
    const int8_t *xb = (const int8_t *)x->q;
    const uint8_t *p = row;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int g = 0;
    for (; g + 2 <= ng; g += 2) {
        __m512i h0 = _mm512_setzero_si512(), l0 = h0, h1 = h0, l1 = h0;
        for (int c = 0; c < cpg; c++) {
            const uint8_t *p0 = p + c * cb, *p1 = p + (cpg + c) * cb;
            const int8_t *x0 = xb + 128 * c, *x1 = xb + 128 * (cpg + c);
            _mm_prefetch((const char *)(p0 + LM_LINE_AHEAD), _MM_HINT_T1);
            _mm_prefetch((const char *)(p1 + LM_LINE_AHEAD), _MM_HINT_T1);
            __m512i c0 = codes64(u, p0, b8, 64), c1 = codes64(u, p1, b8, 64);
            h0 = _mm512_dpbusd_epi32(h0, c0, _mm512_loadu_si512(x0));
            l0 = _mm512_dpbusd_epi32(l0, c0, _mm512_loadu_si512(x0 + 64));
            h1 = _mm512_dpbusd_epi32(h1, c1, _mm512_loadu_si512(x1));
            l1 = _mm512_dpbusd_epi32(l1, c1, _mm512_loadu_si512(x1 + 64));
        }
        p += 2 * cpg * cb;
        xb += 256 * cpg;
        a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_slli_epi32(h0, 8), l0)), _mm512_set1_ps(cs[g]), a0);
        a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_slli_epi32(h1, 8), l1)), _mm512_set1_ps(cs[g + 1]),
                             a1);
    }
    if (g < ng) {
        __m512i h0 = _mm512_setzero_si512(), l0 = h0;
        for (int c = 0; c < cpg; c++, p += cb, xb += 128) {
            _mm_prefetch((const char *)(p + LM_LINE_AHEAD), _MM_HINT_T1);
            __m512i c0 = codes64(u, p, b8, 64);
            h0 = _mm512_dpbusd_epi32(h0, c0, _mm512_loadu_si512(xb));
            l0 = _mm512_dpbusd_epi32(l0, c0, _mm512_loadu_si512(xb + 64));
        }
        a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_slli_epi32(h0, 8), l0)), _mm512_set1_ps(cs[g]), a0);
    }
    return _mm512_add_ps(a0, a1);
}

/* Up to 4 packed rows at once (the int16 input loaded once for all of them); decode calls it
 * with one row (see avx512_matvec). cs: per row and group, the weight scale times the input
 * scale. */

TGT static inline __attribute__((always_inline)) void packed_rows(const lm_linear *w, const unpacker *u, int r, int rs,
                                                                  const int nr, const lm_xvec *x, float *y) {
    static const int8_t E2M1_X2[64] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    const __m512i lut = _mm512_loadu_si512(E2M1_X2);
    int mx = w->kind == LM_W_MXFP4, G = mx ? 32 : w->group, n = w->in, ng = n / G, bits = u->bits;
    float center = (float)(1 << (bits - 1));
    float cs[4][MAXG];
    const uint8_t *row[4];
    __m512 acc[4];
    __m512i gi[4];
    for (int j = 0; j < nr; j++) {
        const uint8_t *sc = (const uint8_t *)w->scales + (size_t)(r + j * rs) * w->s_row_bytes;
        row[j] = (const uint8_t *)w->w + (size_t)(r + j * rs) * w->w_row_bytes;
        _mm_prefetch((const char *)(row[j] + LM_PAGE_AHEAD), _MM_HINT_T0); /* the page walk ahead */
        for (size_t o = 0; o < w->s_row_bytes; o += 64) { /* scales and biases two rows ahead in the stream */
            _mm_prefetch((const char *)(sc + 2 * w->s_row_bytes + o), _MM_HINT_T0);
            if (!mx)
                _mm_prefetch((const char *)w->biases + (size_t)(r + j * rs + 2) * w->s_row_bytes + o, _MM_HINT_T0);
        }
        __m512 bs = _mm512_setzero_ps();
        for (int g = 0; g < ng; g += 16) {
            __mmask16 m = ng - g >= 16 ? 0xffff : (__mmask16)((1u << (ng - g)) - 1);
            __m512 d = _mm512_maskz_loadu_ps(m, x->d + g);
            if (mx) {
                __m512i e = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, sc + g)); /* 2^(e-127) / 2 */
                __m512 f = _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
                f = _mm512_mask_blend_ps(_mm512_cmpeq_epi32_mask(e, _mm512_setzero_si512()), f,
                                         _mm512_castsi512_ps(_mm512_set1_epi32(0x00400000)));
                _mm512_mask_storeu_ps(cs[j] + g, m, _mm512_mul_ps(_mm512_mul_ps(f, _mm512_set1_ps(0.5f)), d));
            } else {
                const uint8_t *bi = (const uint8_t *)w->biases + (size_t)(r + j * rs) * w->s_row_bytes;
                __m512 sg = ld_sc(sc, w->dtype, g, m);
                _mm512_mask_storeu_ps(cs[j] + g, m, _mm512_mul_ps(sg, d));
                bs = _mm512_fmadd_ps(ld_sc(bi, w->dtype, g, m), _mm512_maskz_loadu_ps(m, x->sum + g), bs);
                /* codes centred at 2^(bits-1): adds s * c * (sum x - d sum q) */
                bs = _mm512_fmadd_ps(_mm512_mul_ps(sg, _mm512_set1_ps(center)), _mm512_maskz_loadu_ps(m, x->corr + g), bs);
            }
        }
        y[j * rs] = _mm512_reduce_add_ps(bs);
        acc[j] = _mm512_setzero_ps();
        gi[j] = _mm512_setzero_si512();
    }
    if (!mx) {
        const int whole = nr == 1 && G % 64 == 0; /* groups of whole 64-code chunks: the row loops */
        if (bits == 4) /* group 32 (whole groups go to q4_rows) */
            q4_loop(w, row, nr, x, cs, acc);
        else if (bits == 8 && whole)
            acc[0] = G == 64 ? bytes_row(w, u, row[0], x, cs[0], 1, 1) : bytes_row(w, u, row[0], x, cs[0], 1, 0);
        else if (bits == 8)
            bytes_loop(w, u, row, nr, x, cs, acc, 1);
        else
            bytes_loop(w, u, row, nr, x, cs, acc, 0);
        for (int j = 0; j < nr; j++)
            y[j * rs] += _mm512_reduce_add_ps(acc[j]);
        return;
    }
    const int hpg = G / 32; /* 32-element halves per group */
    int hleft = hpg, g = 0;
    for (int i = 0; i < n; i += 64) {
        int halves = n - i >= 64 ? 2 : 1;
        __m512i c[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
        for (int j = 0; j < nr && bits != 8; j++) {
            c[j] = unpack(u, row[j] + (size_t)i * bits / 8, 32 * halves);
            if (mx)
                c[j] = _mm512_permutexvar_epi8(c[j], lut);
        }
        for (int h = 0; h < halves; h++) {
            __m512i xv = _mm512_loadu_si512(x->q + i + 32 * h);
            for (int j = 0; j < nr; j++) {
                __m512i wv;
                _mm_prefetch((const char *)(row[j] + (size_t)(i + 32 * h) * bits / 8 + 2 * w->w_row_bytes), _MM_HINT_T0);
                if (bits == 8) { /* widen straight from memory */
                    wv = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(row[j] + i + 32 * h)));
                } else {
                    __m256i b = h ? _mm512_extracti64x4_epi64(c[j], 1) : _mm512_castsi512_si256(c[j]);
                    wv = mx ? _mm512_cvtepi8_epi16(b) : _mm512_cvtepu8_epi16(b);
                }
                gi[j] = _mm512_dpwssd_epi32(gi[j], wv, xv);
            }
            if (--hleft == 0) {
                for (int j = 0; j < nr; j++) {
                    acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(gi[j]), _mm512_set1_ps(cs[j][g]), acc[j]);
                    gi[j] = _mm512_setzero_si512();
                }
                hleft = hpg;
                g++;
            }
        }
    }
    for (int j = 0; j < nr; j++)
        y[j * rs] += _mm512_reduce_add_ps(acc[j]);
}

static int packed_ok(const lm_linear *w) {
    return (w->kind == LM_W_AFFINE && w->bits >= 2 && w->bits <= 8 && w->group % 32 == 0 && w->in % w->group == 0 &&
            w->in / w->group <= MAXG) ||
           (w->kind == LM_W_MXFP4 && w->in % 32 == 0 && w->in / 32 <= MAXG);
}

static int avx512_x_layout(const lm_linear *w) {
    if (w->kind != LM_W_AFFINE)
        return LM_XL_NATURAL;
    return w->bits == 4 ? LM_XL_NIBBLES : LM_XL_BYTES;
}

static int avx512_matvec_ok(const lm_linear *w) { return w->kind == LM_W_DENSE ? w->in_step <= 1 : packed_ok(w); }

/* up to 4 dense rows (f32/f16/bf16) r, r+rs, ... sharing the loads of x */
TGT static inline __attribute__((always_inline)) void dense_rows(const lm_linear *w, const lm_dtype dt, int r, int rs,
                                                                 const int nr, const float *x, float *y) {
    const int n = w->in, es = dt == LM_DT_F32 ? 4 : 2;
    const uint8_t *row[4];
    __m512 acc[4];
    for (int j = 0; j < nr; j++) {
        row[j] = (const uint8_t *)w->w + (size_t)(r + j * rs) * w->w_row_bytes;
        _mm_prefetch((const char *)(row[j] + LM_PAGE_AHEAD), _MM_HINT_T0); /* the page walk ahead */
        acc[j] = _mm512_setzero_ps();
    }
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
        for (int j = 0; j < nr; j++) {
            const uint8_t *p = row[j] + (size_t)i * es;
            __m512 wv = dt == LM_DT_BF16  ? ld_bf16_m((const uint16_t *)p, m)
                        : dt == LM_DT_F16 ? ld_f16_m((const uint16_t *)p, m)
                                          : _mm512_maskz_loadu_ps(m, (const float *)p);
            acc[j] = _mm512_fmadd_ps(xv, wv, acc[j]);
        }
    }
    for (int j = 0; j < nr; j++)
        y[j * rs] = _mm512_reduce_add_ps(acc[j]);
}

TGT static void avx512_matvec(const lm_linear *w, const lm_xvec *x, int r0, int r1, float *y) {
    if (w->kind == LM_W_AFFINE && w->bits == 4 && w->group % 64 == 0) {
        if (w->group == 64)
            q4_rows(w, x, r0, r1, y, 1);
        else
            q4_rows(w, x, r0, r1, y, 0);
        return;
    }
    if (w->kind != LM_W_DENSE) {
        unpacker u = unpacker_new(w->kind == LM_W_MXFP4 ? 4 : w->bits);
        /* one row after the other: one sequential stream. Measured on Zen 4 (2 threads, 8192 x
         * 2048): q8 28 -> 33-38 GB/s, q4 26 -> 28-29 GB/s against four rows from four quarters
         * of the range (two halves fall in between; the dense rows below prefer the quarters) */
        for (int r = r0; r < r1; r++)
            packed_rows(w, &u, r, 0, 1, x, y + (r - r0));
        return;
    }
    /* four rows at a time from four quarters of the range: each quarter is read front to back,
     * so memory sees four sequential streams (rows side by side defeat the prefetchers) */
    int q = (r1 - r0) / 4;
    if (w->dtype == LM_DT_BF16) {
        for (int k = 0; k < q; k++)
            dense_rows(w, LM_DT_BF16, r0 + k, q, 4, x->x, y + k);
    } else if (w->dtype == LM_DT_F16) {
        for (int k = 0; k < q; k++)
            dense_rows(w, LM_DT_F16, r0 + k, q, 4, x->x, y + k);
    } else {
        for (int k = 0; k < q; k++)
            dense_rows(w, LM_DT_F32, r0 + k, q, 4, x->x, y + k);
    }
    for (int r = r0 + 4 * q; r < r1; r++)
        dense_rows(w, w->dtype, r, 0, 1, x->x, y + (r - r0));
}

TGT static void avx512_quant_x(const float *x, int in, int group, int layout, int16_t *q, float *d, float *sum,
                               float *corr) {
    for (int g = 0; g < in / group; g++) {
        const float *xg = x + (size_t)g * group;
        __m512 mx = _mm512_setzero_ps(), sm = _mm512_setzero_ps();
        for (int i = 0; i < group; i += 16) {
            __m512 v = _mm512_loadu_ps(xg + i);
            mx = _mm512_max_ps(mx, _mm512_abs_ps(v));
            sm = _mm512_add_ps(sm, v);
        }
        float amax = _mm512_reduce_max_ps(mx), id = amax > 0 ? LM_XQ_MAX / amax : 0.0f;
        __m512i qs = _mm512_setzero_si512();
        for (int i = 0; i < group; i += 16) {
            __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xg + i), _mm512_set1_ps(id)));
            v = _mm512_max_epi32(_mm512_min_epi32(v, _mm512_set1_epi32((int)LM_XQ_MAX)), _mm512_set1_epi32(-(int)LM_XQ_MAX));
            qs = _mm512_add_epi32(qs, v);
            _mm256_storeu_si256((__m256i *)(q + (size_t)g * group + i), _mm512_cvtepi32_epi16(v));
        }
        d[g] = amax / LM_XQ_MAX;
        sum[g] = _mm512_reduce_add_ps(sm);
        corr[g] = sum[g] - d[g] * (float)_mm512_reduce_add_epi32(qs);
    }
    if (layout == LM_XL_BYTES) { /* q = 256 h + l: 64 h bytes, then 64 l bytes */
        for (int i = 0; i < in; i += 64) {
            int cs = in - i >= 64 ? 64 : 32;
            __m512i a = _mm512_loadu_si512(q + i), b = _mm512_maskz_loadu_epi16(cs == 64 ? 0xffffffffu : 0, q + i + 32);
            __m512i ha = _mm512_srai_epi16(_mm512_add_epi16(a, _mm512_set1_epi16(128)), 8);
            __m512i hb = _mm512_srai_epi16(_mm512_add_epi16(b, _mm512_set1_epi16(128)), 8);
            __m512i la = _mm512_sub_epi16(a, _mm512_slli_epi16(ha, 8)), lb = _mm512_sub_epi16(b, _mm512_slli_epi16(hb, 8));
            int8_t *o = (int8_t *)(q + i);
            _mm256_storeu_si256((__m256i *)o, _mm512_cvtepi16_epi8(ha));
            _mm256_storeu_si256((__m256i *)(o + cs), _mm512_cvtepi16_epi8(la));
            if (cs == 64) {
                _mm256_storeu_si256((__m256i *)(o + 32), _mm512_cvtepi16_epi8(hb));
                _mm256_storeu_si256((__m256i *)(o + 96), _mm512_cvtepi16_epi8(lb));
            }
        }
        return;
    }
    if (layout != LM_XL_NIBBLES)
        return;
    int16_t ie[32], io[32], i32[32]; /* even elements, odd ones (of 64); both of 32 */
    for (int k = 0; k < 32; k++) {
        ie[k] = (int16_t)(2 * k);
        io[k] = (int16_t)(2 * k + 1);
        i32[k] = (int16_t)(k < 16 ? 2 * k : 2 * (k - 16) + 1);
    }
    const __m512i pe = _mm512_loadu_si512(ie), po = _mm512_loadu_si512(io);
    int i = 0;
    for (; i + 64 <= in; i += 64) {
        __m512i a = _mm512_loadu_si512(q + i), b = _mm512_loadu_si512(q + i + 32);
        _mm512_storeu_si512(q + i, _mm512_permutex2var_epi16(a, pe, b));
        _mm512_storeu_si512(q + i + 32, _mm512_permutex2var_epi16(a, po, b));
    }
    if (i < in) /* 32 left */
        _mm512_storeu_si512(q + i, _mm512_permutexvar_epi16(_mm512_loadu_si512(i32), _mm512_loadu_si512(q + i)));
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
    if (w->kind != LM_W_AFFINE || !packed_ok(w)) {
        lm_linear_row_f32(w, r, out);
        return;
    }
    const uint8_t *sc = (const uint8_t *)w->scales + (size_t)r * w->s_row_bytes;
    const uint8_t *bi = (const uint8_t *)w->biases + (size_t)r * w->s_row_bytes;
    unpacker u = unpacker_new(w->bits);
    for (int i = 0; i < n; i += 32) {
        int g = i / w->group;
        __m512 s = _mm512_set1_ps(lm_scale_f32(sc, w->dtype, g)), b = _mm512_set1_ps(lm_scale_f32(bi, w->dtype, g));
        __m256i c = _mm512_castsi512_si256(unpack(&u, row + (size_t)i * w->bits / 8, 32));
        _mm512_storeu_ps(out + i, _mm512_fmadd_ps(u8_ps(_mm256_castsi256_si128(c)), s, b));
        _mm512_storeu_ps(out + i + 16, _mm512_fmadd_ps(u8_ps(_mm256_extracti128_si256(c, 1)), s, b));
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

/* --- attention over cache rows ---------------------------------------------------------------- */

/* Both kernels walk the rows in blocks of 8, every head group of a block before the next block
 * (one group's slice of every row in turn streams at half the speed). Measured on Zen 4: the
 * group-major order within a block still streams at ~10-15 GB/s per core against 25-30 for
 * row-major order; software prefetch of the next block did not change that. */

/* the four sums of a, b, c, d */
TGT static inline __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m256 a2 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m256 b2 = _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1));
    __m256 c2 = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
    __m256 d2 = _mm256_add_ps(_mm512_castps512_ps256(d), _mm512_extractf32x8_ps(d, 1));
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a2, b2), _mm256_hadd_ps(c2, d2)); /* a b c d | a b c d */
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

TGT static void transpose16(const uint32_t *src, int n2, int nr, uint32_t *dst);

/* The 16 lane sums of v[0..15], in order: a transposing tree (46 vector ops for 16 vectors). */
TGT static inline __m512 hsum16(const __m512 *v) {
    __m512 e[8], f[4], g[2];
    for (int k = 0; k < 8; k++) /* lanes 0..7: v[2k] folded to 8, lanes 8..15: v[2k+1] */
        e[k] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0xee));
    for (int k = 0; k < 4; k++) /* 128-bit lane m: v[4k+m] folded to 4 */
        f[k] = _mm512_add_ps(_mm512_shuffle_f32x4(e[2 * k], e[2 * k + 1], 0x88),
                             _mm512_shuffle_f32x4(e[2 * k], e[2 * k + 1], 0xdd));
    for (int k = 0; k < 2; k++) /* lane m: v[8k+m] folded to 2, then v[8k+4+m] */
        g[k] = _mm512_add_ps(_mm512_shuffle_ps(f[2 * k], f[2 * k + 1], 0x44),
                             _mm512_shuffle_ps(f[2 * k], f[2 * k + 1], 0xee));
    /* lane m: the sums of v[m], v[m+4], v[m+8], v[m+12] */
    __m512 h = _mm512_add_ps(_mm512_shuffle_ps(g[0], g[1], 0x88), _mm512_shuffle_ps(g[0], g[1], 0xdd));
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), h);
}

/* Keep v in a register: without this GCC folds a load used by several FMAs into each of them,
 * and the load port, not the FMA units, sets the pace. */
#define IN_REG(v) __asm__("" : "+v"(v))

/* 16 cache values from value i of rows p (lanes outside m: 0), f32 or f16 (h16, a constant in
 * the always-inlined kernels below, so each is compiled twice) */
TGT static inline __attribute__((always_inline)) __m512 ld_kv(const void *p, size_t i, __mmask16 m, const int h16) {
    return h16 ? ld_f16_m((const uint16_t *)p + i, m) : _mm512_maskz_loadu_ps(m, (const float *)p + i);
}

/* s[h*lds + r] = scale * q[h] . k[r] for H heads (q rows hd apart) and R rows (ks apart), R % 4 == 0;
 * full: hd % 16 == 0 */
TGT static inline __attribute__((always_inline)) void scores_tile(const float *q, const void *k, size_t ks, int hd,
                                                                  float scale, float *s, size_t lds, const int H,
                                                                  const int R, const int full, const int h16) {
    __m512 acc[4][8];
    for (int h = 0; h < H; h++)
        for (int r = 0; r < R; r++)
            acc[h][r] = _mm512_setzero_ps();
    for (int i = 0; i < hd; i += 16) {
        __mmask16 m = full || hd - i >= 16 ? 0xffff : (__mmask16)((1u << (hd - i)) - 1);
        __m512 kv[8];
        for (int r = 0; r < R; r++) {
            kv[r] = ld_kv(k, r * ks + i, m, h16);
            IN_REG(kv[r]);
        }
        for (int h = 0; h < H; h++) {
            __m512 x = _mm512_maskz_loadu_ps(m, q + (size_t)h * hd + i);
            for (int r = 0; r < R; r++)
                acc[h][r] = _mm512_fmadd_ps(x, kv[r], acc[h][r]);
        }
    }
    const __m128 sc = _mm_set1_ps(scale);
    for (int h = 0; h < H; h++)
        for (int r = 0; r < R; r += 4)
            _mm_storeu_ps(s + h * lds + r, _mm_mul_ps(hsum4(acc[h][r], acc[h][r + 1], acc[h][r + 2], acc[h][r + 3]), sc));
}

/* R rows (4 or 8) against every head: per group, heads 4 x 4 rows, 2 x 8 or 1 x 8 at a time */
TGT static inline __attribute__((always_inline)) void scores_rows(const lm_attn_rows *a, const float *q, int r0,
                                                                  float scale, float *s, size_t lds, const int R,
                                                                  const int full, const int h16) {
    const int hd = a->hd, per = a->nh / a->nkv;
    for (int g = 0; g < a->nkv; g++) {
        const void *k = lm_kv_at(a->k, r0 * a->stride + (size_t)g * hd, h16);
        int j = 0;
        for (; j + 4 <= per; j += 4)
            for (int rr = 0; rr < R; rr += 4)
                scores_tile(q + (size_t)(g * per + j) * hd, lm_kv_at(k, rr * a->stride, h16), a->stride, hd, scale,
                            s + (g * per + j) * lds + r0 + rr, lds, 4, 4, full, h16);
        for (; j + 2 <= per; j += 2)
            scores_tile(q + (size_t)(g * per + j) * hd, k, a->stride, hd, scale, s + (g * per + j) * lds + r0, lds, 2, R,
                        full, h16);
        for (; j < per; j++)
            scores_tile(q + (size_t)(g * per + j) * hd, k, a->stride, hd, scale, s + (g * per + j) * lds + r0, lds, 1, R,
                        full, h16);
    }
}

/* Decode (a->stream): each cache row is read once, front to back. The block order above reads
 * a block of rows one kv group at a time, 8 streams a row apart, and with [rows][kv heads x hd]
 * caches that streams from memory well below the rate of one sequential read (Qwen3-0.6B q8,
 * 512 rows: 4.7 -> 3.5 ms of attention per decode step with both kernels below). */

/* Scores against one row at a time, 16 heads (PER per kv group) after 16 heads along the row:
 * 16 accumulators, one tree per row and block of heads, then 16 rows transposed into s. q is
 * first copied, scaled, per block of heads as [group][hd/16][PER][16], so that the loads walk
 * one pointer. Needs hd % 16 == 0, nh % 16 == 0, nh <= 64, nh * hd <= SQ_MAX. */
#define SQ_MAX 8192
TGT static inline __attribute__((always_inline)) void scores_stream(const lm_attn_rows *a, const float *q, float scale,
                                                                    float *s, size_t lds, const int PER, const int h16) {
    const int hd = a->hd, n = a->n, nb = a->nh / 16;
    float qp[SQ_MAX] __attribute__((aligned(64)));
    const __m512 sc = _mm512_set1_ps(scale);
    for (int h = 0; h < a->nh; h++)
        for (int i = 0; i < hd; i += 16)
            _mm512_store_ps(qp + (size_t)(h / 16) * 16 * hd + (size_t)(h % 16 / PER) * hd * PER + (size_t)i * PER +
                                16 * (h % PER),
                            _mm512_mul_ps(_mm512_loadu_ps(q + (size_t)h * hd + i), sc));
    for (int r0 = 0; r0 < n; r0 += 16) {
        const int R = n - r0 < 16 ? n - r0 : 16;
        float blk[4][16][16], tr[16][16];
        for (int r = 0; r < R; r++)
            for (int b = 0; b < nb; b++) {
                const void *k = lm_kv_at(a->k, (size_t)(r0 + r) * a->stride + (size_t)b * (16 / PER) * hd, h16);
                const float *qb = qp + (size_t)b * 16 * hd;
                __m512 acc[16];
                for (int h = 0; h < 16; h++)
                    acc[h] = _mm512_setzero_ps();
                for (int g = 0; g < 16 / PER; g++) {
                    const void *kg = lm_kv_at(k, (size_t)g * hd, h16);
                    const float *qg = qb + (size_t)g * hd * PER;
                    for (int i = 0; i < hd; i += 16) {
                        const __m512 kv = ld_kv(kg, i, 0xffff, h16);
                        for (int j = 0; j < PER; j++)
                            acc[g * PER + j] =
                                _mm512_fmadd_ps(_mm512_load_ps(qg + (size_t)i * PER + 16 * j), kv, acc[g * PER + j]);
                    }
                }
                _mm512_storeu_ps(blk[b][r], hsum16(acc));
            }
        const __mmask16 m = (__mmask16)((1u << R) - 1);
        for (int b = 0; b < nb; b++) {
            transpose16((const uint32_t *)blk[b], 16, R, (uint32_t *)tr);
            for (int h = 0; h < 16; h++)
                _mm512_mask_storeu_ps(s + (size_t)(16 * b + h) * lds + r0, m, _mm512_loadu_ps(tr[h]));
        }
    }
}

/* out[h] += p[h][r] * v[r] (its group), one row at a time, each read front to back; the
 * outputs (nh * hd floats) stay in L1. Needs hd % 16 == 0. */
TGT static inline __attribute__((always_inline)) void values_stream(const lm_attn_rows *a, const float *p, size_t lds,
                                                                    float *out, const int h16) {
    const int hd = a->hd, per = a->nh / a->nkv;
    for (int r = 0; r < a->n; r++) {
        for (int h = 0; h < a->nh; h++) {
            const __m512 w = _mm512_set1_ps(p[(size_t)h * lds + r]);
            const void *vg = lm_kv_at(a->v, (size_t)r * a->stride + (size_t)(h / per) * hd, h16);
            float *o = out + (size_t)h * hd;
            for (int i = 0; i < hd; i += 16)
                _mm512_storeu_ps(o + i, _mm512_fmadd_ps(w, ld_kv(vg, i, 0xffff, h16), _mm512_loadu_ps(o + i)));
        }
    }
}

/* q . k over n values of f16 k */
TGT static float dot_kv16(const float *q, const uint16_t *k, int n) {
    __m512 s = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), ld_f16_m(k + i, m), s);
    }
    return _mm512_reduce_add_ps(s);
}

TGT static inline __attribute__((always_inline)) void attn_scores(const lm_attn_rows *a, const float *q, float scale,
                                                                  float *s, size_t lds, const int h16) {
    const int hd = a->hd, per = a->nh / a->nkv, n = a->n;
    if (a->stream && hd % 16 == 0 && a->nh % 16 == 0 && a->nh <= 64 && a->nh * hd <= SQ_MAX && 16 % per == 0) {
        switch (per) {
        case 1:
            scores_stream(a, q, scale, s, lds, 1, h16);
            return;
        case 2:
            scores_stream(a, q, scale, s, lds, 2, h16);
            return;
        case 4:
            scores_stream(a, q, scale, s, lds, 4, h16);
            return;
        case 8:
            scores_stream(a, q, scale, s, lds, 8, h16);
            return;
        default:
            scores_stream(a, q, scale, s, lds, 16, h16);
            return;
        }
    }
    int r = 0;
    if (hd % 16 == 0) {
        for (; r + 8 <= n; r += 8)
            scores_rows(a, q, r, scale, s, lds, 8, 1, h16);
        for (; r + 4 <= n; r += 4)
            scores_rows(a, q, r, scale, s, lds, 4, 1, h16);
    } else {
        for (; r + 4 <= n; r += 4)
            scores_rows(a, q, r, scale, s, lds, 4, 0, h16);
    }
    for (; r < n; r++)
        for (int h = 0; h < a->nh; h++) {
            const void *k = lm_kv_at(a->k, r * a->stride + (size_t)(h / per) * hd, h16);
            s[h * lds + r] = scale * (h16 ? dot_kv16(q + (size_t)h * hd, k, hd) : dot_f32(q + (size_t)h * hd, k, hd));
        }
}

TGT static void avx512_attn_scores(const lm_attn_rows *a, const float *q, float scale, float *s, size_t lds) {
    if (a->f16)
        attn_scores(a, q, scale, s, lds, 1);
    else
        attn_scores(a, q, scale, s, lds, 0);
}

/* o[h] += sum over n rows of p[h*lds + r] v[r] for H heads (o rows ho apart), NV vectors of 16
 * (masks m): H * NV accumulators stay in registers, each row's values are loaded once */
TGT static inline __attribute__((always_inline)) void values_tile(const void *v, size_t vs, int n, const float *p,
                                                                  size_t lds, float *o, size_t ho,
                                                                  const __mmask16 *m, const int H, const int NV,
                                                                  const int h16) {
    __m512 c[4][8];
    for (int h = 0; h < H; h++)
        for (int u = 0; u < NV; u++)
            c[h][u] = _mm512_maskz_loadu_ps(m[u], o + h * ho + 16 * u);
    for (int r = 0; r < n; r++) {
        const void *vr = lm_kv_at(v, r * vs, h16);
        __m512 x[8];
        for (int u = 0; u < NV; u++) {
            x[u] = ld_kv(vr, 16 * u, m[u], h16);
            IN_REG(x[u]);
        }
        for (int h = 0; h < H; h++) {
            __m512 w = _mm512_set1_ps(p[h * lds + r]);
            for (int u = 0; u < NV; u++)
                c[h][u] = _mm512_fmadd_ps(w, x[u], c[h][u]);
        }
    }
    for (int h = 0; h < H; h++)
        for (int u = 0; u < NV; u++)
            _mm512_mask_storeu_ps(o + h * ho + 16 * u, m[u], c[h][u]);
}

#define VROWS 8 /* rows per block of attn_values */

/* Per block of rows and head group: up to 64 dims (4 vectors) of 4 heads, or 128 dims of 2
 * heads (or 1) at a time. */
TGT static inline __attribute__((always_inline)) void attn_values(const lm_attn_rows *a, const float *p, size_t lds,
                                                                  float *out, const int h16) {
    const int hd = a->hd, per = a->nh / a->nkv;
    const size_t vs = a->stride;
    if (a->stream && hd % 16 == 0) {
        values_stream(a, p, lds, out, h16);
        return;
    }
    for (int r0 = 0; r0 < a->n; r0 += VROWS) {
        const int nb = a->n - r0 < VROWS ? a->n - r0 : VROWS;
        for (int g = 0; g < a->nkv; g++) {
            const void *v = lm_kv_at(a->v, r0 * vs + (size_t)g * hd, h16);
            for (int i0 = 0; i0 < hd;) {
                const int left = hd - i0, wide = left > 64; /* 128 dims (2 heads) or 64 (4 heads) */
                const void *vi = lm_kv_at(v, i0, h16);
                __mmask16 m[8];
                for (int u = 0; u < 8; u++)
                    m[u] = left - 16 * u >= 16 ? 0xffff
                           : left > 16 * u     ? (__mmask16)((1u << (left - 16 * u)) - 1)
                                               : 0;
                int j = 0;
                for (; !wide && j + 4 <= per; j += 4)
                    values_tile(vi, vs, nb, p + (g * per + j) * lds + r0, lds, out + (size_t)(g * per + j) * hd + i0,
                                (size_t)hd, m, 4, 4, h16);
                for (; j + 2 <= per; j += 2)
                    if (wide)
                        values_tile(vi, vs, nb, p + (g * per + j) * lds + r0, lds,
                                    out + (size_t)(g * per + j) * hd + i0, (size_t)hd, m, 2, 8, h16);
                    else
                        values_tile(vi, vs, nb, p + (g * per + j) * lds + r0, lds,
                                    out + (size_t)(g * per + j) * hd + i0, (size_t)hd, m, 2, 4, h16);
                for (; j < per; j++)
                    if (wide)
                        values_tile(vi, vs, nb, p + (g * per + j) * lds + r0, lds,
                                    out + (size_t)(g * per + j) * hd + i0, (size_t)hd, m, 1, 8, h16);
                    else
                        values_tile(vi, vs, nb, p + (g * per + j) * lds + r0, lds,
                                    out + (size_t)(g * per + j) * hd + i0, (size_t)hd, m, 1, 4, h16);
                i0 += wide ? 128 : 64;
            }
        }
    }
}

TGT static void avx512_attn_values(const lm_attn_rows *a, const float *p, size_t lds, float *out) {
    if (a->f16)
        attn_values(a, p, lds, out, 1);
    else
        attn_values(a, p, lds, out, 0);
}

/* --- prefill: blocks of 16 rows with the rows in the vector lanes ---------------------------------- */
/* A block of LM_GEMM_ROWS = 16 rows is converted once into a lane-major layout (element k of all
 * 16 rows side by side) and multiplied with 8 tokens at a time: per k one weight vector and 8
 * broadcast inputs, no horizontal sums. Dense weights go through f32 ([in][16]); packed ones
 * through int16 codes ([in/2][16] pairs of codes, centred) against int16 inputs (vpdpwssd), with
 * f32 scales and biases per group ([groups][16]). */

#define GT 8 /* tokens per tile */

/* int32 view of [16][n2] -> [n2][16]; rows >= nr become 0. 16x16 tiles in registers:
 * 32-bit, 64-bit and two 128-bit interleaving stages. */
TGT static void transpose16(const uint32_t *src, int n2, int nr, uint32_t *dst) {
    int p = 0;
    for (; p + 16 <= n2; p += 16) {
        __m512i r[16], t[16], u[16];
        for (int j = 0; j < 16; j++)
            r[j] = j < nr ? _mm512_loadu_si512(src + (size_t)j * n2 + p) : _mm512_setzero_si512();
        for (int i = 0; i < 8; i++) {
            t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
        }
        for (int i = 0; i < 4; i++) {
            u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
            u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
            u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
            u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
        }
        for (int k = 0; k < 4; k++) { /* u[k] lane L holds column 4L+k of rows 0..3 */
            __m512i v1 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x88), v2 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xdd);
            __m512i w1 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x88);
            __m512i w2 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xdd);
            _mm512_storeu_si512(dst + (size_t)(p + k) * 16, _mm512_shuffle_i32x4(v1, w1, 0x88));
            _mm512_storeu_si512(dst + (size_t)(p + 4 + k) * 16, _mm512_shuffle_i32x4(v2, w2, 0x88));
            _mm512_storeu_si512(dst + (size_t)(p + 8 + k) * 16, _mm512_shuffle_i32x4(v1, w1, 0xdd));
            _mm512_storeu_si512(dst + (size_t)(p + 12 + k) * 16, _mm512_shuffle_i32x4(v2, w2, 0xdd));
        }
    }
    for (; p < n2; p++)
        for (int j = 0; j < 16; j++)
            dst[(size_t)p * 16 + j] = j < nr ? src[(size_t)j * n2 + p] : 0;
}

TGT static inline __attribute__((always_inline)) void f32_tile(const float *blk, int n, const float *x, int nt_c,
                                                               int nr, float *y, int ldy) {
    __m512 acc[GT];
    for (int t = 0; t < nt_c; t++)
        acc[t] = _mm512_setzero_ps();
    for (int k = 0; k < n; k++) {
        __m512 wv = _mm512_loadu_ps(blk + (size_t)k * 16);
        for (int t = 0; t < nt_c; t++)
            acc[t] = _mm512_fmadd_ps(wv, _mm512_set1_ps(x[(size_t)t * n + k]), acc[t]);
    }
    __mmask16 m = (__mmask16)((1u << nr) - 1);
    for (int t = 0; t < nt_c; t++)
        _mm512_mask_storeu_ps(y + (size_t)t * ldy, m, acc[t]);
}

TGT static void f32_block(const lm_linear *w, const lm_xmat *x, int r0, int nr, float *y, int ldy, float *scratch) {
    int n = w->in;
    float *rows = scratch + (size_t)16 * n, *blk = scratch;
    for (int j = 0; j < nr; j++)
        avx512_row_f32(w, r0 + j, rows + (size_t)j * n);
    transpose16((const uint32_t *)rows, n, nr, (uint32_t *)blk);
    int t = 0;
    for (; t + GT <= x->T; t += GT)
        f32_tile(blk, n, x->x + (size_t)t * n, GT, nr, y + (size_t)t * ldy, ldy);
    for (; t < x->T; t++)
        f32_tile(blk, n, x->x + (size_t)t * n, 1, nr, y + (size_t)t * ldy, ldy);
}

TGT static inline __attribute__((always_inline)) void i16_tile(const int32_t *blk, const float *scl, const float *bia,
                                                               int n, int G, const lm_xmat *x, int t0, int nt_c, int nr,
                                                               float *y, int ldy) {
    const int ng = n / G, pg = G / 2;
    __m512 acc[GT];
    __m512i gi[GT];
    const int32_t *xq[GT];
    for (int t = 0; t < nt_c; t++) {
        acc[t] = _mm512_setzero_ps();
        xq[t] = (const int32_t *)(x->q + (size_t)(t0 + t) * n);
    }
    for (int g = 0; g < ng; g++) {
        for (int t = 0; t < nt_c; t++)
            gi[t] = _mm512_setzero_si512();
        for (int p = g * pg; p < (g + 1) * pg; p++) {
            __m512i wv = _mm512_loadu_si512(blk + (size_t)p * 16);
            for (int t = 0; t < nt_c; t++)
                gi[t] = _mm512_dpwssd_epi32(gi[t], wv, _mm512_set1_epi32(xq[t][p]));
        }
        __m512 sv = _mm512_loadu_ps(scl + (size_t)g * 16), bv = _mm512_loadu_ps(bia + (size_t)g * 16);
        for (int t = 0; t < nt_c; t++) {
            const float *dt = x->d + (size_t)(t0 + t) * ng, *st = x->sum + (size_t)(t0 + t) * ng;
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(gi[t]), _mm512_mul_ps(sv, _mm512_set1_ps(dt[g])), acc[t]);
            acc[t] = _mm512_fmadd_ps(bv, _mm512_set1_ps(st[g]), acc[t]);
        }
    }
    __mmask16 m = (__mmask16)((1u << nr) - 1);
    for (int t = 0; t < nt_c; t++)
        _mm512_mask_storeu_ps(y + (size_t)t * ldy, m, acc[t]);
}

/* the same for exactly 8 tokens, written out: named accumulators keep GCC from shuffling and
 * spilling them around vpdpwssd */
TGT static void i16_tile8(const int32_t *blk, const float *scl, const float *bia, int n, int G, const lm_xmat *x, int t0,
                          int nr, float *y, int ldy) {
    const int ng = n / G, pg = G / 2;
    const size_t n2 = (size_t)n / 2;
    const int32_t *q = (const int32_t *)(x->q + (size_t)t0 * n);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int g = 0; g < ng; g++) {
        __m512i g0 = _mm512_setzero_si512(), g1 = g0, g2 = g0, g3 = g0, g4 = g0, g5 = g0, g6 = g0, g7 = g0;
        for (int p = g * pg; p < (g + 1) * pg; p++) {
            __m512i wv = _mm512_loadu_si512(blk + (size_t)p * 16);
            const int32_t *qp = q + p;
            g0 = _mm512_dpwssd_epi32(g0, wv, _mm512_set1_epi32(qp[0]));
            g1 = _mm512_dpwssd_epi32(g1, wv, _mm512_set1_epi32(qp[n2]));
            g2 = _mm512_dpwssd_epi32(g2, wv, _mm512_set1_epi32(qp[2 * n2]));
            g3 = _mm512_dpwssd_epi32(g3, wv, _mm512_set1_epi32(qp[3 * n2]));
            g4 = _mm512_dpwssd_epi32(g4, wv, _mm512_set1_epi32(qp[4 * n2]));
            g5 = _mm512_dpwssd_epi32(g5, wv, _mm512_set1_epi32(qp[5 * n2]));
            g6 = _mm512_dpwssd_epi32(g6, wv, _mm512_set1_epi32(qp[6 * n2]));
            g7 = _mm512_dpwssd_epi32(g7, wv, _mm512_set1_epi32(qp[7 * n2]));
        }
        __m512 sv = _mm512_loadu_ps(scl + (size_t)g * 16), bv = _mm512_loadu_ps(bia + (size_t)g * 16);
        const float *d = x->d + (size_t)t0 * ng + g, *sm = x->sum + (size_t)t0 * ng + g;
#define LM_FIN(a, gg, t)                                                                                          \
    a = _mm512_fmadd_ps(bv, _mm512_set1_ps(sm[(t) * ng]),                                                         \
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(gg), _mm512_mul_ps(sv, _mm512_set1_ps(d[(t) * ng])), a))
        LM_FIN(a0, g0, 0);
        LM_FIN(a1, g1, 1);
        LM_FIN(a2, g2, 2);
        LM_FIN(a3, g3, 3);
        LM_FIN(a4, g4, 4);
        LM_FIN(a5, g5, 5);
        LM_FIN(a6, g6, 6);
        LM_FIN(a7, g7, 7);
#undef LM_FIN
    }
    __mmask16 m = (__mmask16)((1u << nr) - 1);
    _mm512_mask_storeu_ps(y, m, a0);
    _mm512_mask_storeu_ps(y + (size_t)ldy, m, a1);
    _mm512_mask_storeu_ps(y + 2 * (size_t)ldy, m, a2);
    _mm512_mask_storeu_ps(y + 3 * (size_t)ldy, m, a3);
    _mm512_mask_storeu_ps(y + 4 * (size_t)ldy, m, a4);
    _mm512_mask_storeu_ps(y + 5 * (size_t)ldy, m, a5);
    _mm512_mask_storeu_ps(y + 6 * (size_t)ldy, m, a6);
    _mm512_mask_storeu_ps(y + 7 * (size_t)ldy, m, a7);
}

/* packed rows -> centred int16 codes [16][n] (row-major), scales and biases [groups][16] */
TGT static void unpack_block(const lm_linear *w, int r0, int nr, int16_t *codes, float *scl, float *bia) {
    static const int8_t E2M1_X2[64] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    const __m512i lut = _mm512_loadu_si512(E2M1_X2);
    int mx = w->kind == LM_W_MXFP4, bits = mx ? 4 : w->bits, G = mx ? 32 : w->group, n = w->in, ng = n / G;
    unpacker u = unpacker_new(bits);
    const __m512i center = _mm512_set1_epi16(mx ? 0 : (int16_t)(1 << (bits - 1)));
    for (int j = 0; j < 16; j++) {
        if (j >= nr) {
            for (int g = 0; g < ng; g++)
                scl[(size_t)g * 16 + j] = bia[(size_t)g * 16 + j] = 0;
            continue;
        }
        const uint8_t *row = (const uint8_t *)w->w + (size_t)(r0 + j) * w->w_row_bytes;
        const uint8_t *sc = (const uint8_t *)w->scales + (size_t)(r0 + j) * w->s_row_bytes;
        int16_t *cj = codes + (size_t)j * n;
        for (int i = 0; i < n; i += 64) {
            int m = n - i >= 64 ? 64 : 32;
            __m512i c = unpack(&u, row + (size_t)i * bits / 8, m);
            if (mx)
                c = _mm512_permutexvar_epi8(c, lut);
            __m256i h0 = _mm512_castsi512_si256(c), h1 = _mm512_extracti64x4_epi64(c, 1);
            __m512i v0 = mx ? _mm512_cvtepi8_epi16(h0) : _mm512_cvtepu8_epi16(h0);
            _mm512_storeu_si512(cj + i, _mm512_sub_epi16(v0, center));
            if (m == 64) {
                __m512i v1 = mx ? _mm512_cvtepi8_epi16(h1) : _mm512_cvtepu8_epi16(h1);
                _mm512_storeu_si512(cj + i + 32, _mm512_sub_epi16(v1, center));
            }
        }
        /* w = s*q + b = s*(q - c) + (b + s*c); MXFP4: w = (e8m0/2) * code */
        for (int g = 0; g < ng; g++) {
            float s, b = 0;
            if (mx) {
                s = 0.5f * lm_e8m0_to_f32(sc[g]);
            } else {
                const uint8_t *bi = (const uint8_t *)w->biases + (size_t)(r0 + j) * w->s_row_bytes;
                s = lm_scale_f32(sc, w->dtype, g);
                b = lm_scale_f32(bi, w->dtype, g) + s * (float)(1 << (bits - 1));
            }
            scl[(size_t)g * 16 + j] = s;
            bia[(size_t)g * 16 + j] = b;
        }
    }
}

TGT static void i16_block(const lm_linear *w, const lm_xmat *x, int r0, int nr, float *y, int ldy, float *scratch) {
    int n = w->in, G = w->kind == LM_W_MXFP4 ? 32 : w->group, ng = n / G;
    int32_t *blk = (int32_t *)scratch;                   /* [n/2][16] */
    int16_t *codes = (int16_t *)(scratch + (size_t)8 * n); /* [16][n] */
    float *scl = scratch + (size_t)16 * n, *bia = scl + (size_t)ng * 16;
    unpack_block(w, r0, nr, codes, scl, bia);
    transpose16((const uint32_t *)codes, n / 2, nr, (uint32_t *)blk);
    int t = 0;
    for (; t + 8 <= x->T; t += 8)
        i16_tile8(blk, scl, bia, n, G, x, t, nr, y + (size_t)t * ldy, ldy);
    for (; t < x->T; t++)
        i16_tile(blk, scl, bia, n, G, x, t, 1, nr, y + (size_t)t * ldy, ldy);
}

TGT static int avx512_prep_xmat(const lm_linear *w, const float *x, int T, int16_t *q, float *d, float *sum) {
    if (!packed_ok(w))
        return 0;
    int G = lm_xvec_group(w), ng = w->in / G;
    for (int t = 0; t < T; t++) {
        float *corr = d + (size_t)t * ng; /* quant_x wants one; written over by d below */
        float tmp[MAXG];
        avx512_quant_x(x + (size_t)t * w->in, w->in, G, LM_XL_NATURAL, q + (size_t)t * w->in, tmp,
                       sum + (size_t)t * ng, corr);
        memcpy(d + (size_t)t * ng, tmp, (size_t)ng * sizeof(float));
    }
    return 1;
}

TGT static void avx512_gemm_rows(const lm_linear *w, const lm_xmat *x, int r0, int nr, float *y, int ldy, float *scratch) {
    if (x->q && packed_ok(w))
        i16_block(w, x, r0, nr, y, ldy, scratch);
    else if (w->kind == LM_W_DENSE && w->in_step <= 1)
        f32_block(w, x, r0, nr, y, ldy, scratch);
    else
        lm_gemm_rows_f32(lm_cpu_kernels_avx512(), w, x, r0, nr, y, ldy, scratch);
}

/* --- exponentials ---------------------------------------------------------------------------------- */

/* exp(x): x = n*ln2 + r with |r| <= ln2/2, e^r by its Taylor polynomial to r^7 (truncation
 * below 1e-8 relative), times 2^n by vscalefps (which also gives 0 and inf at the ends). */
TGT static inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f)); /* -inf -> 0, not NaN */
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x); /* ln2 in two parts */
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

TGT static float avx512_exp_sum(float *s, int n, float mx) {
    __m512 acc = _mm512_setzero_ps(), m = _mm512_set1_ps(mx);
    for (int i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + i), m));
        e = _mm512_maskz_mov_ps(k, e);
        _mm512_mask_storeu_ps(s + i, k, e);
        acc = _mm512_add_ps(acc, e);
    }
    return _mm512_reduce_add_ps(acc);
}

TGT static void avx512_silu_mul(const float *g, const float *u, float *out, int n) {
    for (int i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(k, g + i);
        __m512 sg = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
        _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(sg, _mm512_maskz_loadu_ps(k, u + i)));
    }
}

static const lm_cpu_kernels AVX512 = {
    .isa = LM_ISA_AVX512,
    .name = "avx512",
    .matvec_ok = avx512_matvec_ok,
    .matvec = avx512_matvec,
    .quant_x = avx512_quant_x,
    .x_layout = avx512_x_layout,
    .row_f32 = avx512_row_f32,
    .gemm = avx512_gemm,
    .prep_xmat = avx512_prep_xmat,
    .gemm_rows = avx512_gemm_rows,
    .dot = dot_f32,
    .exp_sum = avx512_exp_sum,
    .silu_mul = avx512_silu_mul,
    .axpy = avx512_axpy,
    .attn_scores = avx512_attn_scores,
    .attn_values = avx512_attn_values,
};

const lm_cpu_kernels *lm_cpu_kernels_avx512(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni") &&
        __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("fma"))
        return &AVX512;
    return NULL;
}

#else
const lm_cpu_kernels *lm_cpu_kernels_avx512(void) { return NULL; }
#endif
