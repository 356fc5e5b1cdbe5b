/* Packed weight formats: MLX affine (2-8 bit, LSB-first bit stream per row, scale/bias per
 * group) and MXFP4 (e2m1 nibbles, low nibble first, e8m0 scale per 32 elements). */
#ifndef LM_QUANT_QUANT_H
#define LM_QUANT_QUANT_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/dtype.h"

/* Read the k-th `bits`-wide value of an LSB-first little-endian bit stream. */
static inline uint32_t lm_bits_get(const uint8_t *stream, int bits, size_t k) {
    size_t bit = k * (size_t)bits;
    size_t byte = bit >> 3;
    unsigned sh = (unsigned)(bit & 7);
    uint32_t v = stream[byte];
    if (sh + (unsigned)bits > 8)
        v |= (uint32_t)stream[byte + 1] << 8;
    if (sh + (unsigned)bits > 16)
        v |= (uint32_t)stream[byte + 2] << 16;
    return (v >> sh) & ((1u << bits) - 1);
}

/* One row: w = q * scale + bias per group. scales/biases are `sdt` (f32/f16/bf16). */
void lm_affine_dequant_row(const uint8_t *packed, const uint8_t *scales, const uint8_t *biases, lm_dtype sdt, int bits,
                           int group, int n, float *out);
/* One row of MXFP4: n elements, n/32 e8m0 scales. */
void lm_mxfp4_dequant_row(const uint8_t *packed, const uint8_t *scales, int n, float *out);

float lm_scalar_to_f32(const uint8_t *p, lm_dtype dt, size_t i);

/* Element i of a scales/biases row (f32, f16 or bf16), bf16 read without a call. */
static inline float lm_scale_f32(const uint8_t *p, lm_dtype dt, int i) {
    if (dt == LM_DT_BF16) {
        uint32_t u = (uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    return lm_scalar_to_f32(p, dt, (size_t)i);
}

/* 2^(e - 127) built from its bits (e8m0; 0xff is NaN, 0 the subnormal 2^-127). */
static inline float lm_e8m0_to_f32(uint8_t e) {
    uint32_t u = e == 0 ? 0x00400000u : e == 0xff ? 0x7fc00000u : (uint32_t)e << 23;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

extern const float LM_E2M1[16];

/* --- quantizers (pack.c): mlx's CPU kernels, bit for bit --------------------------------- */

/* Bytes of a bit stream of n values of `bits` bits (rounded up to whole bytes). */
static inline size_t lm_bits_bytes(int bits, size_t n) { return (n * (size_t)bits + 7) / 8; }
/* Write q[0..n) (each < 2^bits) as an LSB-first bit stream: value k occupies bits
 * [k*bits, (k+1)*bits) of the little-endian stream. Writes lm_bits_bytes(bits, n) bytes. */
void lm_bits_pack(uint8_t *stream, int bits, const uint8_t *q, size_t n);
/* The exact inverse of lm_bits_pack. */
void lm_bits_unpack(const uint8_t *stream, int bits, size_t n, uint8_t *q);

/* MLX affine quantization of one row of n values (n a multiple of group), as mlx::core::quantize
 * does it: per group, the edge (min or max) with the larger magnitude is kept exact:
 *   scale = (max - min) / (2^bits - 1) (at least 1e-7), negated when the edge is the max;
 *   q0 = rint(edge / scale); when q0 != 0: scale = edge / q0 and bias = edge, else bias = 0;
 *   q = clamp(rint((w - bias) / scale), 0, 2^bits - 1).
 * packed: the LSB-first bit stream (n*bits/8 bytes); scales/biases: n/group floats, before the
 * cast to the stored dtype (mlx computes q with these unrounded values too). */
void lm_affine_quantize_row(const float *w, int n, int bits, int group, uint8_t *packed, float *scales,
                            float *biases);
/* MXFP4 quantization of one row (n a multiple of 32), as mlx's fp_quantize: per 32 values,
 * s = max|w| / 6 and e = round(log2 s) (0 when s == 0), stored as e8m0 e + 127 (clamped to
 * 0..254); each w / 2^e goes to the nearest e2m1 value (ties to the smaller magnitude; +0 before
 * -0). mlx computes these steps in the weight dtype `dt`; so does this (values rounded to dt). */
void lm_mxfp4_quantize_row(const float *w, int n, lm_dtype dt, uint8_t *packed, uint8_t *scales);

/* x rounded to the nearest value of dt (f32: unchanged; bf16/f16: round to nearest even). */
float lm_round_to_dtype(float x, lm_dtype dt);
/* Store x as element i of an f32/f16/bf16 array. */
void lm_f32_store(uint8_t *dst, lm_dtype dt, size_t i, float x);

#endif
