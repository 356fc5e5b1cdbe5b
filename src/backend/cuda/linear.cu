/* Linear layers and embeddings over weights as stored (dense f32/f16/bf16 with an optional
 * input stride, MLX affine 2-8 bit, MXFP4), dequantized in the kernel. One token goes to
 * matvec.cu's streaming kernels, many tokens to gemm.cu (cuBLAS); what they do not handle runs
 * here: one warp per output row computes LIN_TT tokens at a time, so the weight row is read
 * once per LIN_TT tokens. */
#include "backend/cuda/cuda_internal.cuh"

#define LIN_TT 8     /* tokens per warp pass */
#define LIN_WARPS 8  /* warps (output rows) per block */

__global__ void linear_f32(lm_linear w, const float *__restrict__ x, int T, float *__restrict__ y) {
    int r = blockIdx.x * LIN_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    int t0 = blockIdx.y * LIN_TT;
    if (r >= w.out)
        return;
    int nt = T - t0 < LIN_TT ? T - t0 : LIN_TT;
    float acc[LIN_TT];
#pragma unroll
    for (int t = 0; t < LIN_TT; t++)
        acc[t] = 0.0f;
    for (int i = lane; i < w.in; i += 32) {
        float wv = weight_at(w, r, i);
#pragma unroll
        for (int t = 0; t < LIN_TT; t++)
            if (t < nt)
                acc[t] += wv * x[(size_t)(t0 + t) * w.in + i];
    }
    float b = w.bias ? w.bias[r] : 0.0f;
#pragma unroll
    for (int t = 0; t < LIN_TT; t++) {
        float s = warp_sum(acc[t]);
        if (lane == 0 && t < nt)
            y[(size_t)(t0 + t) * w.out + r] = s + b;
    }
}

static void linear_f32_launch(cuda_backend *c, const lm_linear *w, const float *x, int T, float *y) {
    dim3 grid(lm_cuda_blocks((size_t)w->out, LIN_WARPS), lm_cuda_blocks((size_t)T, LIN_TT));
    linear_f32<<<grid, LIN_WARPS * 32, 0, c->stream>>>(*w, x, T, y);
    lm_cuda_launched(c, "linear_f32");
}

void lm_cuda_linear(lm_backend *be, const lm_linear *w, const float *x, int T, float *y) {
    cuda_backend *c = cu_be(be);
    if (T <= 0 || w->out <= 0 || lm_cuda_skip(c))
        return;
    if (w->kind >= LM_W_COUNT) {
        lm_cuda_fail(c, LM_ERR_UNSUPPORTED, "linear: unknown weight format");
        return;
    }
    if (T == 1 && lm_cuda_matvec(c, w, x, y, lm_cuda_mv_plain))
        return;
    if (T >= LM_CUDA_GEMM_MIN_T && lm_cuda_gemm(c, w, x, T, y))
        return;
    linear_f32_launch(c, w, x, T, y);
}

/* --- embedding ------------------------------------------------------------------------------------ */

__global__ void embed_f32(lm_linear table, const int32_t *__restrict__ ids, float scale, float *__restrict__ out) {
    lm_pdl_wait();
    lm_pdl_next();
    int t = blockIdx.x, id = ids[t];
    for (int i = threadIdx.x; i < table.in; i += blockDim.x)
        out[(size_t)t * table.in + i] = weight_at(table, id, i) * scale;
}

static void embed_f32_launch(cuda_backend *c, const lm_linear *table, const int32_t *ids, int T, float scale,
                             float *out) {
    lm_cuda_launch(c, "embed_f32", embed_f32, T, 256, 0, *table, ids, scale, out);
}

void lm_cuda_embed(lm_backend *be, const lm_linear *table, const int32_t *ids, int T, float scale, float *out) {
    cuda_backend *c = cu_be(be);
    if (T <= 0 || lm_cuda_skip(c))
        return;
    embed_f32_launch(c, table, ids, T, scale, out);
}
