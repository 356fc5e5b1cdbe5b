#include "backend/cpu/cpu_kernels.h"

#include <math.h>

#include "core/util.h"

/* Eight independent accumulators let the compiler vectorise and keep rounding stable. */
float lm_dot_f32(const float *x, const float *w, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += x[i + j] * w[i + j];
    float s = 0;
    for (; i < n; i++)
        s += x[i] * w[i];
    return s + ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

float lm_dot_bf16(const float *x, const uint16_t *w, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += x[i + j] * lm_bf16_to_f32(w[i + j]);
    float s = 0;
    for (; i < n; i++)
        s += x[i] * lm_bf16_to_f32(w[i]);
    return s + ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

float lm_dot_f16(const float *x, const uint16_t *w, int n) {
    float s = 0;
    for (int i = 0; i < n; i++)
        s += x[i] * lm_f16_to_f32(w[i]);
    return s;
}

float lm_dot_dense(const float *x, const void *w, lm_dtype dt, int n) {
    switch (dt) {
    case LM_DT_F32:
        return lm_dot_f32(x, w, n);
    case LM_DT_BF16:
        return lm_dot_bf16(x, w, n);
    default:
        return lm_dot_f16(x, w, n);
    }
}

float lm_gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

float lm_gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f)); }

float lm_silu(float x) { return x / (1.0f + expf(-x)); }
