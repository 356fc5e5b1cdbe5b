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
struct op_max_i {
    __device__ __forceinline__ int operator()(int a, int b) const { return a > b ? a : b; }
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

/* Every block: its chunk's maximum m_b (NaN skipped, as the host's x > max) and sum(exp(x - m_b))
 * in double into s (a chunk of -inf/NaN sums its entries as they are: 0 or NaN); returns 1 in
 * the last block to finish (after a fence: the other blocks' partials are visible to it). */
static __device__ int lse_partials(const float *__restrict__ x, int V, int chunk, lm_cuda_argmax_scratch *s) {
    __shared__ int last;
    int lo = blockIdx.x * chunk, hi = min(V, lo + chunk);
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
    if (last)
        __threadfence();
    return last;
}

/* In the last block: the row's maximum into *mx (-inf when every entry is -inf or NaN; then the
 * result is meaningless) and lse = (float)(max + log(sum)) from the partials (NaN after a NaN or
 * +inf entry). */
static __device__ float lse_finish(lm_cuda_argmax_scratch *s, float *mx_out) {
    const volatile float *pm = s->max; /* written by other blocks: not from this SM's L1 */
    const volatile double *ps = s->sum;
    int nb = gridDim.x;
    float mx = -INFINITY;
    for (int k = threadIdx.x; k < nb; k += blockDim.x)
        mx = fmaxf(mx, pm[k]);
    mx = block_max(mx);
    *mx_out = mx;
    double sum = 0;
    for (int k = threadIdx.x; k < nb; k += blockDim.x) {
        float mk = pm[k];
        double sk = ps[k];
        sum += mk == -INFINITY ? sk : sk * exp((double)mk - mx); /* a chunk of -inf/NaN: 0 or NaN as it is */
    }
    sum = block_sum(sum);
    return (float)(mx + log(sum));
}

/* The last block: lse from the partials, then the first entry of the largest x - lse. */
static __device__ void argmax_finish(const float *__restrict__ x, int V, int chunk, lm_cuda_argmax_scratch *s,
                                     lm_argmax_out *out) {
    const volatile float *pm = s->max;
    int nb = gridDim.x;
    float mx, lse = lse_finish(s, &mx);
    if (mx == -INFINITY) { /* every entry -inf or NaN: the host leaves x as it is; no later entry exceeds x[0] */
        if (threadIdx.x == 0)
            out->token = 0, out->logprob = x[0];
        return;
    }
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
    if (lse_partials(x, V, chunk, s))
        argmax_finish(x, V, chunk, s, out);
}

/* Blocks and chunk length of a pass over a row of V (argmax and sampling). */
static int am_chunks(int V, int *chunk) {
    int nb = (int)lm_cuda_blocks((size_t)V, AM_CHUNK);
    nb = nb < LM_CUDA_ARGMAX_BLOCKS ? nb : LM_CUDA_ARGMAX_BLOCKS;
    *chunk = (int)(((size_t)V + nb - 1) / nb);
    return nb;
}

static void argmax_f32_launch(cuda_backend *c, const float *x, int V, lm_argmax_out *out) {
    int chunk, nb = am_chunks(V, &chunk);
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
 * The host's chain (generate/sampler.c) on the device:
 *  1. samp_lse: lse as for argmax (the same chunks, partials and last block);
 *  2. only with top-p, min-p or top-k: samp_lp writes lp = x - lse and ids 0..V-1; CUB's radix
 *     sort of (lp, id) by lp, larger first (stable, so ties keep the lower id first: the host's
 *     order, `before`); samp_cut finds the kept prefix of that order, L tokens: top-p keeps a
 *     token while the mass ranked above it is below sum - (1 - top_p) (the host's ascending
 *     cumsum > 1 - top_p), min-p those with lp >= top + log(min_p) or among the min_keep first,
 *     top-k the k first. Without them (mlx-lm's default: temperature alone) every token is kept;
 *  3. samp_pick: the categorical draw over the kept tokens in id order, as lm_samp_categorical:
 *     the first whose running sum of exp(lp / temp - max) exceeds u * sum. Every block sums the
 *     weights of its chunk; the last block finds the chunk where the running sum crosses u * sum
 *     and the token inside it.
 * Steps 1 and 3 run over the row in many blocks (as one block each, they had cost ~0.18 ms per
 * token on the H200). */
#define SP_THREADS 1024

typedef struct samp_state {
    float lse;     /* NaN: every lp is NaN (a NaN or +inf logit); the pick is token 0 */
    int all_ninf;  /* every logit -inf: lp = x, the pick is token 0 */
    float bv;      /* the last kept (value, id): the kept tokens rank at or before it */
    int bi;
    float top;     /* the largest lp */
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

/* st: lse, and every token kept with the largest lp on top (samp_cut narrows it). */
__global__ void __launch_bounds__(AM_THREADS) samp_lse(const float *__restrict__ x, int V, int chunk,
                                                       lm_cuda_argmax_scratch *s, samp_state *st) {
    lm_pdl_wait();
    lm_pdl_next();
    if (!lse_partials(x, V, chunk, s))
        return;
    float mx, lse = lse_finish(s, &mx);
    if (threadIdx.x == 0) {
        int ninf = mx == -INFINITY;
        lse = ninf ? 0.0f : lse; /* all -inf: x stays as it is */
        st->lse = lse, st->all_ninf = ninf, st->top = sort_key(mx - lse);
        /* what samp_cut finds when nothing is cut: every (value, id) ranks at or before the last */
        st->bv = -INFINITY, st->bi = V - 1;
    }
}

__global__ void samp_lp(const float *__restrict__ x, int V, const samp_state *st, float *lp, int *ids) {
    lm_pdl_wait();
    lm_pdl_next();
    float lse = st->lse;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < V; i += gridDim.x * blockDim.x)
        lp[i] = sort_key(x[i] - lse), ids[i] = i;
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
        st->bv = key[L - 1], st->bi = id[L - 1]; /* (st->top, key[0], is samp_lse's) */
    }
}

/* lp of token i: lp (written by samp_lp) or, when every token is kept, x - lse on the fly */
#define SP_LP(i) (lp ? lp[i] : sort_key(x[i] - lse))
/* kept: ranked at or before the last kept (value, id); v holds no NaN */
#define SP_KEPT(v, i) ((v) > bv || ((v) == bv && (i) <= bi))

__global__ void __launch_bounds__(AM_THREADS) samp_pick(const float *__restrict__ x, const float *__restrict__ lp,
                                                        int V, int chunk, lm_sample_args a, const samp_state *st,
                                                        lm_cuda_argmax_scratch *s, lm_argmax_out *out) {
    lm_pdl_wait();
    lm_pdl_next();
    float lse = st->lse, bv = st->bv;
    int bi = st->bi;
    if (st->all_ninf || isnan(lse)) { /* (no block takes a ticket) */
        if (blockIdx.x == 0 && threadIdx.x == 0)
            out->token = 0, out->logprob = st->all_ninf ? SP_LP(0) : __int_as_float(0x7fc00000);
        return;
    }
    /* the largest kept weight is exp(0) = 1 (the top token is always kept) */
    double inv = 1.0 / a.temp, mx = (double)st->top * inv;
    int lo = blockIdx.x * chunk, hi = min(V, lo + chunk);
    double loc = 0;
    for (int i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        float v = SP_LP(i);
        if (SP_KEPT(v, i))
            loc += exp(v * inv - mx);
    }
    loc = block_sum(loc);
    __shared__ int last;
    if (threadIdx.x == 0) {
        s->sum[blockIdx.x] = loc;
        __threadfence();
        last = atomicInc(&s->ticket, gridDim.x - 1) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last)
        return;
    __threadfence();
    /* the last block: the chunk where the running sum crosses u * sum (a thread per chunk) */
    static_assert(LM_CUDA_ARGMAX_BLOCKS <= AM_THREADS, "a thread per chunk");
    const volatile double *ps = s->sum;
    int nb = gridDim.x, k = threadIdx.x;
    double pk = k < nb ? ps[k] : 0.0, sum, pre = block_scan_d(pk, &sum), target = a.u * sum;
    __shared__ int cb, pick;
    __shared__ double cpre;
    if (k == 0)
        cb = -1, pick = -1;
    __syncthreads();
    if (pk > 0 && pre <= target && pre + pk > target)
        cb = k, cpre = pre;
    __syncthreads();
    int b = cb;
    double base = cpre;
    if (b < 0) { /* rounding kept the sum from exceeding target: the last positive weight */
        b = block_reduce(pk > 0 ? k : -1, op_max_i());
        base = 0, target = INFINITY;
    }
    /* inside chunk b: each thread a contiguous run, so that thread order is id order */
    int blo = b * chunk, bhi = min(V, blo + chunk), per = (bhi - blo + blockDim.x - 1) / blockDim.x;
    int tlo = blo + k * per, thi = min(bhi, tlo + per), lastp = -1;
    double tl = 0;
    for (int i = tlo; i < thi; i++) {
        float v = SP_LP(i);
        double w = SP_KEPT(v, i) ? exp(v * inv - mx) : 0.0;
        if (w > 0)
            tl += w, lastp = i;
    }
    double all, tpre = base + block_scan_d(tl, &all);
    if (tpre <= target && tpre + tl > target) { /* the crossing lies in this thread's ids (one thread) */
        double cum = tpre;
        int hit = lastp; /* (its own running sum may stop a rounding short of target) */
        for (int i = tlo; i < thi; i++) {
            float v = SP_LP(i);
            double w = SP_KEPT(v, i) ? exp(v * inv - mx) : 0.0;
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
    if (pick < 0) { /* no crossing inside the chunk (rounding): its last positive weight */
        int lp_max = block_reduce(lastp, op_max_i());
        if (k == 0)
            pick = lp_max;
    }
    __syncthreads();
    if (k == 0) {
        int t = pick >= 0 ? pick : 0;
        out->token = t;
        out->logprob = SP_LP(t);
    }
}
#undef SP_LP
#undef SP_KEPT

void lm_cuda_sample(lm_backend *be, const float *x, int V, const lm_sample_args *a, lm_argmax_out *out) {
    cuda_backend *c = cu_be(be);
    if (lm_cuda_skip(c))
        return;
    if (V <= 0 || !(a->temp > 0) || !c->argmax) {
        lm_cuda_fail(c, LM_ERR_INTERNAL, "sample: an empty row, temp <= 0 or no scratch");
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
    int chunk, nb = am_chunks(V, &chunk);
    lm_cuda_launch(c, "samp_lse", samp_lse, nb, AM_THREADS, 0, x, V, chunk, c->argmax, st);
    if (!keep_all) {
        lm_cuda_launch(c, "samp_lp", samp_lp, lm_cuda_blocks((size_t)V, 4 * 256), 256, 0, x, V, (const samp_state *)st,
                       lp, ids);
        lm_cuda_check(c, cub::DeviceRadixSort::SortPairsDescending(tmp, cub_bytes, lp, key, ids, ids_sorted, V, 0, 32,
                                                                   c->stream),
                      "sample: sort");
        samp_cut<<<1, SP_THREADS, 0, c->stream>>>(key, ids_sorted, V, *a, st);
        lm_cuda_launched(c, "samp_cut");
    }
    lm_cuda_launch(c, "samp_pick", samp_pick, nb, AM_THREADS, 0, x, keep_all ? (const float *)NULL : (const float *)lp,
                   V, chunk, *a, (const samp_state *)st, c->argmax, out);
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
