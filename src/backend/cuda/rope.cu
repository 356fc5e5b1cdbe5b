/* Rotary embeddings from a host-computed table (cos then sin per token), half-split pairs. */
#include "backend/cuda/cuda_internal.cuh"

__global__ void rope_f32(float *x, int T, int n_heads, int head_dim, int rot_dim, const float *__restrict__ cs) {
    lm_pdl_wait();
    lm_pdl_next();
    int half = rot_dim / 2;
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x, total = (size_t)T * n_heads * half;
    if (k >= total)
        return;
    int i = (int)(k % half);
    size_t th = k / half; /* t * n_heads + h */
    int t = (int)(th / n_heads);
    const float *cosv = cs + (size_t)t * rot_dim, *sinv = cosv + half;
    float *v = x + th * head_dim;
    float a = v[i], b = v[i + half];
    v[i] = a * cosv[i] - b * sinv[i];
    v[i + half] = b * cosv[i] + a * sinv[i];
}

static void rope_f32_launch(cuda_backend *c, float *x, int T, int n_heads, int head_dim, int rot_dim, const float *cs) {
    size_t total = (size_t)T * n_heads * (rot_dim / 2);
    lm_cuda_launch(c, "rope_f32", rope_f32, lm_cuda_blocks(total, 256), 256, 0, x, T, n_heads, head_dim, rot_dim, cs);
}

void lm_cuda_rope(lm_backend *be, float *x, int T, int n_heads, int head_dim, int rot_dim, const float *cs) {
    cuda_backend *c = cu_be(be);
    if (T > 0 && n_heads > 0 && rot_dim >= 2 && !lm_cuda_skip(c))
        rope_f32_launch(c, x, T, n_heads, head_dim, rot_dim, cs);
}
