/* Attention over the cached rows. Prompts of LM_CUDA_ATTN_TC_MIN_T tokens or more take the
 * tensor-core kernel (attention_tc.cu) where it handles the head_dim. attention_split (below) serves head dims 32/64/128/256 with up
 * to 8 query heads per kv head; other shapes take the first kernel: one warp per (query token,
 * head) with an online softmax over
 * chunks of 32 keys (each lane scores one key, then the warp accumulates the chunk's values,
 * lane j holding output dims j, j+32, ...). Masks: empty rows (kpos < 0), causality by absolute
 * position, the sliding window; scores may be soft-capped; sinks add one logit per head. Every
 * kernel reads f32 or f16 cache rows (KT; backend.h's kv_f16) and computes in f32. */
#include <math.h>

#include <cooperative_groups.h>

#include "backend/cuda/cuda_internal.cuh"

namespace cg = cooperative_groups;

/* May a query at position qp see the key at kp (an empty row has kp < 0)? */
static __device__ __forceinline__ bool key_visible(int32_t kp, int32_t qp, int window) {
    return kp >= 0 && kp <= qp && !(window > 0 && qp - kp >= window);
}

#define ATT_WARPS 4
#define ATT_MAX_HD 512
#define ATT_PER_LANE (ATT_MAX_HD / 32)

template <typename KT> __global__ void attention_f32(lm_attn_args a) {
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
            if (key_visible(kp, qp, a.window)) {
                const KT *k = (const KT *)a.k + (size_t)r * kstride + (size_t)g * hd;
                float d = 0.0f;
                for (int i = 0; i < hd; i++)
                    d += qs[warp][i] * kv_ld1(k + i);
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
            const KT *v = (const KT *)a.v + (size_t)(r0 + jr) * kstride + (size_t)g * hd;
#pragma unroll
            for (int j = 0; j < ATT_PER_LANE; j++) {
                int i = lane + 32 * j;
                if (i < hd)
                    acc[j] += pj * kv_ld1(v + i);
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
 * batch (long chunks take atl_rows instead, below). The warps' online-softmax states merge in
 * shared memory. With one chunk the block writes the output; else each chunk writes (acc[hd],
 * max, sum) per head, and the last block of the chunks to finish merges them (flash-decoding;
 * ats_fold), or for one token over a few rows the chunks merge inside a cluster. */

#define ATS_WARPS 4
#ifndef ATS_PF
#define ATS_PF 8 /* rows a warp loads before using them */
#endif
#ifndef ATS_MAX_SPLIT
#define ATS_MAX_SPLIT 32 /* chunks of the short-chunk loop */
#endif
#ifndef ATS_CL_ROWS
#define ATS_CL_ROWS 256 /* one-token attention over at most this many rows merges inside a cluster */
#endif
#define ATS_REC(hd) ((hd) + 4) /* a chunk's record per head: acc[hd], max, sum (16-byte rows) */
#ifndef ATS_L2_ROWS
#define ATS_L2_ROWS 32 /* rows of its chunk a block prefetches to L2 before the wait (4096 keys: +2%; 128: all) */
#endif

/* DPL consecutive values (f32 q, f32 or f16 rows) as floats */
template <int DPL> struct ats_vec;
template <> struct ats_vec<1> {
    template <typename T> static __device__ __forceinline__ void ld(const T *p, float *o) { o[0] = kv_ld1(p); }
};
template <> struct ats_vec<2> {
    template <typename T> static __device__ __forceinline__ void ld(const T *p, float *o) {
        float2 v = kv_ld2(p);
        o[0] = v.x, o[1] = v.y;
    }
};
template <> struct ats_vec<4> {
    template <typename T> static __device__ __forceinline__ void ld(const T *p, float *o) {
        float4 v = kv_ld4(p);
        o[0] = v.x, o[1] = v.y, o[2] = v.z, o[3] = v.w;
    }
};
template <> struct ats_vec<8> {
    template <typename T> static __device__ __forceinline__ void ld(const T *p, float *o) {
        ats_vec<4>::ld(p, o);
        ats_vec<4>::ld(p + 4, o + 4);
    }
};

/* DPL cache values as loaded (f32, or f16 converted where they are used): a load inside a
 * condition then needs nothing after it inside the condition, so the loads of a batch stay in
 * flight together */
template <typename KT, int N> struct kv_raw {
    float v[N];
    __device__ __forceinline__ void zero() {
#pragma unroll
        for (int i = 0; i < N; i++)
            v[i] = 0.0f;
    }
    __device__ __forceinline__ void ld(const float *p) { ats_vec<N>::ld(p, v); }
    __device__ __forceinline__ float at(int i) const { return v[i]; }
};
template <int N> struct kv_raw<__half, N> {
    static constexpr int W = (N + 1) / 2; /* half2 words */
    __half2 h[W];
    __device__ __forceinline__ void zero() {
#pragma unroll
        for (int i = 0; i < W; i++)
            h[i] = __float2half2_rn(0.0f);
    }
    __device__ __forceinline__ void ld(const __half *p) {
        if constexpr (N == 1) {
            h[0] = __half2half2(*p);
        } else if constexpr (N == 2) {
            h[0] = *(const __half2 *)p;
        } else if constexpr (N == 4) {
            uint2 u = *(const uint2 *)p;
            h[0] = *(const __half2 *)&u.x, h[1] = *(const __half2 *)&u.y;
        } else {
            static_assert(N == 8, "1, 2, 4 or 8 values");
            uint4 u = *(const uint4 *)p;
            h[0] = *(const __half2 *)&u.x, h[1] = *(const __half2 *)&u.y;
            h[2] = *(const __half2 *)&u.z, h[3] = *(const __half2 *)&u.w;
        }
    }
    __device__ __forceinline__ float at(int i) const { return i & 1 ? __high2float(h[i / 2]) : __low2float(h[i / 2]); }
};

/* The rows of a long chunk (LONG), in blocks of ATL_WARPS warps: a warp takes ATL_TR = 4 * ATL_B
 * rows at a time (every ATL_WARPS-th such tile of the chunk). For the scores, 8 lanes share a row
 * (lane l holds dims 4 * (l & 7) + 32 * i of row l >> 3 of each group of 4), so that a score is a
 * sum over 8 lanes (3 shuffles serve 4 rows) and each load is a whole 128-byte line (f16 rows:
 * half a line); q comes from shared memory.
 * For the values, lane l holds dims l * DPL.. of every row (the short-chunk loop's accumulators),
 * with the rows' weights from shared memory. */
#ifndef ATL_B
#define ATL_B 2
#endif
#define ATL_TR (4 * ATL_B)
#ifndef ATL_WARPS
#define ATL_WARPS 8 /* warps per block of the long-chunk form */
#endif
#ifndef ATL_MAX_SPLIT
#define ATL_MAX_SPLIT 32
#endif

/* The K rows of the tile at r0 and whether each is visible; V's rows. A row at or past r_end
 * reads row r_end - 1 instead (no guards, no zeroing) and is hidden; a warp past the chunk's end
 * loads nothing. */
template <int DPL, typename KT>
static __device__ __forceinline__ void atl_load_k(const lm_attn_args &a, const KT *kb, size_t kstride, int r0,
                                                  int r_end, int32_t qp, float4 (&k)[ATL_B][DPL],
                                                  int (&vis)[ATL_B]) {
    if (r0 >= r_end)
        return;
    int grp = (threadIdx.x & 31) >> 3;
#pragma unroll
    for (int b = 0; b < ATL_B; b++) {
        int r = min(r0 + 4 * b + grp, r_end - 1);
        int32_t kp = a.kpos ? a.kpos[r] : r;
        vis[b] = r0 + 4 * b + grp < r_end && key_visible(kp, qp, a.window);
        const KT *p = kb + (size_t)r * kstride;
#pragma unroll
        for (int i = 0; i < DPL; i++)
            k[b][i] = kv_ld4(p + 32 * i);
    }
}

template <int DPL, typename KT>
static __device__ __forceinline__ void atl_load_v(const KT *vb, size_t kstride, int r0, int r_end,
                                                  float (&v)[ATL_TR][DPL]) {
    if (r0 >= r_end)
        return;
#pragma unroll
    for (int j = 0; j < ATL_TR; j++)
        ats_vec<DPL>::ld(vb + (size_t)min(r0 + j, r_end - 1) * kstride, v[j]);
}

/* qs: room for the block's G query rows (staged here, after the first tile's loads are issued;
 * rows past the kv head's gq are zeros, and their heads are computed and dropped). The next
 * tile's K is loaded while the values are summed, its V while the scores are made. */
template <int DPL, int G, typename KT>
static __device__ __forceinline__ void atl_rows(const lm_attn_args &a, float (*qs)[32 * DPL], float (*pw)[G],
                                                int r_beg, int r_end, float (&m)[G], float (&l)[G],
                                                float (&acc)[G][DPL]) {
    constexpr int hd = 32 * DPL;
    int g = blockIdx.x, t = blockIdx.z, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, grp = lane >> 3,
        sub = lane & 7;
    int gq = a.n_heads / a.n_kv;
    size_t kstride = (size_t)a.n_kv * hd;
    const KT *kb = (const KT *)a.k + (size_t)g * hd + 4 * sub, *vb = (const KT *)a.v + (size_t)g * hd + lane * DPL;
    int32_t qp = a.qpos[t];
    float scale = a.scale, cap = a.softcap;
    float4 k[ATL_B][DPL];
    float v[ATL_TR][DPL];
    int vis[ATL_B];
    int r0 = r_beg + warp * ATL_TR;
    atl_load_k<DPL>(a, kb, kstride, r0, r_end, qp, k, vis);
    atl_load_v<DPL>(vb, kstride, r0, r_end, v);
    for (int e = threadIdx.x; e < G * hd; e += blockDim.x) {
        int h = e / hd, i = e % hd;
        qs[h][i] = h < gq ? a.q[((size_t)t * a.n_heads + (size_t)g * gq + h) * hd + i] : 0.0f;
    }
    __syncthreads();
    for (; r0 < r_end; r0 += ATL_WARPS * ATL_TR) {
        unsigned vmask = 0; /* bit j: row r0 + j is visible */
#pragma unroll
        for (int b = 0; b < ATL_B; b++) {
            unsigned bl = __ballot_sync(0xffffffffu, vis[b]);
#pragma unroll
            for (int q4 = 0; q4 < 4; q4++)
                vmask |= (bl >> (8 * q4) & 1u) << (4 * b + q4);
        }
        float s[ATL_B][G];
#pragma unroll
        for (int h = 0; h < G; h++) {
#pragma unroll
            for (int b = 0; b < ATL_B; b++)
                s[b][h] = 0.0f;
#pragma unroll
            for (int i = 0; i < DPL; i++) {
                float4 qv = *(const float4 *)&qs[h][4 * sub + 32 * i];
#pragma unroll
                for (int b = 0; b < ATL_B; b++) {
                    s[b][h] = fmaf(qv.x, k[b][i].x, s[b][h]);
                    s[b][h] = fmaf(qv.y, k[b][i].y, s[b][h]);
                    s[b][h] = fmaf(qv.z, k[b][i].z, s[b][h]);
                    s[b][h] = fmaf(qv.w, k[b][i].w, s[b][h]);
                }
            }
        }
#pragma unroll
        for (int h = 0; h < G; h++) {
            float tm = -INFINITY;
#pragma unroll
            for (int b = 0; b < ATL_B; b++) {
                float d = s[b][h];
                d += __shfl_xor_sync(0xffffffffu, d, 1);
                d += __shfl_xor_sync(0xffffffffu, d, 2);
                d += __shfl_xor_sync(0xffffffffu, d, 4);
                d *= scale;
                if (cap > 0)
                    d = cap * tanhf(d / cap);
                s[b][h] = vis[b] ? d : -INFINITY;
                tm = fmaxf(tm, s[b][h]);
            }
            tm = fmaxf(tm, __shfl_xor_sync(0xffffffffu, tm, 8));
            tm = fmaxf(tm, __shfl_xor_sync(0xffffffffu, tm, 16));
            /* without branches (the heads' chains interleave): nothing visible yet leaves m = -inf
             * and l, acc and the weights 0 */
            float nm = fmaxf(m[h], tm), base = nm == -INFINITY ? 0.0f : nm, ts = 0.0f;
#pragma unroll
            for (int b = 0; b < ATL_B; b++) {
                s[b][h] = __expf(s[b][h] - base); /* now the row's weight (hidden: 0) */
                ts += s[b][h];
            }
            ts += __shfl_xor_sync(0xffffffffu, ts, 8);
            ts += __shfl_xor_sync(0xffffffffu, ts, 16);
            float corr = __expf(m[h] - base); /* m = -inf: 0 */
            l[h] = fmaf(l[h], corr, ts);
            m[h] = nm;
#pragma unroll
            for (int d = 0; d < DPL; d++)
                acc[h][d] *= corr;
        }
        if (sub == 0)
#pragma unroll
            for (int b = 0; b < ATL_B; b++)
#pragma unroll
                for (int h = 0; h < G; h++)
                    pw[4 * b + grp][h] = s[b][h];
        __syncwarp();
        atl_load_k<DPL>(a, kb, kstride, r0 + ATL_WARPS * ATL_TR, r_end, qp, k, vis);
#pragma unroll
        for (int j = 0; j < ATL_TR; j++) {
            float vj[DPL], p[G];
#pragma unroll
            for (int d = 0; d < DPL; d++) /* (a hidden row's values may be anything) */
                vj[d] = vmask >> j & 1u ? v[j][d] : 0.0f;
#pragma unroll
            for (int h = 0; h < G; h += G >= 4 ? 4 : 1) {
                if constexpr (G >= 4) {
                    float4 p4 = *(const float4 *)&pw[j][h];
                    p[h] = p4.x, p[h + 1] = p4.y, p[h + 2] = p4.z, p[h + 3] = p4.w;
                } else
                    p[h] = pw[j][h];
            }
#pragma unroll
            for (int h = 0; h < G; h++)
#pragma unroll
                for (int d = 0; d < DPL; d++)
                    acc[h][d] = fmaf(p[h], vj[d], acc[h][d]);
        }
        __syncwarp(); /* pw is rewritten by the next tile */
        atl_load_v<DPL>(vb, kstride, r0 + ATL_WARPS * ATL_TR, r_end, v);
    }
}

/* The last block of a (token, kv head) to finish merges the chunks' records of its heads into
 * the output (tickets: blocks done per pair, back to 0 after the last): the first pass weighs
 * each chunk (a warp per head, a lane per two chunks), the second sums 4 output values per
 * thread over the chunks with 16 chunks' loads in flight. */
template <int G>
static __device__ void ats_fold(const lm_attn_args &a, const float *part, int n_split) {
    static_assert(ATS_MAX_SPLIT <= 64 && ATL_MAX_SPLIT <= 64, "two chunks per lane");
    __shared__ float ff[G][64]; /* exp(chunk max - M) / the total sum */
    int g = blockIdx.x, t = blockIdx.z, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, hd = a.head_dim;
    int gq = a.n_heads / a.n_kv;
    const float *p0 = part + ((size_t)t * a.n_heads + (size_t)g * gq) * n_split * ATS_REC(hd);
    for (int h = warp; h < gq; h += (int)(blockDim.x >> 5)) {
        const float *ph = p0 + (size_t)h * n_split * ATS_REC(hd);
        float m[2], l[2], e[2];
#pragma unroll
        for (int j = 0; j < 2; j++) {
            int s = lane + 32 * j;
            m[j] = s < n_split ? __ldcg(ph + (size_t)s * ATS_REC(hd) + hd) : -INFINITY;
            l[j] = s < n_split ? __ldcg(ph + (size_t)s * ATS_REC(hd) + hd + 1) : 0.0f;
        }
        int head = g * gq + h;
        float M = warp_max(fmaxf(m[0], m[1]));
        if (a.sinks)
            M = fmaxf(M, a.sinks[head]);
#pragma unroll
        for (int j = 0; j < 2; j++)
            e[j] = M != -INFINITY && m[j] != -INFINITY ? expf(m[j] - M) : 0.0f;
        float L = warp_sum(l[0] * e[0] + l[1] * e[1]);
        if (a.sinks && M != -INFINITY)
            L += expf(a.sinks[head] - M);
#pragma unroll
        for (int j = 0; j < 2; j++)
            if (lane + 32 * j < n_split)
                ff[h][lane + 32 * j] = L > 0 ? e[j] / L : 0.0f;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < gq * hd / 4; e += blockDim.x) {
        int h = e / (hd / 4), i = e % (hd / 4) * 4;
        const float *ph = p0 + (size_t)h * n_split * ATS_REC(hd) + i;
        float4 A = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        for (int s0 = 0; s0 < n_split; s0 += 16) {
            float4 v[16];
#pragma unroll
            for (int j = 0; j < 16; j++)
                v[j] = s0 + j < n_split ? __ldcg((const float4 *)(ph + (size_t)(s0 + j) * ATS_REC(hd)))
                                        : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
            for (int j = 0; j < 16; j++)
                if (s0 + j < n_split) {
                    float f = ff[h][s0 + j];
                    A.x += f * v[j].x, A.y += f * v[j].y, A.z += f * v[j].z, A.w += f * v[j].w;
                }
        }
        float *o = a.out + ((size_t)t * a.n_heads + (size_t)g * gq + h) * hd + i;
        o[0] = A.x, o[1] = A.y, o[2] = A.z, o[3] = A.w;
    }
}

/* CL: the n_split blocks of a kv head form a thread-block cluster and merge their chunks through
 * distributed shared memory (one launch; part unused); else with n_split > 1 each block leaves
 * its chunk's record in part and the last one merges them (tickets: LM_CUDA_ATTN_TICKETS). LONG:
 * the rows of the chunk take atl_rows. */
template <int DPL, int G, bool CL, bool LONG, typename KT>
__global__ void __launch_bounds__((LONG ? ATL_WARPS : ATS_WARPS) * 32)
    attn_split(lm_attn_args a, int chunk, int n_split, float *part, unsigned *tickets) {
    const int hd = 32 * DPL;
    constexpr int NW = LONG ? ATL_WARPS : ATS_WARPS; /* warps per block */
    { /* the chunk's first cached rows on their way to L2 before the wait (the kernels before
       * write only the newest rows; a prefetch is coherent in L2 whatever it finds) */
        constexpr int lines = (DPL * (int)sizeof(KT) + 3) / 4, per = 128 / (int)sizeof(KT); /* a row's slice */
        int r0 = blockIdx.y * chunk, nr = min(min(chunk, a.n_rows - r0), ATS_L2_ROWS);
        size_t kstride = (size_t)a.n_kv * hd;
        for (int e = threadIdx.x; e < 2 * nr * lines; e += blockDim.x) {
            int r = e / (2 * lines), l = e % (2 * lines);
            const KT *p = (const KT *)(l & 1 ? a.v : a.k) + (size_t)(r0 + r) * kstride + (size_t)blockIdx.x * hd +
                          (l >> 1) * per;
            asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
        }
    }
    lm_pdl_wait();
    lm_pdl_next();
    __shared__ float sm_m[NW][G], sm_l[NW][G];
    __shared__ float sm_acc[NW][G][hd];
    int g = blockIdx.x, split = blockIdx.y, t = blockIdx.z;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int gq = a.n_heads / a.n_kv;
    size_t kstride = (size_t)a.n_kv * hd;
    float acc[G][DPL], m[G], l[G];
#pragma unroll
    for (int h = 0; h < G; h++) {
        m[h] = -INFINITY;
        l[h] = 0.0f;
#pragma unroll
        for (int j = 0; j < DPL; j++)
            acc[h][j] = 0.0f;
    }
    int r_end = (split + 1) * chunk < a.n_rows ? (split + 1) * chunk : a.n_rows;
    if constexpr (LONG) {
        __shared__ __align__(16) float qs[G][hd];
        __shared__ __align__(16) float pw[NW][ATL_TR][G];
        atl_rows<DPL, G, KT>(a, qs, pw[warp], split * chunk, r_end, m, l, acc);
    } else {
        float q[G][DPL];
#pragma unroll
        for (int h = 0; h < G; h++) {
#pragma unroll
            for (int j = 0; j < DPL; j++)
                q[h][j] = 0.0f;
            if (h < gq)
                ats_vec<DPL>::ld(a.q + ((size_t)t * a.n_heads + (size_t)g * gq + h) * hd + lane * DPL, q[h]);
        }
        int32_t qp = a.qpos[t];
        constexpr int PF = DPL >= 8 ? 2 : ATS_PF; /* head_dim 256: registers for two */
        /* PF rows at a time (every ATS_WARPS-th row of the chunk from this warp's first): their K, V
         * and positions are all loaded before any is used, and the running max moves once per batch */
        for (int r = split * chunk + warp; r < r_end; r += ATS_WARPS * PF) {
            kv_raw<KT, DPL> k[PF], v[PF];
            int32_t kp[PF];
#pragma unroll
            for (int b = 0; b < PF; b++) {
                int rb = r + b * ATS_WARPS;
                kp[b] = -1;
                k[b].zero(); /* past the chunk: finite, and masked */
                v[b].zero();
                if (rb < r_end) {
                    kp[b] = a.kpos ? a.kpos[rb] : rb;
                    k[b].ld((const KT *)a.k + (size_t)rb * kstride + (size_t)g * hd + lane * DPL);
                    v[b].ld((const KT *)a.v + (size_t)rb * kstride + (size_t)g * hd + lane * DPL);
                }
            }
            int vis[PF];
#pragma unroll
            for (int b = 0; b < PF; b++)
                vis[b] = key_visible(kp[b], qp, a.window);
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
                        d += q[h][j] * k[b].at(j);
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
                        acc[h][j] += p * v[b].at(j);
                }
                m[h] = nm;
            }
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
        for (int w = 0; w < NW; w++)
            M = fmaxf(M, sm_m[w][h]);
        if (n_split == 1 && a.sinks)
            M = fmaxf(M, a.sinks[head]);
        float L = 0.0f, A = 0.0f;
        if (M != -INFINITY)
            for (int w = 0; w < NW; w++) {
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
            float *pp = part + (((size_t)t * a.n_heads + head) * n_split + split) * ATS_REC(hd);
            if (i == 0)
                pp[hd] = M, pp[hd + 1] = L;
            pp[i] = A;
        }
    }
    if constexpr (!CL) {
        if (n_split > 1) {
            __shared__ int last;
            __threadfence(); /* the records are visible before the ticket counts this block */
            __syncthreads();
            if (threadIdx.x == 0)
                last = atomicInc(&tickets[(size_t)t * a.n_kv + g], n_split - 1) == (unsigned)n_split - 1;
            __syncthreads();
            if (last)
                ats_fold<G>(a, part, n_split);
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

enum { ATS_PLAIN, ATS_CLUSTER, ATS_LONG }; /* attn_split's forms: the short-chunk loop, the same
                                            * merged in a cluster, the long-chunk loop (atl_rows) */

template <int DPL, int G, typename KT>
static void attn_split_launch(cuda_backend *c, const lm_attn_args *a, int chunk, int n_split, float *part, int form) {
    dim3 grid((unsigned)a->n_kv, (unsigned)n_split, (unsigned)a->T);
    if (form == ATS_CLUSTER)
        lm_cuda_launch_cluster(c, "attn_split", attn_split<DPL, G, true, false, KT>, grid, ATS_WARPS * 32, 0,
                               dim3(1, (unsigned)n_split, 1), *a, chunk, n_split, part, c->attn_tickets);
    else if (form == ATS_LONG) /* (never for head_dim 256) */
        lm_cuda_launch(c, "attn_split", attn_split<DPL, G, false, (DPL <= 4), KT>, grid,
                       (DPL <= 4 ? ATL_WARPS : ATS_WARPS) * 32, 0, *a, chunk, n_split, part, c->attn_tickets);
    else
        lm_cuda_launch(c, "attn_split", attn_split<DPL, G, false, false, KT>, grid, ATS_WARPS * 32, 0, *a, chunk,
                       n_split, part, c->attn_tickets);
}

template <int DPL, typename KT>
static int attn_split_dispatch(cuda_backend *c, const lm_attn_args *a, int chunk, int n_split, float *part, int form) {
    int gq = a->n_heads / a->n_kv;
    if (gq <= 1)
        attn_split_launch<DPL, 1, KT>(c, a, chunk, n_split, part, form);
    else if (gq <= 2)
        attn_split_launch<DPL, 2, KT>(c, a, chunk, n_split, part, form);
    else if (gq <= 4)
        attn_split_launch<DPL, 4, KT>(c, a, chunk, n_split, part, form);
    else if (gq <= 8)
        attn_split_launch<DPL, 8, KT>(c, a, chunk, n_split, part, form);
    else
        return 0;
    return 1;
}

template <typename KT>
static int attn_split_dpl(cuda_backend *c, const lm_attn_args *a, int dpl, int chunk, int n_split, float *part,
                          int form) {
    return dpl == 1   ? attn_split_dispatch<1, KT>(c, a, chunk, n_split, part, form)
           : dpl == 2 ? attn_split_dispatch<2, KT>(c, a, chunk, n_split, part, form)
           : dpl == 4 ? attn_split_dispatch<4, KT>(c, a, chunk, n_split, part, form)
                      : attn_split_dispatch<8, KT>(c, a, chunk, n_split, part, form);
}

/* The long-chunk loop serves head_dim 32-128 with K and V aligned to 4 values, except one token over
 * at most ATS_CL_ROWS rows. Chunks: one when there are enough (token, kv head) blocks to fill
 * the GPU; else for the long-chunk loop at most ATL_MAX_SPLIT chunks of at least ATL_CHUNK rows,
 * a multiple of ATL_TR (4096 rows: 32 chunks of 128); else chunks of ATS_CHUNK keys (at most
 * ATS_MAX_SPLIT), and for one token (at most 8 of them) merged inside a cluster. Returns 0 when
 * the shape needs the first kernel. */
#ifndef ATS_CHUNK
#define ATS_CHUNK 16
#endif
#ifndef ATL_CHUNK
#define ATL_CHUNK 64
#endif

static int attention_split(cuda_backend *c, const lm_attn_args *a) {
    int hd = a->head_dim, dpl = hd / 32;
    size_t es = a->kv_f16 ? 2 : 4, kva = (uintptr_t)a->k | (uintptr_t)a->v; /* a value's bytes; alignment */
    if (hd % 32 || (dpl != 1 && dpl != 2 && dpl != 4 && dpl != 8) || a->n_heads / a->n_kv > 8 || a->n_rows <= 0 ||
        (uintptr_t)a->q % (4 * dpl > 16 ? 16 : 4 * dpl) || kva % (es * dpl > 16 ? 16 : es * dpl))
        return 0;
    int one_short = a->T == 1 && a->n_rows <= ATS_CL_ROWS; /* the cluster's case */
    int form = dpl <= 4 && kva % (4 * es) == 0 && !one_short ? ATS_LONG : ATS_PLAIN;
    int n_split = 1, chunk = a->n_rows;
    if ((size_t)a->T * a->n_kv < LM_CUDA_ATTN_TICKETS) { /* (a ticket per pair for the merge) */
        if (form == ATS_LONG) {
            n_split = (a->n_rows + ATL_CHUNK - 1) / ATL_CHUNK;
            if (n_split > ATL_MAX_SPLIT)
                n_split = ATL_MAX_SPLIT;
            chunk = (a->n_rows + n_split - 1) / n_split;
            chunk = (chunk + ATL_TR - 1) / ATL_TR * ATL_TR;
        } else {
            n_split = (a->n_rows + ATS_CHUNK - 1) / ATS_CHUNK;
            if (n_split > ATS_MAX_SPLIT)
                n_split = ATS_MAX_SPLIT;
            chunk = (a->n_rows + n_split - 1) / n_split;
        }
        n_split = (a->n_rows + chunk - 1) / chunk;
    }
    /* one token over at most ATS_CL_ROWS rows: at most 8 chunks, merged inside a cluster */
    if (form == ATS_PLAIN && one_short && n_split > 1) {
        form = ATS_CLUSTER;
        if (n_split > 8) {
            chunk = (a->n_rows + 7) / 8;
            n_split = (a->n_rows + chunk - 1) / chunk;
        }
    }
    float *part = NULL;
    if (n_split > 1 && form != ATS_CLUSTER) {
        part = (float *)lm_cuda_scratch(c, LM_CUDA_SCR_ATTN,
                                        (size_t)a->T * a->n_heads * n_split * ATS_REC(hd) * sizeof(float));
        if (!part)
            return 1; /* the error is recorded */
    }
    return a->kv_f16 ? attn_split_dpl<__half>(c, a, dpl, chunk, n_split, part, form)
                     : attn_split_dpl<float>(c, a, dpl, chunk, n_split, part, form);
}

static void attention_f32_launch(cuda_backend *c, const lm_attn_args *a) {
    unsigned blocks = lm_cuda_blocks((size_t)a->T * a->n_heads, ATT_WARPS);
    if (a->kv_f16)
        attention_f32<__half><<<blocks, ATT_WARPS * 32, 0, c->stream>>>(*a);
    else
        attention_f32<float><<<blocks, ATT_WARPS * 32, 0, c->stream>>>(*a);
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
