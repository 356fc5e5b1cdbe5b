/* Prefill attention on the tensor cores (flash attention): a block of FA_WARPS warps takes
 * FA_BQ = 16 * FA_WARPS query rows of one head and walks the cached rows in tiles of FA_BK keys.
 * Each tile's K and V rows are converted from the f32 cache to f16 in shared memory; each warp
 * computes its 16 x FA_BK scores with mma.m16n8k16 (f16 in, f32 accumulate; q pre-scaled), masks
 * them (empty rows, causality by absolute position, the sliding window) and soft-caps them in
 * registers, updates its rows' online softmax, and multiplies the probabilities (f16, taken
 * straight from the score accumulators) by V (B fragments by ldmatrix.trans). Tiles that no query
 * of the block can see are skipped whole. Sinks add one logit per head. f16 operands keep 11
 * significant bits of q, k, v and p; the softmax and every sum stay f32. head_dim 16..128. */
#include <cuda_fp16.h>
#include <math.h>

#include "backend/cuda/cuda_internal.cuh"

#define FA_WARPS 4
#define FA_BQ (16 * FA_WARPS)
#define FA_BK 64

static __device__ __forceinline__ uint32_t h2(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *(uint32_t *)&v;
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

template <int HD> __global__ void __launch_bounds__(FA_WARPS * 32) attn_tc(lm_attn_args a) {
    constexpr int KT = HD / 16, NT = HD / 8, ST = FA_BK / 8; /* k steps over dims, dim tiles, key tiles */
    constexpr int LD = HD + 8;                               /* shared row stride (halves): no bank conflicts */
    __shared__ __align__(16) uint16_t Ks[FA_BK * LD];
    __shared__ __align__(16) uint16_t Vs[FA_BK * LD];
    __shared__ int32_t kp_s[FA_BK];
    __shared__ int32_t q_lim[2];
    int h = blockIdx.y, q0 = blockIdx.x * FA_BQ;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gi = lane >> 2, ci = lane & 3;
    int kvh = h / (a.n_heads / a.n_kv);
    size_t qstride = (size_t)a.n_heads * HD, kstride = (size_t)a.n_kv * HD;
    int row[2] = {q0 + warp * 16 + gi, q0 + warp * 16 + gi + 8};
    int32_t qp[2];
    for (int i = 0; i < 2; i++)
        qp[i] = row[i] < a.T ? a.qpos[row[i]] : -1; /* rows past T see nothing */
    if (warp == 0) { /* the block's lowest and highest query positions */
        int32_t lo = INT32_MAX, hi = -1;
        for (int t = q0 + lane; t < q0 + FA_BQ && t < a.T; t += 32) {
            int32_t p = a.qpos[t];
            lo = min(lo, p);
            hi = max(hi, p);
        }
        lo = __reduce_min_sync(0xffffffffu, lo);
        hi = __reduce_max_sync(0xffffffffu, hi);
        if (lane == 0)
            q_lim[0] = lo, q_lim[1] = hi;
    }
    /* q as A fragments, scaled: kt-th 16 dims; regs (row g, dims 2c..), (g+8, 2c..), (g, 2c+8..), (g+8, 2c+8..) */
    uint32_t qa[KT][4];
#pragma unroll
    for (int kt = 0; kt < KT; kt++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int r = row[j & 1], d = kt * 16 + 2 * ci + (j >> 1) * 8;
            float2 v = make_float2(0.0f, 0.0f);
            if (r < a.T)
                v = *(const float2 *)(a.q + (size_t)r * qstride + (size_t)h * HD + d);
            qa[kt][j] = h2(v.x * a.scale, v.y * a.scale);
        }
    float acc[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    float sink = a.sinks ? a.sinks[h] : -INFINITY;
    float m[2] = {sink, sink};                         /* running max per row */
    float l[2] = {a.sinks && ci == 0 ? 1.0f : 0.0f, 0.0f}; /* this lane's share of the running sum */
    l[1] = l[0];
    __syncthreads();
    int32_t qlo = q_lim[0], qhi = q_lim[1];

    for (int r0 = 0; r0 < a.n_rows; r0 += FA_BK) {
        int vis = 0;
        if (threadIdx.x < FA_BK) {
            int r = r0 + threadIdx.x;
            int32_t kp = r < a.n_rows ? (a.kpos ? a.kpos[r] : r) : -1;
            kp_s[threadIdx.x] = kp;
            vis = kp >= 0 && kp <= qhi && !(a.window > 0 && qlo - kp >= a.window);
        }
        if (!__syncthreads_or(vis))
            continue; /* no query of the block sees any key of the tile */
        /* K and V rows to f16 */
        for (int e = threadIdx.x; e < FA_BK * HD / 4; e += FA_WARPS * 32) {
            int rr = e / (HD / 4), cc = (e % (HD / 4)) * 4, r = r0 + rr;
            float4 k = make_float4(0.0f, 0.0f, 0.0f, 0.0f), v = k;
            if (r < a.n_rows) {
                k = *(const float4 *)(a.k + (size_t)r * kstride + (size_t)kvh * HD + cc);
                v = *(const float4 *)(a.v + (size_t)r * kstride + (size_t)kvh * HD + cc);
            }
            *(uint2 *)(Ks + rr * LD + cc) = make_uint2(h2(k.x, k.y), h2(k.z, k.w));
            *(uint2 *)(Vs + rr * LD + cc) = make_uint2(h2(v.x, v.y), h2(v.z, v.w));
        }
        __syncthreads();
        /* scores: s[n] holds (row g, keys 8n + 2c, +1) and (row g + 8, the same keys) */
        float s[ST][4];
#pragma unroll
        for (int n = 0; n < ST; n++) {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
            const uint16_t *kr = Ks + (n * 8 + gi) * LD + 2 * ci;
#pragma unroll
            for (int kt = 0; kt < KT; kt++)
                mma16816(s[n], qa[kt], *(const uint32_t *)(kr + kt * 16), *(const uint32_t *)(kr + kt * 16 + 8));
        }
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int n = 0; n < ST; n++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int32_t kp = kp_s[n * 8 + 2 * ci + (j & 1)], p = qp[j >> 1];
                float v = s[n][j];
                if (kp < 0 || kp > p || (a.window > 0 && p - kp >= a.window))
                    v = -INFINITY;
                else if (a.softcap > 0)
                    v = a.softcap * tanhf(v / a.softcap);
                s[n][j] = v;
                mx[j >> 1] = fmaxf(mx[j >> 1], v);
            }
        float corr[2];
#pragma unroll
        for (int i = 0; i < 2; i++) {
            mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
            mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
            float nm = fmaxf(m[i], mx[i]);
            corr[i] = m[i] == -INFINITY ? 0.0f : expf(m[i] - nm);
            m[i] = nm;
            l[i] *= corr[i];
        }
#pragma unroll
        for (int n = 0; n < ST; n++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float v = s[n][j];
                float p = v == -INFINITY ? 0.0f : expf(v - m[j >> 1]);
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
            const uint16_t *vr = Vs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
#pragma unroll
            for (int n = 0; n < NT; n += 2) {
                uint32_t b[4];
                ldsm_x4_t(b, vr + n * 8);
                mma16816(acc[n], pa, b[0], b[1]);
                mma16816(acc[n + 1], pa, b[2], b[3]);
            }
        }
        __syncthreads(); /* the tile's shared rows are read */
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

template <int HD> static void attn_tc_launch(cuda_backend *c, const lm_attn_args *a) {
    dim3 grid(lm_cuda_blocks((size_t)a->T, FA_BQ), (unsigned)a->n_heads);
    attn_tc<HD><<<grid, FA_WARPS * 32, 0, c->stream>>>(*a);
    lm_cuda_launched(c, "attn_tc");
}

int lm_cuda_attention_tc(cuda_backend *c, const lm_attn_args *a) {
    int hd = a->head_dim;
    if ((hd != 16 && hd != 32 && hd != 64 && hd != 128) || ((uintptr_t)a->q & 7) ||
        (((uintptr_t)a->k | (uintptr_t)a->v) & 15))
        return 0;
    if (hd == 16)
        attn_tc_launch<16>(c, a);
    else if (hd == 32)
        attn_tc_launch<32>(c, a);
    else if (hd == 64)
        attn_tc_launch<64>(c, a);
    else
        attn_tc_launch<128>(c, a);
    return 1;
}
