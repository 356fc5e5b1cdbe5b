/* Mixture of experts: top-k routing (one thread per token, the CPU's selection order) and the
 * gather/scatter of token rows around each expert's matmuls. */
#include <math.h>

#include "backend/cuda/cuda_internal.cuh"

__global__ void moe_route_f32(const float *logits, int T, int E, int K, int topk_softmax, int norm_topk, int32_t *idx,
                              float *w) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T)
        return;
    const float *lg = logits + (size_t)t * E;
    int32_t *ti = idx + (size_t)t * K;
    float *tw = w + (size_t)t * K;
    float mx = -INFINITY, sum = 0;
    for (int e = 0; e < E; e++)
        mx = lg[e] > mx ? lg[e] : mx;
    for (int e = 0; e < E; e++)
        sum += topk_softmax ? lg[e] : expf(lg[e] - mx);
    for (int k = 0; k < K; k++) { /* top-k by selection; ties keep the lower index */
        int b = -1;
        float bp = 0;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int j = 0; j < k; j++)
                taken |= ti[j] == e;
            float pe = topk_softmax ? lg[e] : expf(lg[e] - mx);
            if (!taken && (b < 0 || pe > bp)) {
                b = e;
                bp = pe;
            }
        }
        ti[k] = b;
        tw[k] = topk_softmax ? bp : bp / sum;
    }
    if (topk_softmax) {
        float m2 = tw[0], s2 = 0;
        for (int k = 0; k < K; k++)
            s2 += (tw[k] = expf(tw[k] - m2));
        for (int k = 0; k < K; k++)
            tw[k] /= s2;
    } else if (norm_topk) {
        float s2 = 0;
        for (int k = 0; k < K; k++)
            s2 += tw[k];
        for (int k = 0; k < K; k++)
            tw[k] /= s2;
    }
}

void lm_cuda_moe_route(lm_backend *be, const float *logits, int T, int E, int K, int topk_softmax, int norm_topk,
                       int32_t *idx, float *w) {
    cuda_backend *c = cu_be(be);
    if (T <= 0 || lm_cuda_skip(c))
        return;
    if (E <= 0 || K <= 0 || K > E || E > LM_MOE_MAX_EXPERTS) {
        lm_cuda_fail(c, LM_ERR_UNSUPPORTED, "moe_route: bad expert counts");
        return;
    }
    moe_route_f32<<<lm_cuda_blocks((size_t)T, 64), 64, 0, c->stream>>>(logits, T, E, K, topk_softmax, norm_topk, idx, w);
    lm_cuda_launched(c, "moe_route_f32");
}

__global__ void gather_rows_f32(const float *src, const int32_t *rows, int dim, float *dst) {
    const float *s = src + (size_t)rows[blockIdx.x] * dim;
    float *d = dst + (size_t)blockIdx.x * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        d[i] = s[i];
}

void lm_cuda_gather_rows(lm_backend *be, const float *src, const int32_t *rows, int n, int dim, float *dst) {
    cuda_backend *c = cu_be(be);
    if (n <= 0 || dim <= 0 || lm_cuda_skip(c))
        return;
    gather_rows_f32<<<n, 256, 0, c->stream>>>(src, rows, dim, dst);
    lm_cuda_launched(c, "gather_rows_f32");
}

__global__ void scatter_add_rows_f32(float *dst, const float *src, const int32_t *rows, const float *w, int dim) {
    float *d = dst + (size_t)rows[blockIdx.x] * dim;
    const float *s = src + (size_t)blockIdx.x * dim;
    float wr = w[blockIdx.x];
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        d[i] += wr * s[i];
}

void lm_cuda_scatter_add_rows(lm_backend *be, float *dst, const float *src, const int32_t *rows, const float *w, int n,
                              int dim) {
    cuda_backend *c = cu_be(be);
    if (n <= 0 || dim <= 0 || lm_cuda_skip(c))
        return;
    scatter_add_rows_f32<<<n, 256, 0, c->stream>>>(dst, src, rows, w, dim);
    lm_cuda_launched(c, "scatter_add_rows_f32");
}
