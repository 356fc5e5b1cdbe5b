#include "quant/quant.h"

#include <math.h>
#include <string.h>

#include "core/util.h"

const float LM_E2M1[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                           -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

float lm_scalar_to_f32(const uint8_t *p, lm_dtype dt, size_t i) {
    switch (dt) {
    case LM_DT_F32: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    case LM_DT_BF16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return lm_bf16_to_f32(h);
    }
    case LM_DT_F16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return lm_f16_to_f32(h);
    }
    default:
        return 0.0f;
    }
}


void lm_affine_dequant_row(const uint8_t *packed, const uint8_t *scales, const uint8_t *biases, lm_dtype sdt, int bits,
                           int group, int n, float *out) {
    for (int g = 0; g < n / group; g++) {
        float s = lm_scalar_to_f32(scales, sdt, (size_t)g), b = lm_scalar_to_f32(biases, sdt, (size_t)g);
        for (int i = g * group; i < (g + 1) * group; i++)
            out[i] = (float)lm_bits_get(packed, bits, (size_t)i) * s + b;
    }
}

void lm_mxfp4_dequant_row(const uint8_t *packed, const uint8_t *scales, int n, float *out) {
    for (int g = 0; g < n / 32; g++) {
        float s = lm_e8m0_to_f32(scales[g]);
        for (int i = g * 32; i < (g + 1) * 32; i += 2) {
            uint8_t b = packed[i / 2];
            out[i] = LM_E2M1[b & 15] * s;
            out[i + 1] = LM_E2M1[b >> 4] * s;
        }
    }
}
