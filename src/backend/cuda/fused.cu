/* Fused decode ops (backend slots linear_n, linear_glu, add_rmsnorm, kv_put): fewer launches
 * per layer. Each falls back to the separate ops for shapes or formats the fused kernels do
 * not serve, and when the backend was created with LMCORE_CUDA_FUSE=0. */
#include "backend/cuda/cuda_internal.cuh"

void lm_cuda_linear_n(lm_backend *be, int n, const lm_linear *const *w, const float *x, int T, float *const *y) {
    cuda_backend *c = cu_be(be);
    if (lm_cuda_skip(c))
        return;
    if (c->fuse && T == 1 && lm_cuda_matvec_n(c, n, w, x, y))
        return;
    if (T >= LM_CUDA_GEMM_MIN_T && lm_cuda_gemm_n(c, n, w, x, T, y)) /* x converted once */
        return;
    for (int i = 0; i < n; i++)
        lm_cuda_linear(be, w[i], x, T, y[i]);
}

void lm_cuda_linear_glu(lm_backend *be, const lm_linear *gate, const lm_linear *up, const float *x, int T, lm_act act,
                        float limit, float *g_buf, float *u_buf, float *out) {
    cuda_backend *c = cu_be(be);
    if (lm_cuda_skip(c))
        return;
    if (c->fuse && T == 1 && lm_cuda_matvec_glu(c, gate, up, x, act, limit, out))
        return;
    const lm_linear *w[2] = {gate, up};
    float *y[2] = {g_buf, u_buf};
    lm_cuda_linear_n(be, 2, w, x, T, y);
    lm_cuda_glu(be, g_buf, u_buf, up->out, T, up->out, act, limit, out);
}

void lm_cuda_add_rmsnorm(lm_backend *be, float *x, const float *y, const float *w, int rows, int n, float eps,
                         float *h) {
    cuda_backend *c = cu_be(be);
    if (rows <= 0 || n <= 0 || lm_cuda_skip(c))
        return;
    if (!c->fuse) {
        lm_cuda_add(be, x, y, (size_t)rows * n);
        lm_cuda_rmsnorm(be, x, w, rows, n, eps, h);
        return;
    }
    lm_cuda_rms_rows(c, x, y, w, rows, n, eps, h);
}

/* kd[i] = k[i], vd[i] = v[i] for T rows of n floats; pos_d[t] = p0 + t */
__global__ void kv_put_f32(float *kd, float *vd, const float *__restrict__ k, const float *__restrict__ v, size_t n,
                           int32_t *pos_d, int T, int32_t p0) {
    lm_pdl_wait();
    lm_pdl_next();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        kd[i] = k[i];
        vd[i] = v[i];
    }
    if (i < (size_t)T)
        pos_d[i] = p0 + (int32_t)i;
}

int lm_cuda_kv_put(lm_backend *be, float *kd, float *vd, const float *k, const float *v, int T, int dim,
                   int32_t *pos_d, int32_t p0) {
    cuda_backend *c = cu_be(be);
    if (!c->fuse)
        return 0;
    if (lm_cuda_skip(c))
        return 1;
    size_t n = (size_t)T * dim;
    size_t work = n > (size_t)T ? n : (size_t)T;
    lm_cuda_launch(c, "kv_put_f32", kv_put_f32, lm_cuda_blocks(work, 256), 256, 0, kd, vd, k, v, n, pos_d, T, p0);
    return 1;
}
