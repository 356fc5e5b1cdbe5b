/* Prefill GEMMs on the tensor cores through cuBLAS: y[T,out] = x[T,in] W^T with f16 operands and
 * f32 accumulation. f16 keeps 11 significant bits of x (bf16: 8; one bf16 rounding of x moved the
 * decode logits after a 300-token prefill by 5e-3, over the fixtures' 2e-3). Each row of x is
 * scaled by a power of two when its largest magnitude would leave f16's comfortable range (above
 * 2^15 or below 2^-7); the scale is undone on y afterwards (exact). Dense bf16 weights are stored
 * as f16 on the device when every value fits (lm_cuda_weights_to_f16, at load) and are read as
 * stored; any other format (MLX affine, MXFP4, strided experts) is dequantized to f16 in chunks
 * of rows into scratch first. A bf16 weight with values beyond f16's range keeps bf16 and x goes
 * in as two bf16 halves (hi + lo: 16 significant bits) at twice the work. f32 weights keep
 * linear.cu's exact kernel. */
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <stdio.h>

#include "backend/cuda/cuda_internal.cuh"

#define GEMM_WB_MAX ((size_t)256 << 20) /* bytes of dequantized weight per chunk */
#define FINISH_BLOCKS 264                /* gemm_finish: two per H200 multiprocessor, grid-stride */
#define F16_HI_EXP 15                   /* rows whose max magnitude is >= 2^15 are scaled down */
#define F16_LO_EXP (-7)                 /* and those below 2^-7 up, to 2^14 <= max < 2^15 */

static __device__ __forceinline__ uint16_t f32_bf16(float f) { /* round to nearest even (NaN stays NaN) */
    uint32_t u = __float_as_uint(f);
    return (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 0x40) : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

static __device__ __forceinline__ uint16_t f32_f16(float f) { return __half_as_ushort(__float2half_rn(f)); }

/* x = hi + lo, both bf16: hi[i] = bf16(x[i]), lo[i] = bf16(x[i] - hi[i]) (16 mantissa bits together) */
__global__ void to_bf16_split(const float *__restrict__ x, size_t n, uint16_t *__restrict__ hi, uint16_t *__restrict__ lo) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        uint16_t h = f32_bf16(x[i]);
        hi[i] = h;
        lo[i] = f32_bf16(x[i] - __uint_as_float((uint32_t)h << 16));
    }
}

/* One block per row t of x [T, in]: xh[t] = x[t] * 2^e as f16, with e = 0 unless the row's largest
 * finite magnitude lies outside [2^F16_LO_EXP, 2^F16_HI_EXP); then inv[t] = 2^-e and *scaled = 1.
 * V: elements per load (4: in % 4 == 0 and x 16-byte aligned). */
template <int V>
__global__ void to_f16_rows(const float *__restrict__ x, int in, uint16_t *__restrict__ xh, float *__restrict__ inv,
                            int *__restrict__ scaled) {
    __shared__ float part[32];
    const float *xr = x + (size_t)blockIdx.x * in;
    uint16_t *hr = xh + (size_t)blockIdx.x * in;
    float m = 0.0f;
    for (int i = threadIdx.x * V; i < in; i += blockDim.x * V) {
        float v[V];
        if constexpr (V == 4) {
            float4 q = *(const float4 *)(xr + i);
            v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
        } else {
            v[0] = xr[i];
        }
#pragma unroll
        for (int j = 0; j < V; j++)
            if (fabsf(v[j]) <= 3.0e38f) /* finite: inf and NaN pass through unscaled */
                m = fmaxf(m, fabsf(v[j]));
    }
    m = warp_max(m);
    if ((threadIdx.x & 31) == 0)
        part[threadIdx.x >> 5] = m;
    __syncthreads();
    m = 0.0f;
    for (int w = 0; w < (int)(blockDim.x + 31) / 32; w++)
        m = fmaxf(m, part[w]);
    int k = 0, e = 0;
    if (m > 0.0f) {
        frexpf(m, &k); /* m in [2^(k-1), 2^k) */
        if (k > F16_HI_EXP || k <= F16_LO_EXP)
            e = F16_HI_EXP - k;
    }
    float s = ldexpf(1.0f, e);
    for (int i = threadIdx.x * V; i < in; i += blockDim.x * V) { /* the row is in L1/L2 now */
        if constexpr (V == 4) {
            float4 q = *(const float4 *)(xr + i);
            *(uint2 *)(hr + i) = make_uint2((uint32_t)f32_f16(q.x * s) | (uint32_t)f32_f16(q.y * s) << 16,
                                            (uint32_t)f32_f16(q.z * s) | (uint32_t)f32_f16(q.w * s) << 16);
        } else {
            hr[i] = f32_f16(xr[i] * s);
        }
    }
    if (threadIdx.x == 0) {
        inv[blockIdx.x] = ldexpf(1.0f, -e);
        if (e)
            *scaled = 1;
    }
}

/* y[t] *= inv[t] when any row was scaled, then + bias; nothing to do (one flag read) otherwise. */
__global__ void gemm_finish(float *y, const float *__restrict__ inv, const int *__restrict__ scaled,
                            const float *__restrict__ b, int T, int out) {
    int sc = inv && *scaled;
    if (!sc && !b)
        return;
    size_t n = (size_t)T * out;
    for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (size_t)gridDim.x * blockDim.x) {
        float v = y[k];
        if (sc)
            v *= inv[k / out];
        if (b)
            v += b[k % out];
        y[k] = v;
    }
}

/* W[r0 .. r0+n) as f16 (any stored format). */
__global__ void dequant_f16(lm_linear w, int r0, int n, uint16_t *__restrict__ out) {
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= (size_t)n * w.in)
        return;
    int r = (int)(k / w.in), i = (int)(k % w.in);
    out[k] = f32_f16(weight_at(w, r0 + r, i));
}

/* MLX affine 4 or 8 bit (BITS) rows [r0, r0+n) as f16: one thread per 32-bit word of codes (all of
 * its values share a scale group), 8 or 4 values out. */
template <int BITS> __global__ void dequant_affine_f16(lm_linear w, int r0, int n, uint16_t *__restrict__ out) {
    constexpr int PER = 32 / BITS;
    int words = w.in / PER;
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= (size_t)n * words)
        return;
    int r = (int)(k / words), i = (int)(k % words) * PER, g = i / w.group;
    uint32_t q = ((const uint32_t *)((const uint8_t *)w.w + (size_t)(r0 + r) * w.w_row_bytes))[k % words];
    const uint8_t *s = (const uint8_t *)w.scales + (size_t)(r0 + r) * w.s_row_bytes;
    const uint8_t *b = (const uint8_t *)w.biases + (size_t)(r0 + r) * w.s_row_bytes;
    float sc = scalar_at(s, w.dtype, (size_t)g), bi = scalar_at(b, w.dtype, (size_t)g);
    uint32_t h[PER / 2];
#pragma unroll
    for (int j = 0; j < PER; j += 2) {
        float v0 = (float)((q >> (BITS * j)) & ((1u << BITS) - 1)) * sc + bi;
        float v1 = (float)((q >> (BITS * (j + 1))) & ((1u << BITS) - 1)) * sc + bi;
        h[j / 2] = (uint32_t)f32_f16(v0) | (uint32_t)f32_f16(v1) << 16;
    }
    uint16_t *o = out + (size_t)r * w.in + i;
    if constexpr (BITS == 4)
        *(uint4 *)o = make_uint4(h[0], h[1], h[2], h[3]);
    else
        *(uint2 *)o = make_uint2(h[0], h[1]);
}

/* In place: n bf16 values become f16 when *ok (every finite value fits; set by f16_fits). */
__global__ void f16_fits(const uint16_t *__restrict__ p, size_t n, int *bad) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = fabsf(__uint_as_float((uint32_t)p[i] << 16));
        if (v > 65504.0f && v <= 3.0e38f)
            *bad = 1;
    }
}

__global__ void bf16_to_f16(uint16_t *p, size_t n, const int *__restrict__ bad) {
    if (*bad)
        return;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = f32_f16(__uint_as_float((uint32_t)p[i] << 16));
}

static int cublas_ok(cuda_backend *c, cublasStatus_t s, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS)
        return 1;
    char msg[160];
    snprintf(msg, sizeof msg, "%s failed: cuBLAS status %d", what, (int)s);
    lm_cuda_fail(c, LM_ERR_DEVICE, msg);
    return 0;
}

static cublasHandle_t handle(cuda_backend *c) {
    if (!c->cublas) {
        cublasHandle_t h;
        if (!cublas_ok(c, cublasCreate(&h), "cublasCreate"))
            return NULL;
        if (!cublas_ok(c, cublasSetStream(h, c->stream), "cublasSetStream")) {
            cublasDestroy(h);
            return NULL;
        }
        c->cublas = h;
    }
    return (cublasHandle_t)c->cublas;
}

void lm_cuda_gemm_free(cuda_backend *c) {
    if (c->cublas)
        cublasDestroy((cublasHandle_t)c->cublas);
    c->cublas = NULL;
}

/* y[:, r0:r0+n] = x W[r0:r0+n]^T with W rows of `wt` (CUDA_R_16F or CUDA_R_16BF) and leading
 * dimension lda (elements); x is one f16 matrix, or (bf16) hi then lo, the second product
 * accumulated into the first. */
static int gemm_rows(cuda_backend *c, cublasHandle_t h, cudaDataType wt, const uint16_t *wb, int lda,
                     const uint16_t *xb, int T, int in, int n, float *y, int ldy) {
    const float one = 1.0f, zero = 0.0f;
    int ok = cublas_ok(c, cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, T, in, &one, wb, wt, lda, xb, wt, in, &zero, y,
                                       CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                       "cublasGemmEx");
    if (ok && wt == CUDA_R_16BF)
        ok = cublas_ok(c, cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, T, in, &one, wb, wt, lda, xb + (size_t)T * in, wt,
                                       in, &one, y, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                       "cublasGemmEx");
    return ok;
}

/* Dense 16-bit rows cuBLAS can read as stored. */
static int rows_as_stored(const lm_linear *w) {
    return w->kind == LM_W_DENSE && w->in_step <= 1 && w->w_row_bytes % 2 == 0 &&
           (w->dtype == LM_DT_BF16 || w->dtype == LM_DT_F16);
}

/* How a weight goes through cuBLAS: -1 not at all (f32: linear.cu's kernel), 1 bf16 with x in
 * two halves, 0 f16. */
static int gemm_mode(const lm_linear *w) {
    if (w->kind == LM_W_DENSE && w->dtype == LM_DT_F32)
        return -1;
    return rows_as_stored(w) && w->dtype == LM_DT_BF16;
}

/* y = x W^T (+ bias) from x already converted (xb; f16 mode: inv and scaled too). */
static void gemm_one(cuda_backend *c, cublasHandle_t h, const lm_linear *w, int split, const uint16_t *xb,
                     const float *inv, const int *scaled, int T, float *y) {
    cudaDataType wt = split ? CUDA_R_16BF : CUDA_R_16F;
    if (rows_as_stored(w)) {
        gemm_rows(c, h, wt, (const uint16_t *)w->w, (int)(w->w_row_bytes / 2), xb, T, w->in, w->out, y, w->out);
    } else {
        size_t row_b = (size_t)w->in * 2;
        int chunk = (int)(GEMM_WB_MAX / row_b);
        if (chunk < 1)
            chunk = 1;
        if (chunk > w->out)
            chunk = w->out;
        uint16_t *wb = (uint16_t *)lm_cuda_scratch(c, LM_CUDA_SCR_WB, (size_t)chunk * row_b);
        if (!wb)
            return;
        for (int r0 = 0; r0 < w->out && !lm_cuda_skip(c); r0 += chunk) {
            int n = w->out - r0 < chunk ? w->out - r0 : chunk;
            size_t ne = (size_t)n * w->in;
            if (w->kind == LM_W_AFFINE && (w->bits == 4 || w->bits == 8) && w->in % 32 == 0 &&
                w->w_row_bytes % 4 == 0 && ((uintptr_t)w->w & 3) == 0) {
                size_t nw = ne * w->bits / 32;
                if (w->bits == 4)
                    dequant_affine_f16<4><<<lm_cuda_blocks(nw, 256), 256, 0, c->stream>>>(*w, r0, n, wb);
                else
                    dequant_affine_f16<8><<<lm_cuda_blocks(nw, 256), 256, 0, c->stream>>>(*w, r0, n, wb);
            } else {
                dequant_f16<<<lm_cuda_blocks(ne, 256), 256, 0, c->stream>>>(*w, r0, n, wb);
            }
            lm_cuda_launched(c, "dequant_f16");
            gemm_rows(c, h, wt, wb, w->in, xb, T, w->in, n, y + r0, w->out);
        }
    }
    if (!split || w->bias) { /* usually every block only reads the flag */
        gemm_finish<<<FINISH_BLOCKS, 256, 0, c->stream>>>(y, inv, scaled, w->bias, T, w->out);
        lm_cuda_launched(c, "gemm_finish");
    }
}

int lm_cuda_gemm_n(cuda_backend *c, int n, const lm_linear *const *w, const float *x, int T, float *const *y) {
    int split = gemm_mode(w[0]);
    for (int i = 1; i < n; i++)
        if (gemm_mode(w[i]) != split || w[i]->in != w[0]->in)
            return 0;
    if (split < 0)
        return 0;
    cublasHandle_t h = handle(c);
    int in = w[0]->in;
    size_t nx = (size_t)T * in, xb_bytes = (nx * (split ? 4 : 2) + 15) & ~(size_t)15;
    uint8_t *scr = (uint8_t *)lm_cuda_scratch(c, LM_CUDA_SCR_XB, xb_bytes + (size_t)T * 4 + 16);
    if (!h || !scr)
        return 1; /* the error is recorded */
    uint16_t *xb = (uint16_t *)scr;
    float *inv = split ? NULL : (float *)(scr + xb_bytes);
    int *scaled = (int *)(scr + xb_bytes + (size_t)T * 4);
    if (split) {
        to_bf16_split<<<lm_cuda_blocks(nx, 256), 256, 0, c->stream>>>(x, nx, xb, xb + nx);
        lm_cuda_launched(c, "to_bf16_split");
    } else {
        lm_cuda_check(c, cudaMemsetAsync(scaled, 0, sizeof(int), c->stream), "cudaMemsetAsync");
        if (in % 4 == 0 && ((uintptr_t)x & 15) == 0)
            to_f16_rows<4><<<(unsigned)T, 256, 0, c->stream>>>(x, in, xb, inv, scaled);
        else
            to_f16_rows<1><<<(unsigned)T, 256, 0, c->stream>>>(x, in, xb, inv, scaled);
        lm_cuda_launched(c, "to_f16_rows");
    }
    for (int i = 0; i < n && !lm_cuda_skip(c); i++)
        gemm_one(c, h, w[i], split, xb, inv, scaled, T, y[i]);
    return 1;
}

int lm_cuda_gemm(cuda_backend *c, const lm_linear *w, const float *x, int T, float *y) {
    return lm_cuda_gemm_n(c, 1, &w, x, T, &y);
}

/* At load: a bf16 weight of n values at device address p becomes f16 in place when every finite
 * value fits f16's range (values below 2^-14 lose bits: at most 2^-25 absolute). Returns 1 when
 * converted, 0 when kept (or after an error, which is recorded). */
int lm_cuda_weights_to_f16(lm_backend *be, void *p, size_t n) {
    cuda_backend *c = cu_be(be);
    int *bad = (int *)lm_cuda_scratch(c, LM_CUDA_SCR_XB, sizeof(int));
    if (!n || !bad || !lm_cuda_check(c, cudaMemsetAsync(bad, 0, sizeof(int), c->stream), "cudaMemsetAsync"))
        return 0;
    unsigned blocks = lm_cuda_blocks(n, 256);
    if (blocks > 8192)
        blocks = 8192;
    f16_fits<<<blocks, 256, 0, c->stream>>>((const uint16_t *)p, n, bad);
    lm_cuda_launched(c, "f16_fits");
    bf16_to_f16<<<blocks, 256, 0, c->stream>>>((uint16_t *)p, n, bad);
    lm_cuda_launched(c, "bf16_to_f16");
    int h_bad = 1;
    if (!lm_cuda_check(c, cudaMemcpyAsync(&h_bad, bad, sizeof(int), cudaMemcpyDeviceToHost, c->stream), "download") ||
        !lm_cuda_check(c, cudaStreamSynchronize(c->stream), "bf16_to_f16"))
        return 0;
    return !h_bad;
}
