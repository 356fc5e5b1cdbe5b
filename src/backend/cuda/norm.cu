/* Row reductions: RMSNorm, Gemma 3n's magnitude matching and activation sparsity. One block
 * per row; sums in double as the CPU reference does. */
#include "backend/cuda/cuda_internal.cuh"

#define NORM_THREADS 256

/* x[r] += y[r] (when ADD); h[r] = x[r] / rms(x[r]) * w. Any n and alignment. */
template <bool ADD>
__global__ void rmsnorm_f32(float *x, const float *__restrict__ y, const float *__restrict__ w, int n, float eps,
                            float *h) {
    lm_pdl_wait();
    lm_pdl_next();
    float *xr = x + (size_t)blockIdx.x * n, *hr = h + (size_t)blockIdx.x * n;
    double ss = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i];
        if (ADD) {
            v += y[(size_t)blockIdx.x * n + i];
            xr[i] = v;
        }
        ss += (double)v * v;
    }
    ss = block_sum(ss);
    float inv = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) /* h may equal x: each element read then written by one thread */
        hr[i] = xr[i] * inv * (w ? w[i] : 1.0f);
}

/* The same over rows of float4 (n % 4 == 0, 16-byte aligned rows): each thread keeps its first
 * RN_V vectors and their weights in registers between the two passes and issues their loads
 * together, so a row costs about one memory round trip. */
#define RN_V 4

static __device__ __forceinline__ float4 rms_scale(float4 a, float inv, float4 s) {
    return make_float4(a.x * inv * s.x, a.y * inv * s.y, a.z * inv * s.z, a.w * inv * s.w);
}

template <bool ADD>
__global__ void rms_rows_f32(float *x, const float *__restrict__ y, const float *__restrict__ w, int n, float eps,
                             float *h) {
    lm_pdl_wait();
    lm_pdl_next();
    size_t off = (size_t)blockIdx.x * n;
    float4 *xr = (float4 *)(x + off), *hr = (float4 *)(h + off);
    const float4 *yr = (const float4 *)(y + (ADD ? off : 0)), *wr = (const float4 *)w;
    int n4 = n >> 2;
    float4 v[RN_V], s[RN_V]; /* x and the norm weights (loaded with x: no second round trip) */
    double ss = 0;
#pragma unroll
    for (int j = 0; j < RN_V; j++) {
        int i = threadIdx.x + j * blockDim.x;
        if (i < n4) {
            s[j] = w ? wr[i] : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
            v[j] = xr[i];
            if (ADD) {
                float4 b = yr[i];
                v[j].x += b.x, v[j].y += b.y, v[j].z += b.z, v[j].w += b.w;
                xr[i] = v[j];
            }
            ss += (double)v[j].x * v[j].x + (double)v[j].y * v[j].y + (double)v[j].z * v[j].z + (double)v[j].w * v[j].w;
        }
    }
    for (int i = threadIdx.x + RN_V * blockDim.x; i < n4; i += blockDim.x) {
        float4 a = xr[i];
        if (ADD) {
            float4 b = yr[i];
            a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w;
            xr[i] = a;
        }
        ss += (double)a.x * a.x + (double)a.y * a.y + (double)a.z * a.z + (double)a.w * a.w;
    }
    ss = block_sum(ss);
    float inv = 1.0f / sqrtf((float)(ss / n) + eps);
#pragma unroll
    for (int j = 0; j < RN_V; j++) { /* h may equal x: each element read, then written, by one thread */
        int i = threadIdx.x + j * blockDim.x;
        if (i < n4)
            hr[i] = rms_scale(v[j], inv, s[j]);
    }
    for (int i = threadIdx.x + RN_V * blockDim.x; i < n4; i += blockDim.x)
        hr[i] = rms_scale(xr[i], inv, w ? wr[i] : make_float4(1.0f, 1.0f, 1.0f, 1.0f));
}

void lm_cuda_rms_rows(cuda_backend *c, float *x, const float *y, const float *w, int rows, int n, float eps, float *h) {
    if (n % 4 || (((uintptr_t)x | (uintptr_t)y | (uintptr_t)w | (uintptr_t)h) & 15)) {
        lm_cuda_launch(c, "rmsnorm_f32", y ? rmsnorm_f32<true> : rmsnorm_f32<false>, rows, NORM_THREADS, 0, x, y, w,
                       n, eps, h);
        return;
    }
    int per = (n / 4 + 1) / 2, threads = (per + 31) / 32 * 32; /* two vectors a thread */
    threads = threads > 1024 ? 1024 : threads;
    lm_cuda_launch(c, "rms_rows_f32", y ? rms_rows_f32<true> : rms_rows_f32<false>, rows, threads, 0, x, y, w, n, eps,
                   h);
}

void lm_cuda_rmsnorm(lm_backend *be, const float *x, const float *w, int rows, int n, float eps, float *y) {
    cuda_backend *c = cu_be(be);
    if (rows > 0 && n > 0 && !lm_cuda_skip(c))
        lm_cuda_rms_rows(c, (float *)x, NULL, w, rows, n, eps, y); /* without y, x is only read */
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
