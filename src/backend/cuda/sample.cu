/* Greedy sampling on the device (backend.h's argmax op): the first maximum of log_softmax(x)
 * and its value, so that only 8 bytes come back per token instead of the logits. The host's
 * arithmetic (core/softmax.c) is kept: the maximum first, exp(x - max) summed in double,
 * lse = (float)(max + log(sum)), then the float values x - lse; only the order of the sum
 * differs (its last bits may move lse by one float step in rare cases).
 *
 * One launch over contiguous chunks, one block each. Every block writes its chunk's maximum m_b
 * and sum(exp(x - m_b)); the last block to finish (a ticket counter) combines them,
 * sum = sum_b s_b * exp(m_b - max), then looks for the first entry of the largest x - lse.
 * Rounding x - lse keeps the order of x, so the chunk holding it is the first one whose m_b - lse
 * equals max - lse, and the entry is the first of that chunk with that value. */
#include <math.h>

#include "backend/cuda/cuda_internal.cuh"

#define AM_THREADS 256
#define AM_V 4                          /* elements per thread kept in registers between two passes */
#define AM_CHUNK (AM_THREADS * AM_V)    /* elements per block, until the block count reaches its cap */

static __device__ __forceinline__ float block_max(float v) {
    __shared__ float part[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads(); /* part[] may still be read by a previous call */
    if (lane == 0)
        part[w] = v;
    __syncthreads();
    float m = -INFINITY;
    for (int i = 0; i < nw; i++)
        m = fmaxf(m, part[i]);
    return m;
}

static __device__ __forceinline__ int block_min(int v) {
    __shared__ int part[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    for (int o = 16; o > 0; o >>= 1)
        v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0)
        part[w] = v;
    __syncthreads();
    int m = part[0];
    for (int i = 1; i < nw; i++)
        m = min(m, part[i]);
    return m;
}

/* The last block: lse from the partials, then the first entry of the largest x - lse. */
static __device__ void argmax_finish(const float *__restrict__ x, int V, int chunk, lm_cuda_argmax_scratch *s,
                                     lm_argmax_out *out) {
    const volatile float *pm = s->max; /* written by other blocks: not from this SM's L1 */
    const volatile double *ps = s->sum;
    int nb = gridDim.x;
    float mx = -INFINITY;
    for (int k = threadIdx.x; k < nb; k += blockDim.x)
        mx = fmaxf(mx, pm[k]);
    mx = block_max(mx);
    if (mx == -INFINITY) { /* every entry -inf or NaN: the host leaves x as it is; no later entry exceeds x[0] */
        if (threadIdx.x == 0)
            out->token = 0, out->logprob = x[0];
        return;
    }
    double sum = 0;
    for (int k = threadIdx.x; k < nb; k += blockDim.x) {
        float mk = pm[k];
        double sk = ps[k];
        sum += mk == -INFINITY ? sk : sk * exp((double)mk - mx); /* a chunk of -inf/NaN: 0 or NaN as it is */
    }
    sum = block_sum(sum);
    float lse = (float)(mx + log(sum));
    if (isnan(lse)) { /* a NaN or +inf logit: every value is NaN and the host keeps entry 0 */
        if (threadIdx.x == 0)
            out->token = 0, out->logprob = x[0] - lse;
        return;
    }
    float best = mx - lse;
    int kf = nb;
    for (int k = threadIdx.x; k < nb; k += blockDim.x)
        if (pm[k] - lse == best && k < kf)
            kf = k;
    kf = block_min(kf);
    int lo = kf * chunk, hi = min(V, lo + chunk), first = V;
    for (int i = lo + threadIdx.x; i < hi; i += blockDim.x) /* each thread's first hit is its smallest */
        if (x[i] - lse == best) {
            first = i;
            break;
        }
    first = block_min(first);
    if (threadIdx.x == 0) {
        first = first < V ? first : 0; /* (always found: chunk kf holds an entry equal to its maximum) */
        out->token = first;
        out->logprob = x[first] - lse;
    }
}

__global__ void __launch_bounds__(AM_THREADS) argmax_f32(const float *__restrict__ x, int V, int chunk,
                                                         lm_cuda_argmax_scratch *s, lm_argmax_out *out) {
    lm_pdl_wait();
    lm_pdl_next();
    __shared__ int last;
    int lo = blockIdx.x * chunk, hi = min(V, lo + chunk);
    /* this chunk's maximum (NaN skipped, as the host's x > max) */
    float v[AM_V], m = -INFINITY;
#pragma unroll
    for (int j = 0; j < AM_V; j++) {
        int i = lo + threadIdx.x + j * AM_THREADS;
        v[j] = i < hi ? x[i] : -INFINITY;
        m = fmaxf(m, v[j]);
    }
    for (int i = lo + threadIdx.x + AM_CHUNK; i < hi; i += AM_THREADS)
        m = fmaxf(m, x[i]);
    m = block_max(m);
    /* sum(exp(x - m)) in double; a chunk of -inf/NaN sums its entries as they are (0 or NaN) */
    double ref = m == -INFINITY ? 0.0 : (double)m, sum = 0;
#pragma unroll
    for (int j = 0; j < AM_V; j++)
        if (lo + threadIdx.x + j * AM_THREADS < hi)
            sum += exp((double)v[j] - ref);
    for (int i = lo + threadIdx.x + AM_CHUNK; i < hi; i += AM_THREADS)
        sum += exp((double)x[i] - ref);
    sum = block_sum(sum);
    if (threadIdx.x == 0) {
        s->max[blockIdx.x] = m;
        s->sum[blockIdx.x] = sum;
        __threadfence(); /* the partials are visible before the ticket counts this block */
        last = atomicInc(&s->ticket, gridDim.x - 1) == gridDim.x - 1; /* wraps to 0 for the next launch */
    }
    __syncthreads();
    if (!last)
        return;
    __threadfence();
    argmax_finish(x, V, chunk, s, out);
}

static void argmax_f32_launch(cuda_backend *c, const float *x, int V, lm_argmax_out *out) {
    int nb = (int)lm_cuda_blocks((size_t)V, AM_CHUNK);
    nb = nb < LM_CUDA_ARGMAX_BLOCKS ? nb : LM_CUDA_ARGMAX_BLOCKS;
    int chunk = (int)(((size_t)V + nb - 1) / nb);
    lm_cuda_launch(c, "argmax_f32", argmax_f32, nb, AM_THREADS, 0, x, V, chunk, c->argmax, out);
}

void lm_cuda_argmax(lm_backend *be, const float *x, int V, lm_argmax_out *out) {
    cuda_backend *c = cu_be(be);
    if (lm_cuda_skip(c))
        return;
    if (V <= 0 || !c->argmax) {
        lm_cuda_fail(c, LM_ERR_INTERNAL, "argmax: an empty row or no scratch");
        return;
    }
    argmax_f32_launch(c, x, V, out);
}
