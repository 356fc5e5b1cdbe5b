/* Quantized KV rows on the device (backend.h's kv_quantize / kv_dequant): MLX affine groups with
 * f32 scales and biases, computed as quant/pack.c's lm_affine_quantize_row and quant/quant.c's
 * lm_affine_dequant_row do on the CPU (the same float operations, IEEE division, no fused
 * multiply-add), so both devices store the same codes. One thread per group when quantizing (the
 * codes are packed LSB first into group * bits / 8 whole bytes), one per value when dequantizing.
 * bits 16: f16 rows (rounded to nearest even, as the CPU's lm_f32_to_f16), one thread per value. */
#include "backend/cuda/cuda_internal.cuh"

#define KQ_THREADS 256

__global__ void kv_quantize_f32(const float *__restrict__ x, int n, int dim, int bits, int group, uint8_t *q,
                                float *s, float *b) {
    lm_pdl_wait();
    lm_pdl_next();
    int ng = dim / group;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)n * ng)
        return;
    size_t r = idx / ng;
    int g = (int)(idx % ng);
    const float *w = x + r * dim + (size_t)g * group;
    const float n_bins = (float)((1 << bits) - 1), eps = 1e-7f;
    float w_min = INFINITY, w_max = -INFINITY;
    for (int j = 0; j < group; j++) {
        w_max = w_max < w[j] ? w[j] : w_max;
        w_min = w[j] < w_min ? w[j] : w_min;
    }
    int mask = fabsf(w_min) > fabsf(w_max);
    float scale = __fdiv_rn(__fsub_rn(w_max, w_min), n_bins);
    scale = scale < eps ? eps : scale;
    scale = mask ? scale : -scale;
    float edge = mask ? w_min : w_max;
    float q0 = rintf(__fdiv_rn(edge, scale)), bias = 0.0f;
    if (q0 != 0.0f) {
        scale = __fdiv_rn(edge, q0);
        bias = edge;
    }
    uint8_t *out = q + r * ((size_t)dim * bits / 8) + (size_t)g * group * bits / 8;
    uint32_t acc = 0;
    int have = 0;
    for (int j = 0; j < group; j++) {
        float v = rintf(__fdiv_rn(__fsub_rn(w[j], bias), scale));
        v = v < 0.0f ? 0.0f : v > n_bins ? n_bins : v;
        acc |= (uint32_t)v << have;
        have += bits;
        while (have >= 8) {
            *out++ = (uint8_t)acc;
            acc >>= 8;
            have -= 8;
        }
    }
    s[r * ng + g] = scale;
    b[r * ng + g] = bias;
}

__global__ void kv_dequant_f32(const uint8_t *__restrict__ q, const float *__restrict__ s,
                               const float *__restrict__ b, int n, int dim, int bits, int group, float *out) {
    lm_pdl_wait();
    lm_pdl_next();
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)n * dim)
        return;
    size_t r = idx / dim;
    int i = (int)(idx % dim), ng = dim / group;
    float code = (float)bits_at(q + r * ((size_t)dim * bits / 8), bits, (size_t)i);
    out[idx] = __fadd_rn(__fmul_rn(code, s[r * ng + i / group]), b[r * ng + i / group]);
}

/* y[i] = x[i] as another float type (f32 <-> f16) */
template <typename TI, typename TO> __global__ void kv_convert(const TI *__restrict__ x, size_t n, TO *y) {
    lm_pdl_wait();
    lm_pdl_next();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        kv_st(y + i, kv_ld1(x + i));
}

void lm_cuda_kv_quantize(lm_backend *be, const float *x, int n, int dim, int bits, int group, uint8_t *q, float *s,
                         float *b) {
    cuda_backend *c = cu_be(be);
    if (n <= 0 || lm_cuda_skip(c))
        return;
    if (bits == 16) {
        size_t m = (size_t)n * dim;
        lm_cuda_launch(c, "kv_convert", kv_convert<float, __half>, lm_cuda_blocks(m, KQ_THREADS), KQ_THREADS, 0, x, m,
                       (__half *)q);
        return;
    }
    size_t groups = (size_t)n * (dim / group);
    lm_cuda_launch(c, "kv_quantize_f32", kv_quantize_f32, lm_cuda_blocks(groups, KQ_THREADS), KQ_THREADS, 0, x, n,
                   dim, bits, group, q, s, b);
}

void lm_cuda_kv_dequant(lm_backend *be, const uint8_t *q, const float *s, const float *b, int n, int dim, int bits,
                        int group, float *out) {
    cuda_backend *c = cu_be(be);
    if (n <= 0 || lm_cuda_skip(c))
        return;
    if (bits == 16) {
        size_t m = (size_t)n * dim;
        lm_cuda_launch(c, "kv_convert", kv_convert<__half, float>, lm_cuda_blocks(m, KQ_THREADS), KQ_THREADS, 0,
                       (const __half *)q, m, out);
        return;
    }
    lm_cuda_launch(c, "kv_dequant_f32", kv_dequant_f32, lm_cuda_blocks((size_t)n * dim, KQ_THREADS), KQ_THREADS, 0, q,
                   s, b, n, dim, bits, group, out);
}
