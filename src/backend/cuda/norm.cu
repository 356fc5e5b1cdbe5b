/* Row reductions: RMSNorm, Gemma 3n's magnitude matching and activation sparsity. One block
 * per row; sums in double as the CPU reference does. */
#include "backend/cuda/cuda_internal.cuh"

#define NORM_THREADS 256

__global__ void rmsnorm_f32(const float *x, const float *__restrict__ w, int n, float eps, float *y) {
    const float *xr = x + (size_t)blockIdx.x * n;
    float *yr = y + (size_t)blockIdx.x * n;
    double ss = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        ss += (double)xr[i] * xr[i];
    ss = block_sum(ss);
    float inv = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) /* y may equal x: each element read then written by one thread */
        yr[i] = xr[i] * inv * (w ? w[i] : 1.0f);
}

static void rmsnorm_f32_launch(cuda_backend *c, const float *x, const float *w, int rows, int n, float eps, float *y) {
    rmsnorm_f32<<<rows, NORM_THREADS, 0, c->stream>>>(x, w, n, eps, y);
    lm_cuda_launched(c, "rmsnorm_f32");
}

void lm_cuda_rmsnorm(lm_backend *be, const float *x, const float *w, int rows, int n, float eps, float *y) {
    cuda_backend *c = cu_be(be);
    if (rows > 0 && n > 0 && !lm_cuda_skip(c))
        rmsnorm_f32_launch(c, x, w, rows, n, eps, y);
}

/* --- Gemma 3n ------------------------------------------------------------------------------------- */

__global__ void rms_match_f32(float *y, const float *__restrict__ ref, int n) {
    float *yr = y + (size_t)blockIdx.x * n;
    const float *rr = ref + (size_t)blockIdx.x * n;
    double sr = 0, sy = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        sr += (double)rr[i] * rr[i];
        sy += (double)yr[i] * yr[i];
    }
    sr = block_sum(sr);
    sy = block_sum(sy);
    float target = (float)sqrt(sr / n), cur = (float)sqrt(sy / n);
    float den = sqrtf(fmaxf(cur * cur, 1e-5f));
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        yr[i] = yr[i] * target / den;
}

static void rms_match_f32_launch(cuda_backend *c, float *y, const float *ref, int T, int n) {
    rms_match_f32<<<T, NORM_THREADS, 0, c->stream>>>(y, ref, n);
    lm_cuda_launched(c, "rms_match_f32");
}

void lm_cuda_rms_match(lm_backend *be, float *y, const float *ref, int T, int n) {
    cuda_backend *c = cu_be(be);
    if (T > 0 && n > 0 && !lm_cuda_skip(c))
        rms_match_f32_launch(c, y, ref, T, n);
}

__global__ void sparsify_f32(float *x, int n, float mult) {
    float *r = x + (size_t)blockIdx.x * n;
    double mean = 0, var = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        mean += r[i];
    mean = block_sum(mean) / n;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        var += (r[i] - mean) * (r[i] - mean);
    var = block_sum(var);
    float cut = (float)(mean + sqrt(var / n) * mult);
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        r[i] = r[i] > cut ? r[i] - cut : 0.0f;
}

static void sparsify_f32_launch(cuda_backend *c, float *x, int T, int n, float mult) {
    sparsify_f32<<<T, NORM_THREADS, 0, c->stream>>>(x, n, mult);
    lm_cuda_launched(c, "sparsify_f32");
}

void lm_cuda_sparsify(lm_backend *be, float *x, int T, int n, float mult) {
    cuda_backend *c = cu_be(be);
    if (T > 0 && n > 0 && !lm_cuda_skip(c))
        sparsify_f32_launch(c, x, T, n, mult);
}
