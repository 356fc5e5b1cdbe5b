/* Elementwise ops: gated activations, add, scale, softcap, per-column scaling. */
#include <math.h>

#include "backend/cuda/cuda_internal.cuh"

#define EW_THREADS 256

__global__ void glu_f32(const float *gate, const float *up, int ld, int T, int n, int act, float limit, float *out) {
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= (size_t)T * n)
        return;
    size_t t = k / n, i = k % n;
    out[t * n + i] = act_f32(gate[t * ld + i], up[t * ld + i], act, limit);
}

static void glu_f32_launch(cuda_backend *c, const float *gate, const float *up, int ld, int T, int n, lm_act act,
                           float limit, float *out) {
    glu_f32<<<lm_cuda_blocks((size_t)T * n, EW_THREADS), EW_THREADS, 0, c->stream>>>(gate, up, ld, T, n, (int)act,
                                                                                    limit, out);
    lm_cuda_launched(c, "glu_f32");
}

void lm_cuda_glu(lm_backend *be, const float *gate, const float *up, int ld, int T, int n, lm_act act, float limit,
                 float *out) {
    cuda_backend *c = cu_be(be);
    if (T > 0 && n > 0 && !lm_cuda_skip(c))
        glu_f32_launch(c, gate, up, ld, T, n, act, limit, out);
}

/* --- add, scale, softcap ------------------------------------------------------------------------- */

__global__ void add_f32(float *x, const float *y, size_t n) {
    lm_pdl_wait();
    lm_pdl_next();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] += y[i];
}

void lm_cuda_add(lm_backend *be, float *x, const float *y, size_t n) {
    cuda_backend *c = cu_be(be);
    if (!n || lm_cuda_skip(c))
        return;
    lm_cuda_launch(c, "add_f32", add_f32, lm_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, x, y, n);
}

__global__ void scale_f32(float *x, float s, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] *= s;
}

void lm_cuda_scale(lm_backend *be, float *x, float s, size_t n) {
    cuda_backend *c = cu_be(be);
    if (!n || lm_cuda_skip(c))
        return;
    scale_f32<<<lm_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(x, s, n);
    lm_cuda_launched(c, "scale_f32");
}

__global__ void softcap_f32(float *x, float cap, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] = cap * tanhf(x[i] / cap);
}

void lm_cuda_softcap(lm_backend *be, float *x, float cap, size_t n) {
    cuda_backend *c = cu_be(be);
    if (!n || lm_cuda_skip(c))
        return;
    softcap_f32<<<lm_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(x, cap, n);
    lm_cuda_launched(c, "softcap_f32");
}

__global__ void mul_rows_f32(float *x, const float *w, int rows, int n) {
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k < (size_t)rows * n)
        x[k] *= w[k % n];
}

void lm_cuda_mul_rows(lm_backend *be, float *x, const float *w, int rows, int n) {
    cuda_backend *c = cu_be(be);
    if (rows <= 0 || n <= 0 || lm_cuda_skip(c))
        return;
    mul_rows_f32<<<lm_cuda_blocks((size_t)rows * n, EW_THREADS), EW_THREADS, 0, c->stream>>>(x, w, rows, n);
    lm_cuda_launched(c, "mul_rows_f32");
}
