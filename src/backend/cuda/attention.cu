/* Attention over the cached rows. Prompts of LM_CUDA_ATTN_TC_MIN_T tokens or more take the
 * tensor-core kernel (attention_tc.cu) where it handles the head_dim. attention_split (below) serves head dims 32/64/128/256 with up
 * to 8 query heads per kv head; other shapes take the first kernel: one warp per (query token,
 * head) with an online softmax over
 * chunks of 32 keys (each lane scores one key, then the warp accumulates the chunk's values,
 * lane j holding output dims j, j+32, ...). Masks: empty rows (kpos < 0), causality by absolute
 * position, the sliding window; scores may be soft-capped; sinks add one logit per head. */
#include <math.h>

#include <cooperative_groups.h>

#include "backend/cuda/cuda_internal.cuh"

namespace cg = cooperative_groups;

#define ATT_WARPS 4
#define ATT_MAX_HD 512
#define ATT_PER_LANE (ATT_MAX_HD / 32)

__global__ void attention_f32(lm_attn_args a) {
    __shared__ float qs[ATT_WARPS][ATT_MAX_HD];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int task = blockIdx.x * ATT_WARPS + warp;
    if (task >= a.T * a.n_heads)
        return;
    int t = task / a.n_heads, h = task % a.n_heads, hd = a.head_dim;
    int g = h / (a.n_heads / a.n_kv);
    size_t kstride = (size_t)a.n_kv * hd;
    const float *q = a.q + ((size_t)t * a.n_heads + h) * hd;
    for (int i = lane; i < hd; i += 32)
        qs[warp][i] = q[i];
    __syncwarp();
    int32_t qp = a.qpos[t];
    float m = a.sinks ? a.sinks[h] : -INFINITY; /* running max */
    float l = a.sinks ? 1.0f : 0.0f;            /* running sum of exp(s - m) */
    float acc[ATT_PER_LANE];
#pragma unroll
    for (int j = 0; j < ATT_PER_LANE; j++)
        acc[j] = 0.0f;
    for (int r0 = 0; r0 < a.n_rows; r0 += 32) {
        int r = r0 + lane;
        float s = -INFINITY;
        if (r < a.n_rows) {
            int32_t kp = a.kpos ? a.kpos[r] : r;
            if (kp >= 0 && kp <= qp && !(a.window > 0 && qp - kp >= a.window)) {
                const float *k = a.k + (size_t)r * kstride + (size_t)g * hd;
                float d = 0.0f;
                for (int i = 0; i < hd; i++)
                    d += qs[warp][i] * k[i];
                s = d * a.scale;
                if (a.softcap > 0)
                    s = a.softcap * tanhf(s / a.softcap);
            }
        }
        float cm = warp_max(s), nm = fmaxf(m, cm);
        if (nm == -INFINITY)
            continue; /* nothing visible yet */
        float corr = m == -INFINITY ? 0.0f : expf(m - nm);
        float p = s == -INFINITY ? 0.0f : expf(s - nm);
        l = l * corr + warp_sum(p);
        m = nm;
#pragma unroll
        for (int j = 0; j < ATT_PER_LANE; j++)
            acc[j] *= corr;
        int nr = a.n_rows - r0 < 32 ? a.n_rows - r0 : 32;
        for (int jr = 0; jr < nr; jr++) {
            float pj = __shfl_sync(0xffffffffu, p, jr);
            if (pj == 0.0f)
                continue;
            const float *v = a.v + (size_t)(r0 + jr) * kstride + (size_t)g * hd;
#pragma unroll
            for (int j = 0; j < ATT_PER_LANE; j++) {
                int i = lane + 32 * j;
                if (i < hd)
                    acc[j] += pj * v[i];
            }
        }
    }
    float inv = l > 0 ? 1.0f / l : 0.0f;
    float *out = a.out + ((size_t)t * a.n_heads + h) * hd;
#pragma unroll
    for (int j = 0; j < ATT_PER_LANE; j++) {
        int i = lane + 32 * j;
        if (i < hd)
            out[i] = acc[j] * inv;
    }
}

/* --- split attention: a block per (kv head, key chunk, query token) ---------------------------------
 * The block's query heads (those sharing the kv head) are scored together, so each K/V row is read
 * once per block: a warp takes every ATS_WARPS-th key of the chunk, each lane holding DPL
 * consecutive dims (hd = 32 * DPL) of K, V, q and the G heads' accumulators; scores are warp
 * sums; each warp loads ATS_PF rows before scoring them, and moves its running max once per such
 * batch. The warps' online-softmax states merge in shared memory. With one chunk the block
 * writes the output; else each chunk writes (max, sum, acc[hd]) per head and attn_combine
 * merges the chunks (flash-decoding). */

#define ATS_WARPS 4
#ifndef ATS_PF
#define ATS_PF 8 /* rows a warp loads before using them */
#endif
#ifndef ATS_MAX_SPLIT
#define ATS_MAX_SPLIT 32 /* 4096 keys: 185 tok/s (bf16, 8B), 512 chunks of 16: 152 (H200, 2026-11-28) */
#endif
#ifndef ATS_CL_ROWS
#define ATS_CL_ROWS 256 /* one-token attention over at most this many rows merges inside a cluster */
#endif
#ifndef ATS_L2_ROWS
#define ATS_L2_ROWS 32 /* rows of its chunk a block prefetches to L2 before the wait (4096 keys: +2%; 128: all) */
#endif

template <int DPL> struct ats_vec;
template <> struct ats_vec<1> { static __device__ __forceinline__ void ld(const float *p, float *o) { o[0] = p[0]; } };
template <> struct ats_vec<2> {
    static __device__ __forceinline__ void ld(const float *p, float *o) {
        float2 v = *(const float2 *)p;
        o[0] = v.x, o[1] = v.y;
    }
};
template <> struct ats_vec<4> {
    static __device__ __forceinline__ void ld(const float *p, float *o) {
        float4 v = *(const float4 *)p;
        o[0] = v.x, o[1] = v.y, o[2] = v.z, o[3] = v.w;
    }
};
template <> struct ats_vec<8> {
    static __device__ __forceinline__ void ld(const float *p, float *o) {
        ats_vec<4>::ld(p, o);
        ats_vec<4>::ld(p + 4, o + 4);
    }
};

/* CL: the n_split blocks of a kv head form a thread-block cluster and merge their chunks through
 * distributed shared memory (one launch; part unused); else each block leaves its chunk's record
 * in part for attn_combine (n_split > 1) or writes the output (n_split == 1). */
template <int DPL, int G, bool CL>
__global__ void __launch_bounds__(ATS_WARPS * 32) attn_split(lm_attn_args a, int chunk, int n_split, float *part) {
    const int hd = 32 * DPL;
    { /* the chunk's first cached rows on their way to L2 before the wait (the kernels before
       * write only the newest rows; a prefetch is coherent in L2 whatever it finds) */
        int r0 = blockIdx.y * chunk, nr = min(min(chunk, a.n_rows - r0), ATS_L2_ROWS), lines = DPL;
        size_t kstride = (size_t)a.n_kv * hd;
        for (int e = threadIdx.x; e < 2 * nr * lines; e += blockDim.x) {
            int r = e / (2 * lines), l = e % (2 * lines);
            const float *p = (l & 1 ? a.v : a.k) + (size_t)(r0 + r) * kstride + (size_t)blockIdx.x * hd + (l >> 1) * 32;
            asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
        }
    }
    lm_pdl_wait();
    lm_pdl_next();
    __shared__ float sm_m[ATS_WARPS][G], sm_l[ATS_WARPS][G];
    __shared__ float sm_acc[ATS_WARPS][G][hd];
    int g = blockIdx.x, split = blockIdx.y, t = blockIdx.z;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int gq = a.n_heads / a.n_kv;
    size_t kstride = (size_t)a.n_kv * hd;
    float q[G][DPL], acc[G][DPL], m[G], l[G];
#pragma unroll
    for (int h = 0; h < G; h++) {
        m[h] = -INFINITY;
        l[h] = 0.0f;
#pragma unroll
        for (int j = 0; j < DPL; j++)
            acc[h][j] = q[h][j] = 0.0f;
        if (h < gq)
            ats_vec<DPL>::ld(a.q + ((size_t)t * a.n_heads + (size_t)g * gq + h) * hd + lane * DPL, q[h]);
    }
    int32_t qp = a.qpos[t];
    int r_end = (split + 1) * chunk < a.n_rows ? (split + 1) * chunk : a.n_rows;
    constexpr int PF = DPL >= 8 ? 2 : ATS_PF; /* head_dim 256: registers for two */
    /* PF rows at a time (every ATS_WARPS-th row of the chunk from this warp's first): their K, V
     * and positions are all loaded before any is used, and the running max moves once per batch */
    for (int r = split * chunk + warp; r < r_end; r += ATS_WARPS * PF) {
        float k[PF][DPL], v[PF][DPL];
        int32_t kp[PF];
#pragma unroll
        for (int b = 0; b < PF; b++) {
            int rb = r + b * ATS_WARPS;
            kp[b] = -1;
#pragma unroll
            for (int j = 0; j < DPL; j++)
                k[b][j] = v[b][j] = 0.0f; /* past the chunk: finite, and masked */
            if (rb < r_end) {
                kp[b] = a.kpos ? a.kpos[rb] : rb;
                ats_vec<DPL>::ld(a.k + (size_t)rb * kstride + (size_t)g * hd + lane * DPL, k[b]);
                ats_vec<DPL>::ld(a.v + (size_t)rb * kstride + (size_t)g * hd + lane * DPL, v[b]);
            }
        }
        int vis[PF];
#pragma unroll
        for (int b = 0; b < PF; b++)
            vis[b] = kp[b] >= 0 && kp[b] <= qp && !(a.window > 0 && qp - kp[b] >= a.window);
#pragma unroll
        for (int h = 0; h < G; h++) {
            if (h >= gq)
                break;
            float sc[PF], nm = m[h];
#pragma unroll
            for (int b = 0; b < PF; b++) {
                float d = 0.0f;
#pragma unroll
                for (int j = 0; j < DPL; j++)
                    d += q[h][j] * k[b][j];
                sc[b] = warp_sum(d) * a.scale;
                if (a.softcap > 0)
                    sc[b] = a.softcap * tanhf(sc[b] / a.softcap);
                if (!vis[b])
                    sc[b] = -INFINITY;
                nm = fmaxf(nm, sc[b]);
            }
            if (nm == -INFINITY)
                continue; /* nothing visible yet */
            float corr = expf(m[h] - nm); /* m = -inf: 0 */
            l[h] *= corr;
#pragma unroll
            for (int j = 0; j < DPL; j++)
                acc[h][j] *= corr;
#pragma unroll
            for (int b = 0; b < PF; b++) {
                if (!vis[b]) /* (an empty row's values may be anything) */
                    continue;
                float p = expf(sc[b] - nm);
                l[h] += p;
#pragma unroll
                for (int j = 0; j < DPL; j++)
                    acc[h][j] += p * v[b][j];
            }
            m[h] = nm;
        }
    }
    /* merge the warps */
#pragma unroll
    for (int h = 0; h < G; h++) {
        if (lane == 0)
            sm_m[warp][h] = m[h], sm_l[warp][h] = l[h];
#pragma unroll
        for (int j = 0; j < DPL; j++)
            sm_acc[warp][h][lane * DPL + j] = acc[h][j];
    }
    __syncthreads();
    __shared__ float cl_m[G], cl_l[G], cl_a[CL ? G : 1][CL ? hd : 1]; /* this block's chunk (CL) */
    for (int e = threadIdx.x; e < gq * hd; e += blockDim.x) {
        int h = e / hd, i = e % hd, head = g * gq + h;
        float M = -INFINITY;
        for (int w = 0; w < ATS_WARPS; w++)
            M = fmaxf(M, sm_m[w][h]);
        if (n_split == 1 && a.sinks)
            M = fmaxf(M, a.sinks[head]);
        float L = 0.0f, A = 0.0f;
        if (M != -INFINITY)
            for (int w = 0; w < ATS_WARPS; w++) {
                float f = expf(sm_m[w][h] - M);
                L += sm_l[w][h] * f;
                A += sm_acc[w][h][i] * f;
            }
        if (n_split == 1) {
            if (a.sinks && M != -INFINITY)
                L += expf(a.sinks[head] - M);
            a.out[((size_t)t * a.n_heads + head) * hd + i] = L > 0 ? A / L : 0.0f;
        } else if constexpr (CL) {
            if (i == 0)
                cl_m[h] = M, cl_l[h] = L;
            cl_a[h][i] = A;
        } else {
            float *pp = part + (((size_t)t * a.n_heads + head) * n_split + split) * (hd + 2);
            if (i == 0)
                pp[0] = M, pp[1] = L;
            pp[2 + i] = A;
        }
    }
    if constexpr (CL) { /* the cluster's blocks split the outputs and read every chunk's record */
        cg::cluster_group cl = cg::this_cluster();
        cl.sync();
        int rank = (int)cl.block_rank();
        for (int e = rank * blockDim.x + threadIdx.x; e < gq * hd; e += n_split * blockDim.x) {
            int h = e / hd, i = e % hd, head = g * gq + h;
            float ms[8], M = a.sinks ? a.sinks[head] : -INFINITY;
#pragma unroll
            for (int s = 0; s < 8; s++) {
                ms[s] = s < n_split ? *cl.map_shared_rank(&cl_m[h], s) : -INFINITY;
                M = fmaxf(M, ms[s]);
            }
            float L = 0.0f, A = 0.0f;
            if (M != -INFINITY) {
#pragma unroll
                for (int s = 0; s < 8; s++)
                    if (s < n_split) {
                        float f = expf(ms[s] - M);
                        L += *cl.map_shared_rank(&cl_l[h], s) * f;
                        A += *cl.map_shared_rank(&cl_a[h][i], s) * f;
                    }
                if (a.sinks)
                    L += expf(a.sinks[head] - M);
            }
            a.out[((size_t)t * a.n_heads + head) * hd + i] = L > 0 ? A / L : 0.0f;
        }
        cl.sync(); /* no block leaves while another reads its shared memory */
    }
}

/* out[t, head] from the chunks' (max, sum, acc) records; one block per (token, head). The first
 * warp reads every chunk's max and sum at once (a lane per chunk) and leaves each chunk's weight
 * in shared memory; then each thread sums its output values over the chunks with several
 * chunks' loads in flight (one chunk at a time, the maxima, sums and values had cost ~3 * n_split
 * dependent L2 round trips). */
__global__ void attn_combine(lm_attn_args a, int n_split, const float *__restrict__ part) {
    static_assert(ATS_MAX_SPLIT <= 32, "a lane per chunk");
    __shared__ float f[ATS_MAX_SPLIT]; /* exp(chunk max - M) / the total sum */
    lm_pdl_wait();
    lm_pdl_next();
    int th = blockIdx.x, hd = a.head_dim, head = th % a.n_heads;
    const float *pp = part + (size_t)th * n_split * (hd + 2);
    if (threadIdx.x < 32) {
        int s = threadIdx.x;
        float m = s < n_split ? pp[(size_t)s * (hd + 2)] : -INFINITY, l = s < n_split ? pp[(size_t)s * (hd + 2) + 1] : 0.0f;
        float M = warp_max(m);
        if (a.sinks)
            M = fmaxf(M, a.sinks[head]);
        float e = M != -INFINITY && s < n_split ? expf(m - M) : 0.0f;
        float L = warp_sum(l * e);
        if (a.sinks && M != -INFINITY)
            L += expf(a.sinks[head] - M);
        if (s < n_split)
            f[s] = L > 0 ? e / L : 0.0f;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float A = 0.0f;
#pragma unroll 8
        for (int s = 0; s < n_split; s++)
            A += pp[(size_t)s * (hd + 2) + 2 + i] * f[s];
        a.out[(size_t)th * hd + i] = A;
    }
}

/* cl: the n_split blocks of each kv head as one cluster (attention_split) */
template <int DPL, int G>
static void attn_split_launch(cuda_backend *c, const lm_attn_args *a, int chunk, int n_split, float *part, int cl) {
    dim3 grid((unsigned)a->n_kv, (unsigned)n_split, (unsigned)a->T);
    if (cl)
        lm_cuda_launch_cluster(c, "attn_split", attn_split<DPL, G, true>, grid, ATS_WARPS * 32, 0,
                               dim3(1, (unsigned)n_split, 1), *a, chunk, n_split, part);
    else
        lm_cuda_launch(c, "attn_split", attn_split<DPL, G, false>, grid, ATS_WARPS * 32, 0, *a, chunk, n_split, part);
}

template <int DPL>
static int attn_split_dispatch(cuda_backend *c, const lm_attn_args *a, int chunk, int n_split, float *part, int cl) {
    int gq = a->n_heads / a->n_kv;
    if (gq <= 1)
        attn_split_launch<DPL, 1>(c, a, chunk, n_split, part, cl);
    else if (gq <= 2)
        attn_split_launch<DPL, 2>(c, a, chunk, n_split, part, cl);
    else if (gq <= 4)
        attn_split_launch<DPL, 4>(c, a, chunk, n_split, part, cl);
    else if (gq <= 8)
        attn_split_launch<DPL, 8>(c, a, chunk, n_split, part, cl);
    else
        return 0;
    return 1;
}

/* Chunks: one when there are enough (token, kv head) blocks to fill the GPU; else chunks of
 * ATS_CHUNK keys (at most ATS_MAX_SPLIT of them). Returns 0 when the shape needs the old kernel. */
#ifndef ATS_CHUNK
#define ATS_CHUNK 16
#endif

static int attention_split(cuda_backend *c, const lm_attn_args *a) {
    int hd = a->head_dim, dpl = hd / 32;
    if (hd % 32 || (dpl != 1 && dpl != 2 && dpl != 4 && dpl != 8) || a->n_heads / a->n_kv > 8 || a->n_rows <= 0 ||
        ((uintptr_t)a->q | (uintptr_t)a->k | (uintptr_t)a->v) & (size_t)(4 * dpl > 16 ? 15 : 4 * dpl - 1))
        return 0;
    int n_split = 1, chunk = a->n_rows;
    if ((size_t)a->T * a->n_kv < 512) {
        n_split = (a->n_rows + ATS_CHUNK - 1) / ATS_CHUNK;
        if (n_split > ATS_MAX_SPLIT)
            n_split = ATS_MAX_SPLIT;
        chunk = (a->n_rows + n_split - 1) / n_split;
        n_split = (a->n_rows + chunk - 1) / chunk;
    }
    /* one token over at most ATS_CL_ROWS rows: at most 8 chunks, merged inside a cluster */
    int cl = a->T == 1 && n_split > 1 && a->n_rows <= ATS_CL_ROWS;
    if (cl && n_split > 8) {
        chunk = (a->n_rows + 7) / 8;
        n_split = (a->n_rows + chunk - 1) / chunk;
    }
    float *part = NULL;
    if (n_split > 1 && !cl) {
        part = (float *)lm_cuda_scratch(c, LM_CUDA_SCR_ATTN,
                                        (size_t)a->T * a->n_heads * n_split * (hd + 2) * sizeof(float));
        if (!part)
            return 1; /* the error is recorded */
    }
    int ok = dpl == 1   ? attn_split_dispatch<1>(c, a, chunk, n_split, part, cl)
             : dpl == 2 ? attn_split_dispatch<2>(c, a, chunk, n_split, part, cl)
             : dpl == 4 ? attn_split_dispatch<4>(c, a, chunk, n_split, part, cl)
                        : attn_split_dispatch<8>(c, a, chunk, n_split, part, cl);
    if (ok && n_split > 1 && !cl) {
        lm_cuda_launch(c, "attn_combine", attn_combine, (unsigned)(a->T * a->n_heads), 128, 0, *a, n_split,
                       (const float *)part);
    }
    return ok;
}

static void attention_f32_launch(cuda_backend *c, const lm_attn_args *a) {
    size_t tasks = (size_t)a->T * a->n_heads;
    attention_f32<<<lm_cuda_blocks(tasks, ATT_WARPS), ATT_WARPS * 32, 0, c->stream>>>(*a);
    lm_cuda_launched(c, "attention_f32");
}

void lm_cuda_attention(lm_backend *be, const lm_attn_args *a) {
    cuda_backend *c = cu_be(be);
    if (a->T <= 0 || a->n_heads <= 0 || lm_cuda_skip(c))
        return;
    if (a->head_dim > ATT_MAX_HD || a->n_kv <= 0 || a->n_heads % a->n_kv) {
        lm_cuda_fail(c, LM_ERR_UNSUPPORTED, "attention: head_dim above 512 or heads not a multiple of kv heads");
        return;
    }
    if (a->T >= LM_CUDA_ATTN_TC_MIN_T && lm_cuda_attention_tc(c, a))
        return;
    if (!attention_split(c, a))
        attention_f32_launch(c, a);
}
