/* Prefill GEMMs on the tensor cores through cuBLAS: y[T,out] = x[T,in] W^T with bf16 operands
 * and f32 accumulation. The activations are split into two bf16 halves (hi + lo: 16 mantissa
 * bits, close to f32), so the result matches the f32 kernels to about 1e-5 relative at twice the
 * tensor-core work (one bf16 rounding of x moved the decode logits after a 300-token prefill by
 * 5e-3, over the fixtures' 2e-3). A bf16 weight is read as stored, any other
 * format (f16, MLX affine, MXFP4, strided experts) is dequantized to bf16 in chunks of rows
 * into scratch first. f32 weights keep linear.cu's exact kernel. */
#include <cublas_v2.h>
#include <stdio.h>

#include "backend/cuda/cuda_internal.cuh"

#define GEMM_WB_MAX ((size_t)256 << 20) /* bytes of dequantized weight per chunk */

static __device__ __forceinline__ uint16_t f32_bf16(float f) { /* round to nearest even (NaN stays NaN) */
    uint32_t u = __float_as_uint(f);
    return (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 0x40) : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

/* x = hi + lo, both bf16: hi[i] = bf16(x[i]), lo[i] = bf16(x[i] - hi[i]) (16 mantissa bits together) */
__global__ void to_bf16_split(const float *__restrict__ x, size_t n, uint16_t *__restrict__ hi, uint16_t *__restrict__ lo) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        uint16_t h = f32_bf16(x[i]);
        hi[i] = h;
        lo[i] = f32_bf16(x[i] - __uint_as_float((uint32_t)h << 16));
    }
}

__global__ void dequant_bf16(lm_linear w, int r0, int n, uint16_t *__restrict__ out) {
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= (size_t)n * w.in)
        return;
    int r = (int)(k / w.in), i = (int)(k % w.in);
    out[k] = f32_bf16(weight_at(w, r0 + r, i));
}

__global__ void add_bias(float *y, const float *__restrict__ b, int T, int out) {
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k < (size_t)T * out)
        y[k] += b[k % out];
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

/* y[:, r0:r0+n] = (hi + lo) W[r0:r0+n]^T, W rows as bf16 with leading dimension lda (elements):
 * two products, the second accumulated into the first. */
static int gemm_rows(cuda_backend *c, cublasHandle_t h, const uint16_t *wb, int lda, const uint16_t *xb, int T, int in,
                     int n, float *y, int ldy) {
    const float one = 1.0f, zero = 0.0f;
    const uint16_t *lo = xb + (size_t)T * in;
    return cublas_ok(c, cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, T, in, &one, wb, CUDA_R_16BF, lda, xb, CUDA_R_16BF,
                                     in, &zero, y, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     "cublasGemmEx") &&
           cublas_ok(c, cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, T, in, &one, wb, CUDA_R_16BF, lda, lo, CUDA_R_16BF,
                                     in, &one, y, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     "cublasGemmEx");
}

int lm_cuda_gemm(cuda_backend *c, const lm_linear *w, const float *x, int T, float *y) {
    if (w->kind == LM_W_DENSE && w->dtype == LM_DT_F32)
        return 0;
    cublasHandle_t h = handle(c);
    size_t nx = (size_t)T * w->in;
    uint16_t *xb = (uint16_t *)lm_cuda_scratch(c, LM_CUDA_SCR_XB, nx * 4);
    if (!h || !xb)
        return 1; /* the error is recorded */
    to_bf16_split<<<lm_cuda_blocks(nx, 256), 256, 0, c->stream>>>(x, nx, xb, xb + nx);
    lm_cuda_launched(c, "to_bf16_split");
    int direct = w->kind == LM_W_DENSE && w->dtype == LM_DT_BF16 && w->in_step <= 1 && w->w_row_bytes % 2 == 0;
    if (direct) {
        gemm_rows(c, h, (const uint16_t *)w->w, (int)(w->w_row_bytes / 2), xb, T, w->in, w->out, y, w->out);
    } else {
        size_t row_b = (size_t)w->in * 2;
        int chunk = (int)(GEMM_WB_MAX / row_b);
        if (chunk < 1)
            chunk = 1;
        if (chunk > w->out)
            chunk = w->out;
        uint16_t *wb = (uint16_t *)lm_cuda_scratch(c, LM_CUDA_SCR_WB, (size_t)chunk * row_b);
        if (!wb)
            return 1;
        for (int r0 = 0; r0 < w->out && !lm_cuda_skip(c); r0 += chunk) {
            int n = w->out - r0 < chunk ? w->out - r0 : chunk;
            size_t ne = (size_t)n * w->in;
            dequant_bf16<<<lm_cuda_blocks(ne, 256), 256, 0, c->stream>>>(*w, r0, n, wb);
            lm_cuda_launched(c, "dequant_bf16");
            gemm_rows(c, h, wb, w->in, xb, T, w->in, n, y + r0, w->out);
        }
    }
    if (w->bias) {
        add_bias<<<lm_cuda_blocks((size_t)T * w->out, 256), 256, 0, c->stream>>>(y, w->bias, T, w->out);
        lm_cuda_launched(c, "add_bias");
    }
    return 1;
}
