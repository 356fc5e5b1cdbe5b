/* Quantizers and bit-stream packing, matching mlx's CPU `quantize` kernels bit for bit
 * (mlx/backend/cpu/quantized.cpp for affine, the fp_quantize fallback in mlx/ops.cpp for MXFP4). */
#include <math.h>
#include <string.h>

#include "core/util.h"
#include "quant/quant.h"

void lm_bits_pack(uint8_t *stream, int bits, const uint8_t *q, size_t n) {
    uint32_t acc = 0, mask = (1u << bits) - 1;
    int have = 0;
    size_t o = 0;
    for (size_t k = 0; k < n; k++) {
        acc |= (q[k] & mask) << have;
        have += bits;
        while (have >= 8) {
            stream[o++] = (uint8_t)acc;
            acc >>= 8;
            have -= 8;
        }
    }
    if (have > 0)
        stream[o] = (uint8_t)acc;
}

void lm_bits_unpack(const uint8_t *stream, int bits, size_t n, uint8_t *q) {
    for (size_t k = 0; k < n; k++)
        q[k] = (uint8_t)lm_bits_get(stream, bits, k);
}

float lm_round_to_dtype(float x, lm_dtype dt) {
    switch (dt) {
    case LM_DT_BF16:
        return lm_bf16_to_f32(lm_f32_to_bf16(x));
    case LM_DT_F16:
        return lm_f16_to_f32(lm_f32_to_f16(x));
    default:
        return x;
    }
}

void lm_f32_store(uint8_t *dst, lm_dtype dt, size_t i, float x) {
    uint16_t h;
    switch (dt) {
    case LM_DT_BF16:
        h = lm_f32_to_bf16(x);
        memcpy(dst + 2 * i, &h, 2);
        break;
    case LM_DT_F16:
        h = lm_f32_to_f16(x);
        memcpy(dst + 2 * i, &h, 2);
        break;
    default:
        memcpy(dst + 4 * i, &x, 4);
        break;
    }
}

/* One group: scale and bias as mlx chooses them (see quant.h), then the codes. */
static void affine_group(const float *w, int group, int bits, uint8_t *q, float *scale_out, float *bias_out) {
    const float n_bins = (float)((1 << bits) - 1), eps = 1e-7f;
    float w_min = INFINITY, w_max = -INFINITY;
    for (int j = 0; j < group; j++) {
        w_max = w_max < w[j] ? w[j] : w_max; /* std::max(a, b) is (a < b) ? b : a */
        w_min = w[j] < w_min ? w[j] : w_min;
    }
    int mask = fabsf(w_min) > fabsf(w_max);
    float scale = (w_max - w_min) / n_bins;
    scale = scale < eps ? eps : scale;
    scale = mask ? scale : -scale;
    float edge = mask ? w_min : w_max;
    float q0 = rintf(edge / scale), bias = 0.0f;
    if (q0 != 0.0f) {
        scale = edge / q0;
        bias = edge;
    }
    for (int j = 0; j < group; j++) {
        float v = rintf((w[j] - bias) / scale);
        v = v < 0.0f ? 0.0f : v > n_bins ? n_bins : v;
        q[j] = (uint8_t)v;
    }
    *scale_out = scale;
    *bias_out = bias;
}

void lm_affine_quantize_row(const float *w, int n, int bits, int group, uint8_t *packed, float *scales,
                            float *biases) {
    uint8_t q[128]; /* group <= 128 */
    for (int g = 0; g < n / group; g++) {
        affine_group(w + (size_t)g * group, group, bits, q, &scales[g], &biases[g]);
        /* a group of 32..128 values of `bits` bits is a whole number of bytes */
        lm_bits_pack(packed + (size_t)g * group * bits / 8, bits, q, (size_t)group);
    }
}

void lm_mxfp4_quantize_row(const float *w, int n, lm_dtype dt, uint8_t *packed, uint8_t *scales) {
    for (int g = 0; g < n / 32; g++) {
        const float *x = w + (size_t)g * 32;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++)
            amax = amax < fabsf(x[j]) ? fabsf(x[j]) : amax;
        float s = lm_round_to_dtype(amax / 6.0f, dt);
        int e = 0;
        if (s != 0.0f)
            e = (int)rintf(lm_round_to_dtype(log2f(s), dt));
        int biased = e + 127;
        scales[g] = (uint8_t)(biased < 0 ? 0 : biased > 254 ? 254 : biased);
        uint8_t q[32];
        for (int j = 0; j < 32; j++) {
            float v = lm_round_to_dtype(ldexpf(x[j], -e), dt);
            int best = 0;
            float bd = INFINITY;
            for (int k = 0; k < 16; k++) { /* argmin: the first of equal distances wins */
                float d = fabsf(lm_round_to_dtype(v - LM_E2M1[k], dt));
                if (d < bd) {
                    bd = d;
                    best = k;
                }
            }
            q[j] = (uint8_t)best;
        }
        lm_bits_pack(packed + (size_t)g * 16, 4, q, 32);
    }
}
