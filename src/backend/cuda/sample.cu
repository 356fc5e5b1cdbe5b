/* Greedy picks and sampling on the device (backend.h's argmax and sample ops; the sample op is
 * described at its section below). Greedy (argmax op): the first maximum of log_softmax(x)
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
#include <cub/cub.cuh>
#include <math.h>

#include "backend/cuda/cuda_internal.cuh"

#define AM_THREADS 256
#define AM_V 4                          /* elements per thread kept in registers between two passes */
#define AM_CHUNK (AM_THREADS * AM_V)    /* elements per block, until the block count reaches its cap */

/* v reduced over the block with op (every thread gets the result). */
template <typename T, typename Op>
static __device__ __forceinline__ T block_reduce(T v, Op op) {
    __shared__ T part[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    for (int o = 16; o > 0; o >>= 1)
        v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads(); /* part[] may still be read by a previous call */
    if (lane == 0)
        part[w] = v;
    __syncthreads();
    T r = part[0];
    for (int i = 1; i < nw; i++)
        r = op(r, part[i]);
    return r;
}

struct op_max { /* NaN skipped */
    __device__ __forceinline__ double operator()(double a, double b) const { return fmax(a, b); }
};
struct op_min {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a < b ? a : b; }
};
struct op_add {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};

/* (written out: through block_reduce, ptxas spilled registers in argmax_f32) */
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
static __device__ __forceinline__ int block_min(int v) { return block_reduce(v, op_min()); }

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

/* --- sampling (backend.h's sample op) ----------------------------------------------------------
 * The host's chain (generate/sampler.c) on the device, one block per pass (a few passes over the
 * row, tens of microseconds, against a download of the row and the host's passes):
 *  1. samp_lse: lse as above, lp = x - lse, ids 0..V-1;
 *  2. CUB's radix sort of (lp, id) by lp, larger first; it is stable, so ties keep the lower id
 *     first: the host's order (`before`);
 *  3. samp_cut: the kept prefix of that order, L tokens: top-p keeps a token while the mass
 *     ranked above it is below sum - (1 - top_p) (the host's ascending cumsum > 1 - top_p),
 *     min-p those with lp >= top + log(min_p) or among the min_keep first, top-k the k first;
 *  4. samp_pick: the categorical draw over the kept tokens in id order, as lm_samp_categorical:
 *     the first whose running sum of exp(lp / temp - max) exceeds u * sum.
 * Without top-p, min-p and top-k (mlx-lm's default: temperature alone) every token is kept:
 * samp_lse says so and steps 2 and 3 are skipped. */
#define SP_THREADS 1024

typedef struct samp_state {
    float lse;     /* NaN: every lp is NaN (a NaN or +inf logit); the pick is token 0 */
    int all_ninf;  /* every logit -inf: lp = x, the pick is token 0 */
    int L;         /* kept tokens: the first L of the order */
    float bv;      /* the last kept (value, id) */
    int bi;
} samp_state;

/* Exclusive prefix sum over the block (thread order) of v; *total gets the block's sum. */
static __device__ __forceinline__ double block_scan_d(double v, double *total) {
    __shared__ double part[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    double inc = v;
    for (int o = 1; o < 32; o <<= 1) {
        double t = __shfl_up_sync(0xffffffffu, inc, o);
        if (lane >= o)
            inc += t;
    }
    __syncthreads();
    if (lane == 31)
        part[w] = inc;
    __syncthreads();
    double before = 0, all = 0;
    for (int i = 0; i < nw; i++) {
        if (i < w)
            before += part[i];
        all += part[i];
    }
    *total = all;
    return before + inc - v;
}

static __device__ __forceinline__ float sort_key(float v) { return isnan(v) ? -INFINITY : v; }

__global__ void __launch_bounds__(SP_THREADS) samp_lse(const float *__restrict__ x, int V, float *lp, int *ids,
                                                       int keep_all, samp_state *st) {
    lm_pdl_wait();
    lm_pdl_next();
    float m = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        m = fmaxf(m, x[i]); /* NaN skipped, as the host's x > max */
    m = block_max(m);
    double sum = 0;
    if (m != -INFINITY)
        for (int i = threadIdx.x; i < V; i += blockDim.x)
            sum += exp((double)x[i] - m);
    sum = block_sum(sum);
    float lse = m == -INFINITY ? 0.0f : (float)(m + log(sum)); /* all -inf: x stays as it is */
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        lp[i] = sort_key(x[i] - lse);
        if (!keep_all)
            ids[i] = i;
    }
    if (threadIdx.x == 0) {
        st->lse = lse, st->all_ninf = m == -INFINITY;
        if (keep_all) /* what samp_cut finds when nothing is cut: every (value, id) ranks at or before the last */
            st->L = V, st->bv = -INFINITY, st->bi = V - 1;
    }
}

__global__ void __launch_bounds__(SP_THREADS) samp_cut(const float *__restrict__ key, const int *__restrict__ id,
                                                       int V, lm_sample_args a, samp_state *st) {
    int L = V;
    if (a.top_p > 0 && a.top_p < 1) {
        double tot = 0;
        for (int i = threadIdx.x; i < V; i += blockDim.x)
            tot += exp((double)key[i]);
        tot = block_sum(tot);
        double lim = tot - (double)(1.0f - a.top_p), above = 0; /* kept while the mass above < lim */
        __shared__ int cut;
        if (threadIdx.x == 0)
            cut = V;
        __syncthreads();
        for (int c0 = 0; c0 < V; c0 += blockDim.x) { /* chunks of the order until the cut */
            int i = c0 + threadIdx.x;
            double p = i < V ? exp((double)key[i]) : 0.0, all;
            double ab = above + block_scan_d(p, &all);
            if (i < V && !(ab < lim))
                atomicMin(&cut, i);
            __syncthreads();
            if (cut < V)
                break;
            above += all;
        }
        L = cut;
    }
    if (a.min_p != 0) {
        float thr = key[0] + (float)log((double)a.min_p);
        int n = 0;
        for (int i = threadIdx.x; i < V; i += blockDim.x)
            n += key[i] >= thr;
        n = block_reduce(n, op_add());
        int keep = a.min_keep > 1 ? min(a.min_keep, V) : 0;
        L = min(L, max(n, keep));
    }
    if (a.top_k > 0 && a.top_k < V)
        L = min(L, a.top_k);
    if (threadIdx.x == 0) {
        L = max(L, 1);
        st->L = L, st->bv = key[L - 1], st->bi = id[L - 1];
    }
}

__global__ void __launch_bounds__(SP_THREADS) samp_pick(const float *__restrict__ lp, int V, lm_sample_args a,
                                                        const samp_state *st, lm_argmax_out *out) {
    float bv = st->bv;
    int bi = st->bi;
    if (st->all_ninf || isnan(st->lse)) {
        if (threadIdx.x == 0)
            out->token = 0, out->logprob = st->all_ninf ? lp[0] : __int_as_float(0x7fc00000);
        return;
    }
    /* kept: ranked at or before the last kept (value, id); lp holds no NaN here */
    double inv = 1.0 / a.temp, mx = -INFINITY;
    int chunk = (V + blockDim.x - 1) / blockDim.x, lo = threadIdx.x * chunk, hi = min(V, lo + chunk);
#define SP_KEPT(i) (lp[i] > bv || (lp[i] == bv && (i) <= bi))
    for (int i = lo; i < hi; i++)
        if (SP_KEPT(i))
            mx = fmax(mx, lp[i] * inv);
    mx = block_reduce(mx, op_max());
    __shared__ int pick;
    if (threadIdx.x == 0)
        pick = -1;
    __syncthreads();
    if (mx != -INFINITY) {
        double loc = 0;
        int last = -1;
        for (int i = lo; i < hi; i++)
            if (SP_KEPT(i)) {
                double w = exp(lp[i] * inv - mx);
                if (w > 0)
                    loc += w, last = i;
            }
        double sum, pre = block_scan_d(loc, &sum), target = a.u * sum;
        if (pre <= target && pre + loc > target) { /* the crossing lies in this thread's ids (one thread) */
            double cum = pre;
            int hit = last; /* (its own running sum may stop a rounding short of target) */
            for (int i = lo; i < hi; i++)
                if (SP_KEPT(i)) {
                    double w = exp(lp[i] * inv - mx);
                    if (w <= 0)
                        continue;
                    cum += w;
                    if (cum > target) {
                        hit = i;
                        break;
                    }
                }
            pick = hit;
        }
        __syncthreads();
        if (pick < 0) { /* rounding kept the sum from exceeding target: the last positive weight */
            __shared__ int lastk;
            if (threadIdx.x == 0)
                lastk = -1;
            __syncthreads();
            if (last >= 0)
                atomicMax(&lastk, last);
            __syncthreads();
            if (threadIdx.x == 0)
                pick = lastk;
            __syncthreads();
        }
    }
#undef SP_KEPT
    if (threadIdx.x == 0) {
        int t = pick >= 0 ? pick : 0; /* (every kept weight underflowed: not reached with L >= 1) */
        out->token = t;
        out->logprob = lp[t];
    }
}

void lm_cuda_sample(lm_backend *be, const float *x, int V, const lm_sample_args *a, lm_argmax_out *out) {
    cuda_backend *c = cu_be(be);
    if (lm_cuda_skip(c))
        return;
    if (V <= 0 || !(a->temp > 0)) {
        lm_cuda_fail(c, LM_ERR_INTERNAL, "sample: an empty row or temp <= 0");
        return;
    }
    size_t cub_bytes = 0;
    lm_cuda_check(c,
                  cub::DeviceRadixSort::SortPairsDescending(NULL, cub_bytes, (const float *)NULL, (float *)NULL,
                                                            (const int *)NULL, (int *)NULL, V, 0, 32, c->stream),
                  "sample: sort size");
    size_t row = ((size_t)V * 4 + 255) & ~(size_t)255;
    uint8_t *s = (uint8_t *)lm_cuda_scratch(c, LM_CUDA_SCR_SAMPLE, 4 * row + 256 + cub_bytes);
    if (!s)
        return;
    float *lp = (float *)s, *key = (float *)(s + row);
    int *ids = (int *)(s + 2 * row), *ids_sorted = (int *)(s + 3 * row);
    samp_state *st = (samp_state *)(s + 4 * row);
    void *tmp = s + 4 * row + 256;
    int keep_all = !(a->top_p > 0 && a->top_p < 1) && a->min_p == 0 && !(a->top_k > 0 && a->top_k < V);
    lm_cuda_launch(c, "samp_lse", samp_lse, 1, SP_THREADS, 0, x, V, lp, ids, keep_all, st);
    if (!keep_all) {
        lm_cuda_check(c, cub::DeviceRadixSort::SortPairsDescending(tmp, cub_bytes, lp, key, ids, ids_sorted, V, 0, 32,
                                                                   c->stream),
                      "sample: sort");
        samp_cut<<<1, SP_THREADS, 0, c->stream>>>(key, ids_sorted, V, *a, st);
        lm_cuda_launched(c, "samp_cut");
    }
    samp_pick<<<1, SP_THREADS, 0, c->stream>>>(lp, V, *a, st, out);
    lm_cuda_launched(c, "samp_pick");
}

/* --- logit processors ------------------------------------------------------------------------------
 * ops are sorted by token (backend.h): the thread of each token's first op applies that token's
 * ops in order, with the host's float operations (IEEE division, no contraction). */
__global__ void edit_logits_k(float *x, const lm_logit_op *__restrict__ ops, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    lm_pdl_wait();
    lm_pdl_next();
    if (i >= n || (i > 0 && ops[i - 1].token == ops[i].token))
        return;
    int t = ops[i].token;
    float v = x[t];
    for (int j = i; j < n && ops[j].token == t; j++) {
        float p = ops[j].v;
        if (ops[j].kind == LM_LOGIT_ADD)
            v = __fadd_rn(v, p);
        else if (ops[j].kind == LM_LOGIT_REP)
            v = v < 0 ? __fmul_rn(v, p) : __fdiv_rn(v, p);
        else
            for (int k = 0; k < ops[j].count; k++)
                v = __fsub_rn(v, p);
    }
    x[t] = v;
}

void lm_cuda_edit_logits(lm_backend *be, float *x, const lm_logit_op *ops, int n) {
    cuda_backend *c = cu_be(be);
    if (n <= 0 || lm_cuda_skip(c))
        return;
    lm_logit_op *d = (lm_logit_op *)lm_cuda_scratch(c, LM_CUDA_SCR_EDIT, (size_t)n * sizeof *ops);
    if (!d)
        return;
    be->ops->upload(be, d, ops, (size_t)n * sizeof *ops);
    lm_cuda_launch(c, "edit_logits", edit_logits_k, lm_cuda_blocks((size_t)n, 256), 256, 0, x,
                   (const lm_logit_op *)d, n);
}
