/* Packed weight formats: MLX affine (2-8 bit, LSB-first bit stream per row, scale/bias per
 * group) and MXFP4 (e2m1 nibbles, low nibble first, e8m0 scale per 32 elements). */
#ifndef LM_QUANT_QUANT_H
#define LM_QUANT_QUANT_H
#include <stddef.h>
#include <stdint.h>

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
float lm_e8m0_to_f32(uint8_t e);

extern const float LM_E2M1[16];

#endif
