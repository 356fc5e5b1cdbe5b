/* Prefill attention on the tensor cores (flash attention).
 *
 * kv_tiles first converts the cached rows (f32, or f16 as they are) to f16, in tiles of FA_BK rows (padding rows are zero),
 * copies their positions (-1: empty or padding) and records each tile's lowest and highest
 * position and whether every row is filled. attn_tc then gives a block of FA_WARPS warps
 * FA_BQ = 16 * FA_WARPS query rows of one head; it walks the tiles that some query of the block
 * may see (by the tile's position range: causality and the sliding window), copying each into
 * shared memory with cp.async while the previous one is used (two buffers). Each warp computes
 * its 16 x FA_BK scores with mma.m16n8k16 (f16 in, f32 accumulate; q pre-scaled by scale *
 * log2(e), so the softmax runs in base 2 with ex2.approx), masks them only when the tile is not
 * wholly visible to its rows, soft-caps them (in natural units), updates its rows' online softmax
 * and multiplies the probabilities (f16, taken straight from the score accumulators) by V
 * (B fragments by ldmatrix.trans). Sinks add one logit per head. f16 operands keep 11
 * significant bits of q, k, v and p; the softmax and every sum stay f32. head_dim 16..128. */
#include <cuda_fp16.h>
#include <math.h>

#include "backend/cuda/cuda_internal.cuh"

#define FA_WARPS 4
#define FA_BQ (16 * FA_WARPS)
#define FA_BK 64
#define FA_LOG2E 1.4426950408889634f
#ifndef FA_MINB
#define FA_MINB 2 /* blocks per multiprocessor the register budget must allow (head_dim 128: 232 registers) */
#endif

typedef struct fa_tile {
    int32_t lo, hi; /* lowest and highest position of a filled row (lo > hi: none) */
    int32_t full;   /* every row filled */
    int32_t pad;
} fa_tile;

/* Blocks of FA_KV_ROWS rows: rows [FA_KV_ROWS * b, +FA_KV_ROWS) of K and V ([rows, dim] f32 or f16)
 * as f16 and their positions; the first block of each tile also writes the tile's summary. */
#define FA_KV_ROWS 8
template <typename KT>
__global__ void kv_tiles(const KT *__restrict__ k, const KT *__restrict__ v, const int32_t *__restrict__ kpos,
                         int n_rows, int dim, uint16_t *__restrict__ kh, uint16_t *__restrict__ vh,
                         int32_t *__restrict__ kp, fa_tile *__restrict__ info) {
    int r0 = blockIdx.x * FA_KV_ROWS;
    for (size_t e = threadIdx.x; e < (size_t)FA_KV_ROWS * dim / 4; e += blockDim.x) {
        size_t o = (size_t)r0 * dim + 4 * e;
        float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f), b = a;
        if (r0 + (int)(4 * e / dim) < n_rows) {
            a = kv_ld4(k + o);
            b = kv_ld4(v + o);
        }
        __half2 a0 = __floats2half2_rn(a.x, a.y), a1 = __floats2half2_rn(a.z, a.w);
        __half2 b0 = __floats2half2_rn(b.x, b.y), b1 = __floats2half2_rn(b.z, b.w);
        *(uint2 *)(kh + o) = make_uint2(*(uint32_t *)&a0, *(uint32_t *)&a1);
        *(uint2 *)(vh + o) = make_uint2(*(uint32_t *)&b0, *(uint32_t *)&b1);
    }
    if (r0 % FA_BK || threadIdx.x >= 32)
        return;
    int32_t lo = INT32_MAX, hi = INT32_MIN, full = 1;
    for (int i = threadIdx.x; i < FA_BK; i += 32) {
        int r = r0 + i;
        int32_t p = r < n_rows ? (kpos ? kpos[r] : r) : -1;
        kp[r] = p;
        if (p < 0)
            full = 0;
        else
            lo = min(lo, p), hi = max(hi, p);
    }
    lo = __reduce_min_sync(0xffffffffu, lo);
    hi = __reduce_max_sync(0xffffffffu, hi);
    full = __reduce_and_sync(0xffffffffu, full);
    if (threadIdx.x == 0)
        info[r0 / FA_BK] = fa_tile{lo, hi, full, 0};
}

static __device__ __forceinline__ uint32_t h2(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *(uint32_t *)&v;
}

static __device__ __forceinline__ float ex2(float x) { /* 2^x; -inf gives 0 */
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/* d += a b: a 16x16 (row), b 16x8 (col), f16 in, f32 accumulate */
static __device__ __forceinline__ void mma16816(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Four 8x8 f16 matrices from shared memory, transposed: lane l gives the address of row l % 8 of
 * matrix l / 8; register i receives matrix i's (row 2c, 2c+1; column g) for lane 4g + c. */
static __device__ __forceinline__ void ldsm_x4_t(uint32_t *r, const uint16_t *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

static __device__ __forceinline__ void cp16(void *dst, const void *src) {
    uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src));
}
static __device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
static __device__ __forceinline__ void cp_wait_prev() { asm volatile("cp.async.wait_group 1;\n" ::); }

/* May a query in [qlo, qhi] see a row of tile t? */
static __device__ __forceinline__ int tile_visible(const fa_tile &t, int32_t qlo, int32_t qhi, int window) {
    return t.lo <= t.hi && t.lo <= qhi && !(window > 0 && qlo - t.hi >= window);
}

/* The first tile from t on that the block may see (n_tiles: none). */
static __device__ __forceinline__ int next_tile(const fa_tile *info, int t, int n_tiles, int32_t qlo, int32_t qhi,
                                                int window) {
    while (t < n_tiles && !tile_visible(info[t], qlo, qhi, window))
        t++;
    return t;
}

template <int HD> struct fa_smem {
    static constexpr int LD = HD + 8; /* row stride (halves): no bank conflicts */
    static constexpr size_t bytes = 2 * (2 * FA_BK * LD * sizeof(uint16_t) + FA_BK * sizeof(int32_t));
};

template <int HD>
__global__ void __launch_bounds__(FA_WARPS * 32, FA_MINB) attn_tc(lm_attn_args a, const uint16_t *__restrict__ kh,
                                                          const uint16_t *__restrict__ vh,
                                                          const int32_t *__restrict__ kpt,
                                                          const fa_tile *__restrict__ info, int n_tiles) {
    constexpr int KT = HD / 16, NT = HD / 8, ST = FA_BK / 8; /* k steps over dims, dim tiles, key tiles */
    constexpr int LD = fa_smem<HD>::LD;
    extern __shared__ __align__(16) uint8_t smem[];
    /* buffer b: K rows at smem + b * BUF, V rows after them, positions after both buffers */
    constexpr int BUF = 2 * FA_BK * LD;
    uint16_t *const kv_s = (uint16_t *)smem;
    int32_t *const kp_s = (int32_t *)(kv_s + 2 * BUF);
    __shared__ int32_t q_lim[2];
    int h = blockIdx.y, q0 = blockIdx.x * FA_BQ;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gi = lane >> 2, ci = lane & 3;
    int kvh = h / (a.n_heads / a.n_kv);
    size_t qstride = (size_t)a.n_heads * HD, kstride = (size_t)a.n_kv * HD;
    int row[2] = {q0 + warp * 16 + gi, q0 + warp * 16 + gi + 8};
    int32_t qp[2];
    for (int i = 0; i < 2; i++)
        qp[i] = row[i] < a.T ? a.qpos[row[i]] : -1; /* rows past T see nothing */
    /* this warp's rows' position range (a row past T, at -1, forces masking), and the block's over
     * the rows before T */
    int32_t wlo = __reduce_min_sync(0xffffffffu, min(qp[0], qp[1]));
    int32_t whi = __reduce_max_sync(0xffffffffu, max(qp[0], qp[1]));
    int32_t vlo = __reduce_min_sync(0xffffffffu, min(row[0] < a.T ? qp[0] : INT32_MAX, row[1] < a.T ? qp[1] : INT32_MAX));
    if (threadIdx.x == 0)
        q_lim[0] = INT32_MAX, q_lim[1] = -1;
    __syncthreads();
    if (lane == 0) {
        atomicMin(&q_lim[0], vlo);
        atomicMax(&q_lim[1], whi);
    }
    /* q as A fragments, scaled: kt-th 16 dims; regs (row g, dims 2c..), (g+8, 2c..), (g, 2c+8..), (g+8, 2c+8..) */
    const float qs = a.scale * FA_LOG2E;
    uint32_t qa[KT][4];
#pragma unroll
    for (int kt = 0; kt < KT; kt++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int r = row[j & 1], d = kt * 16 + 2 * ci + (j >> 1) * 8;
            float2 v = make_float2(0.0f, 0.0f);
            if (r < a.T)
                v = *(const float2 *)(a.q + (size_t)r * qstride + (size_t)h * HD + d);
            qa[kt][j] = h2(v.x * qs, v.y * qs);
        }
    float acc[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    float sink = a.sinks ? a.sinks[h] * FA_LOG2E : -INFINITY;
    float m[2] = {sink, sink};                           /* running max per row (base 2) */
    float l0 = a.sinks && ci == 0 ? 1.0f : 0.0f, l[2] = {l0, l0}; /* this lane's share of the running sum */
    const float cap2 = a.softcap * FA_LOG2E, inv_cap2 = a.softcap > 0 ? 1.0f / cap2 : 0.0f;
    __syncthreads();
    int32_t qlo = q_lim[0], qhi = q_lim[1];

    /* copy tile t into buffer b: K and V rows of this kv head, and the positions */
    auto load = [&](int t, int b) {
        const uint16_t *ks = kh + (size_t)t * FA_BK * kstride + (size_t)kvh * HD;
        const uint16_t *vs = vh + (size_t)t * FA_BK * kstride + (size_t)kvh * HD;
        for (int e = threadIdx.x; e < FA_BK * HD / 8; e += FA_WARPS * 32) {
            int rr = e / (HD / 8), cc = (e % (HD / 8)) * 8;
            cp16(kv_s + b * BUF + rr * LD + cc, ks + (size_t)rr * kstride + cc);
            cp16(kv_s + b * BUF + FA_BK * LD + rr * LD + cc, vs + (size_t)rr * kstride + cc);
        }
        if (threadIdx.x < FA_BK / 4)
            cp16(kp_s + b * FA_BK + 4 * threadIdx.x, kpt + (size_t)t * FA_BK + 4 * threadIdx.x);
    };

    int t = next_tile(info, 0, n_tiles, qlo, qhi, a.window), b = 0;
    if (t < n_tiles)
        load(t, 0);
    cp_commit();
    while (t < n_tiles) {
        int tn = next_tile(info, t + 1, n_tiles, qlo, qhi, a.window);
        if (tn < n_tiles)
            load(tn, b ^ 1);
        cp_commit();
        cp_wait_prev(); /* tile t has landed (this thread's copies) */
        __syncthreads(); /* (everyone's) */
        const uint16_t *K = kv_s + b * BUF, *V = K + FA_BK * LD;
        const int32_t *kp = kp_s + b * FA_BK;
        fa_tile ti = info[t];
        int masked = wlo < 0 || !ti.full || ti.hi > wlo || (a.window > 0 && whi - ti.lo >= a.window);
        /* scores: s[n] holds (row g, keys 8n + 2c, +1) and (row g + 8, the same keys), base 2 */
        float s[ST][4];
#pragma unroll
        for (int n = 0; n < ST; n++) {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
            const uint16_t *kr = K + (n * 8 + gi) * LD + 2 * ci;
#pragma unroll
            for (int kt = 0; kt < KT; kt++)
                mma16816(s[n], qa[kt], *(const uint32_t *)(kr + kt * 16), *(const uint32_t *)(kr + kt * 16 + 8));
        }
        if (a.softcap > 0) /* cap * tanh(s / cap) in natural units = cap2 * tanh(s2 / cap2) in base 2 */
#pragma unroll
            for (int n = 0; n < ST; n++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    s[n][j] = cap2 * tanhf(s[n][j] * inv_cap2);
        if (masked)
#pragma unroll
            for (int n = 0; n < ST; n++)
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    int32_t k = kp[n * 8 + 2 * ci + (j & 1)], p = qp[j >> 1];
                    if (k < 0 || k > p || (a.window > 0 && p - k >= a.window))
                        s[n][j] = -INFINITY;
                }
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int n = 0; n < ST; n++)
            mx[0] = fmaxf(mx[0], fmaxf(s[n][0], s[n][1])), mx[1] = fmaxf(mx[1], fmaxf(s[n][2], s[n][3]));
        float corr[2], mu[2];
#pragma unroll
        for (int i = 0; i < 2; i++) {
            mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
            mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
            float nm = fmaxf(m[i], mx[i]);
            corr[i] = ex2(m[i] - nm); /* m = -inf: 0 (and nm = -inf too: NaN, but l and acc are 0) */
            if (m[i] == -INFINITY)
                corr[i] = 0.0f;
            m[i] = nm;
            mu[i] = nm == -INFINITY ? 0.0f : nm; /* every score -inf so far: p = 2^-inf = 0 */
            l[i] *= corr[i];
        }
#pragma unroll
        for (int n = 0; n < ST; n++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float p = ex2(s[n][j] - mu[j >> 1]);
                s[n][j] = p;
                l[j >> 1] += p;
            }
#pragma unroll
        for (int n = 0; n < NT; n++) {
            acc[n][0] *= corr[0], acc[n][1] *= corr[0];
            acc[n][2] *= corr[1], acc[n][3] *= corr[1];
        }
        /* acc += P V: P's 16-key steps are two score tiles (the accumulator layout is the A layout) */
#pragma unroll
        for (int kk = 0; kk < FA_BK / 16; kk++) {
            uint32_t pa[4] = {h2(s[2 * kk][0], s[2 * kk][1]), h2(s[2 * kk][2], s[2 * kk][3]),
                              h2(s[2 * kk + 1][0], s[2 * kk + 1][1]), h2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
            /* lane l: key 16kk + l % 8 (+8 for matrices 1 and 3), dims 8 (n + l / 16) */
            const uint16_t *vr = V + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
#pragma unroll
            for (int n = 0; n < NT; n += 2) {
                uint32_t bv[4];
                ldsm_x4_t(bv, vr + n * 8);
                mma16816(acc[n], pa, bv[0], bv[1]);
                mma16816(acc[n + 1], pa, bv[2], bv[3]);
            }
        }
        __syncthreads(); /* buffer b is free for the tile after next */
        t = tn;
        b ^= 1;
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
        float inv = l[i] > 0 ? 1.0f / l[i] : 0.0f;
        if (row[i] >= a.T)
            continue;
        float *o = a.out + (size_t)row[i] * qstride + (size_t)h * HD + 2 * ci;
#pragma unroll
        for (int n = 0; n < NT; n++)
            *(float2 *)(o + n * 8) = make_float2(acc[n][2 * i] * inv, acc[n][2 * i + 1] * inv);
    }
}

template <int HD>
static void attn_tc_launch(cuda_backend *c, const lm_attn_args *a, const uint16_t *kh, const uint16_t *vh,
                           const int32_t *kp, const fa_tile *info, int n_tiles) {
    static int ready; /* the dynamic shared memory limit, once per kernel */
    if (!ready && lm_cuda_check(c, cudaFuncSetAttribute(attn_tc<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                        (int)fa_smem<HD>::bytes),
                                "cudaFuncSetAttribute"))
        ready = 1;
    dim3 grid(lm_cuda_blocks((size_t)a->T, FA_BQ), (unsigned)a->n_heads);
    attn_tc<HD><<<grid, FA_WARPS * 32, fa_smem<HD>::bytes, c->stream>>>(*a, kh, vh, kp, info, n_tiles);
    lm_cuda_launched(c, "attn_tc");
}

int lm_cuda_attention_tc(cuda_backend *c, const lm_attn_args *a) {
    int hd = a->head_dim;
    if ((hd != 16 && hd != 32 && hd != 64 && hd != 128) || a->n_rows <= 0 || ((uintptr_t)a->q & 7) ||
        ((uintptr_t)a->k | (uintptr_t)a->v) % (a->kv_f16 ? 8 : 16))
        return 0;
    int n_tiles = (a->n_rows + FA_BK - 1) / FA_BK, dim = a->n_kv * hd;
    size_t half_b = (size_t)n_tiles * FA_BK * dim * sizeof(uint16_t);
    uint8_t *scr = (uint8_t *)lm_cuda_scratch(c, LM_CUDA_SCR_KVH,
                                              2 * half_b + (size_t)n_tiles * (FA_BK * sizeof(int32_t) + sizeof(fa_tile)));
    if (!scr)
        return 1; /* the error is recorded */
    uint16_t *kh = (uint16_t *)scr, *vh = (uint16_t *)(scr + half_b);
    int32_t *kp = (int32_t *)(scr + 2 * half_b);
    fa_tile *info = (fa_tile *)(kp + (size_t)n_tiles * FA_BK);
    unsigned blocks = (unsigned)(n_tiles * (FA_BK / FA_KV_ROWS));
    if (a->kv_f16)
        kv_tiles<<<blocks, 256, 0, c->stream>>>((const __half *)a->k, (const __half *)a->v, a->kpos, a->n_rows, dim,
                                                kh, vh, kp, info);
    else
        kv_tiles<<<blocks, 256, 0, c->stream>>>((const float *)a->k, (const float *)a->v, a->kpos, a->n_rows, dim, kh,
                                                vh, kp, info);
    lm_cuda_launched(c, "kv_tiles");
    if (hd == 16)
        attn_tc_launch<16>(c, a, kh, vh, kp, info, n_tiles);
    else if (hd == 32)
        attn_tc_launch<32>(c, a, kh, vh, kp, info, n_tiles);
    else if (hd == 64)
        attn_tc_launch<64>(c, a, kh, vh, kp, info, n_tiles);
    else
        attn_tc_launch<128>(c, a, kh, vh, kp, info, n_tiles);
    return 1;
}
