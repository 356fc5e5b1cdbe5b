#include "layers/linear.h"

#include "core/util.h"
#include "quant/quant.h"

lm_linear lm_linear_rows(const lm_linear *w, int r0, int n) {
    lm_linear v = *w;
    v.out = n;
    v.w = (const uint8_t *)w->w + (size_t)r0 * w->w_row_bytes;
    if (w->scales)
        v.scales = (const uint8_t *)w->scales + (size_t)r0 * w->s_row_bytes;
    if (w->biases)
        v.biases = (const uint8_t *)w->biases + (size_t)r0 * w->s_row_bytes;
    if (w->bias)
        v.bias = w->bias + r0;
    return v;
}

void lm_linear_row_f32(const lm_linear *w, int r, float *out) {
    const uint8_t *row = (const uint8_t *)w->w + (size_t)r * w->w_row_bytes;
    int n = w->in;
    switch (w->kind) {
    case LM_W_DENSE:
        if (w->in_step > 1) {
            for (int i = 0; i < n; i++)
                out[i] = lm_scalar_to_f32(row, w->dtype, (size_t)i * w->in_step);
        } else if (w->dtype == LM_DT_F32) {
            memcpy(out, row, (size_t)n * 4);
        } else if (w->dtype == LM_DT_BF16) {
            const uint16_t *p = (const uint16_t *)row;
            for (int i = 0; i < n; i++)
                out[i] = lm_bf16_to_f32(p[i]);
        } else {
            const uint16_t *p = (const uint16_t *)row;
            for (int i = 0; i < n; i++)
                out[i] = lm_f16_to_f32(p[i]);
        }
        break;
    case LM_W_AFFINE:
        lm_affine_dequant_row(row, (const uint8_t *)w->scales + (size_t)r * w->s_row_bytes,
                              (const uint8_t *)w->biases + (size_t)r * w->s_row_bytes, w->dtype, w->bits, w->group, n,
                              out);
        break;
    case LM_W_MXFP4:
        lm_mxfp4_dequant_row(row, (const uint8_t *)w->scales + (size_t)r * w->s_row_bytes, n, out);
        break;
    default:
        break;
    }
}

size_t lm_linear_bytes(const lm_linear *w) {
    return (size_t)w->out * (w->w_row_bytes + w->s_row_bytes * (w->biases ? 2 : w->scales ? 1 : 0));
}
