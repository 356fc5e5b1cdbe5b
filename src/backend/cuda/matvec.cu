/* Decode matrix-vector products (one token): y[out] = W x, streaming the weight at full width.
 * A warp computes MV_R rows at once (they share every x load and, for the affine formats, the
 * sums of x); in narrow matrices MV_KS warps split each row group's columns. Each lane reads
 * the rows in NB-byte vectors (16 when the rows and their base are 16-byte aligned, else 8 or
 * 4; 4-bit rows at most MV_Q4_NB), MV_U vectors per row in flight before the first use, and
 * dequantizes in registers: dense bf16/f16/f32, MLX affine 4 and 8 bit (one scale group per
 * vector: sum q*x and sum x, then scale and bias once). MLX 4/8-bit rows with 16-byte vectors
 * take matvec_qx instead (integer dot products, below; this float kernel is then the fallback). Integers become floats without a
 * conversion instruction: a byte is placed under the exponent of 2^23 (one PRMT) and 2^23 is
 * subtracted (exact), and every 32-bit word keeps its own partial sums so that no long chain of
 * dependent additions forms. Other formats take linear.cu's kernel. Fused variants for the
 * decode step: q/k/v in one launch, gate/up with the activation. */
#include <string.h>

#include "backend/cuda/cuda_internal.cuh"

#define MV_WARPS 8 /* warps per block */
#ifndef MV_R
#define MV_R 2 /* rows per warp */
#endif
#ifndef MV_U
#define MV_U 2 /* vectors in flight per row and lane */
#endif
#ifndef MV_KS
#define MV_KS 4 /* warps sharing a row group's columns in narrow matrices */
#endif
#ifndef MV_MINB
#define MV_MINB 1 /* blocks per multiprocessor the register budget must allow */
#endif
#ifndef MV_Q4_NB
#define MV_Q4_NB 4 /* widest vector for 4-bit rows */
#endif

enum { MV_BF16, MV_F16, MV_F32, MV_Q4, MV_Q8 };

template <int NB> struct mv_vec;
template <> struct mv_vec<16> { typedef uint4 t; };
template <> struct mv_vec<8> { typedef uint2 t; };
template <> struct mv_vec<4> { typedef uint32_t t; };

template <int NB> static __device__ __forceinline__ uint32_t vec_word(const typename mv_vec<NB>::t &v, int i);
template <> __device__ __forceinline__ uint32_t vec_word<16>(const uint4 &v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}
template <> __device__ __forceinline__ uint32_t vec_word<8>(const uint2 &v, int i) { return i == 0 ? v.x : v.y; }
template <> __device__ __forceinline__ uint32_t vec_word<4>(const uint32_t &v, int i) { return v; }

/* Elements of the row held by one NB-byte vector. */
template <int KIND, int NB> struct mv_per { enum { n = KIND == MV_F32 ? NB / 4 : KIND == MV_Q4 ? NB * 2 : KIND == MV_Q8 ? NB : NB / 2 }; };

/* Byte b of u as a float (0..255): u's byte under the exponent of 2^23, minus 2^23. */
static __device__ __forceinline__ float byte_f32(uint32_t u, int b) {
    return __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7650u | (unsigned)b)) - 8388608.0f;
}

/* xv[0 .. per) . decoded vector v (affine: the raw q values) */
template <int KIND, int NB>
static __device__ __forceinline__ float mv_dot(const typename mv_vec<NB>::t &v, const float *xv) {
    float d[NB / 4];
#pragma unroll
    for (int w = 0; w < NB / 4; w++) {
        uint32_t u = vec_word<NB>(v, w);
        if constexpr (KIND == MV_F32) {
            d[w] = __uint_as_float(u) * xv[w];
        } else if constexpr (KIND == MV_BF16 || KIND == MV_F16) {
            float a = KIND == MV_BF16 ? __uint_as_float(u << 16) : f16_to_f32((uint16_t)(u & 0xffff));
            float b = KIND == MV_BF16 ? __uint_as_float(u & 0xffff0000u) : f16_to_f32((uint16_t)(u >> 16));
            d[w] = a * xv[2 * w] + b * xv[2 * w + 1];
        } else if constexpr (KIND == MV_Q8) {
            const float *xw = xv + 4 * w;
            d[w] = byte_f32(u, 0) * xw[0] + byte_f32(u, 1) * xw[1] + byte_f32(u, 2) * xw[2] + byte_f32(u, 3) * xw[3];
        } else { /* 4-bit: element 2k is byte k's low nibble, 2k+1 its high nibble */
            const float *xw = xv + 8 * w;
            uint32_t lo = u & 0x0F0F0F0Fu, hi = (u >> 4) & 0x0F0F0F0Fu;
            float e = byte_f32(lo, 0) * xw[0] + byte_f32(lo, 1) * xw[2] + byte_f32(lo, 2) * xw[4] + byte_f32(lo, 3) * xw[6];
            float o = byte_f32(hi, 0) * xw[1] + byte_f32(hi, 1) * xw[3] + byte_f32(hi, 2) * xw[5] + byte_f32(hi, 3) * xw[7];
            d[w] = e + o;
        }
    }
#pragma unroll
    for (int s = 1; s < NB / 4; s *= 2)
#pragma unroll
        for (int w = 0; w + s < NB / 4; w += 2 * s)
            d[w] += d[w + s];
    return d[0];
}

/* The rows one warp computes: MV_R rows of weights of one variant (same in, group and scale
 * type), given by their row pointers. */
template <int NR> struct mv_rows {
    const uint8_t *w[NR], *s[NR], *b[NR];
};

template <int NR>
static __device__ __forceinline__ void mv_row_ptrs(mv_rows<NR> &R, int i, const lm_linear &w, int r) {
    R.w[i] = (const uint8_t *)w.w + (size_t)r * w.w_row_bytes;
    R.s[i] = (const uint8_t *)w.scales + (size_t)r * w.s_row_bytes;
    R.b[i] = (const uint8_t *)w.biases + (size_t)r * w.s_row_bytes;
}

/* rsqrt(mean of x^2 + eps) from the sum of x^2 over n values, or 1 without a norm. */
static __device__ __forceinline__ float mv_rs(const lm_cuda_mv_io &io, float sumsq, int n) {
    return io.nw ? 1.0f / sqrtf(sumsq / (float)n + io.eps) : 1.0f;
}

/* The first vectors this lane will read of each row go on their way to L2 (weights: before
 * lm_pdl_wait); then the kernel waits for x and lets the next kernel start. (Whole rows asked
 * for with bulk prefetches were much slower: bf16 decode 225 -> 160-182 tok/s.) */
template <int KIND, int NB, int NR, int KS>
static __device__ __forceinline__ void rows_start(const lm_linear &w, const mv_rows<NR> &R, int lane, int kw) {
    int nv = w.in / mv_per<KIND, NB>::n;
#pragma unroll
    for (int u = 0; u < MV_U; u++) {
        int c = lane + 32 * kw + 32 * KS * u;
#pragma unroll
        for (int i = 0; i < NR; i++)
            if (c < nv)
                asm volatile("prefetch.global.L2 [%0];" ::"l"(R.w[i] + (size_t)c * NB));
    }
    lm_pdl_wait();
    lm_pdl_next();
}

/* acc[i] = row i . x, summed over the warp (every lane gets them); `w` gives in, group, dtype. */
template <int KIND, int NB, int NR, int KS>
static __device__ __forceinline__ void rows_dot(const lm_linear &w, const mv_rows<NR> &R, const float *__restrict__ x,
                                                int lane, int kw, float *acc) {
    typedef typename mv_vec<NB>::t vec;
    constexpr int per = mv_per<KIND, NB>::n;
    constexpr bool affine = KIND == MV_Q4 || KIND == MV_Q8;
    int nv = w.in / per, gshift = affine ? __ffs(w.group) - 1 : 0; /* groups are powers of two (mv_kind) */
#pragma unroll
    for (int i = 0; i < NR; i++)
        acc[i] = 0.0f;
    for (int c0 = lane + 32 * kw; c0 < nv; c0 += 32 * KS * MV_U) {
        vec v[MV_U][NR];
#pragma unroll
        for (int u = 0; u < MV_U; u++)
#pragma unroll
            for (int i = 0; i < NR; i++)
                if (c0 + 32 * KS * u < nv)
                    v[u][i] = __ldg((const vec *)R.w[i] + c0 + 32 * KS * u);
#pragma unroll
        for (int u = 0; u < MV_U; u++) {
            int c = c0 + 32 * KS * u;
            if (c >= nv)
                break;
            float xv[per];
            const float *xc = x + (size_t)c * per;
            if constexpr (per % 4 == 0) {
#pragma unroll
                for (int j = 0; j < per; j += 4)
                    *(float4 *)(xv + j) = *(const float4 *)(xc + j);
            } else {
#pragma unroll
                for (int j = 0; j < per; j++)
                    xv[j] = xc[j];
            }
            float xs = 0.0f;
            if constexpr (affine) {
                float p[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                for (int j = 0; j < per; j++)
                    p[j & 3] += xv[j];
                xs = (p[0] + p[1]) + (p[2] + p[3]);
            }
#pragma unroll
            for (int i = 0; i < NR; i++) {
                float d = mv_dot<KIND, NB>(v[u][i], xv);
                if constexpr (affine) {
                    int g = (c * per) >> gshift;
                    acc[i] += d * scalar_at(R.s[i], w.dtype, g) + xs * scalar_at(R.b[i], w.dtype, g);
                } else {
                    acc[i] += d;
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < NR; i++)
        acc[i] = warp_sum(acc[i]);
}

/* The warps of a block form groups of KS; a group computes NR rows, each of its warps a KS-th
 * of the columns (K split: narrow matrices still get enough warps in flight); the partial sums
 * meet in shared memory, and the group's first warp gets the rows' dots in acc. */
template <int NR, int KS>
static __device__ __forceinline__ void ks_reduce(float *acc, int warp, int kw, int lane) {
    if constexpr (KS > 1) {
        __shared__ float part[MV_WARPS][NR];
        if (lane == 0)
#pragma unroll
            for (int i = 0; i < NR; i++)
                part[warp][i] = acc[i];
        __syncthreads();
        if (kw == 0)
#pragma unroll
            for (int i = 0; i < NR; i++) {
                float t = 0.0f;
#pragma unroll
                for (int k = 0; k < KS; k++)
                    t += part[warp + k][i];
                acc[i] = t;
            }
    }
}

/* y = W x (add: y += W x): group g of the grid computes rows MV_R*g .. MV_R*g+MV_R-1 (rows past
 * the end repeat the last one and are not stored; no warp leaves before the shared-memory
 * reduction). */
template <int KIND, int NB, int KS>
__global__ void __launch_bounds__(MV_WARPS * 32, MV_MINB)
    matvec(lm_linear w, const float *__restrict__ x, float *y, int add) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, kw = warp % KS;
    int r0 = (blockIdx.x * (MV_WARPS / KS) + warp / KS) * MV_R;
    mv_rows<MV_R> R;
#pragma unroll
    for (int i = 0; i < MV_R; i++)
        mv_row_ptrs(R, i, w, min(r0 + i, w.out - 1));
    rows_start<KIND, NB, MV_R, KS>(w, R, lane, kw);
    float acc[MV_R];
    rows_dot<KIND, NB, MV_R, KS>(w, R, x, lane, kw, acc);
    ks_reduce<MV_R, KS>(acc, warp, kw, lane);
#pragma unroll
    for (int i = 0; i < MV_R; i++)
        if (kw == 0 && lane == i && r0 + i < w.out) {
            float v = acc[i] + (w.bias ? w.bias[r0 + i] : 0.0f);
            y[r0 + i] = add ? y[r0 + i] + v : v;
        }
}

/* Up to three weights over one input (q, k, v): their rows laid end to end over the grid. */
typedef struct mv_multi {
    lm_linear w[3];
    float *y[3];
    int n, rows;
} mv_multi;

template <int KIND, int NB, int KS>
__global__ void __launch_bounds__(MV_WARPS * 32, MV_MINB) matvec_n(mv_multi m, const float *__restrict__ x) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, kw = warp % KS;
    int r0 = (blockIdx.x * (MV_WARPS / KS) + warp / KS) * MV_R;
    mv_rows<MV_R> R;
    int wi[MV_R], ri[MV_R];
#pragma unroll
    for (int i = 0; i < MV_R; i++) {
        int r = min(r0 + i, m.rows - 1), k = 0;
        while (k < m.n - 1 && r >= m.w[k].out)
            r -= m.w[k++].out;
        wi[i] = k, ri[i] = r;
        mv_row_ptrs(R, i, m.w[k], r);
    }
    rows_start<KIND, NB, MV_R, KS>(m.w[0], R, lane, kw);
    float acc[MV_R];
    rows_dot<KIND, NB, MV_R, KS>(m.w[0], R, x, lane, kw, acc);
    ks_reduce<MV_R, KS>(acc, warp, kw, lane);
#pragma unroll
    for (int i = 0; i < MV_R; i++)
        if (kw == 0 && lane == i && r0 + i < m.rows)
            m.y[wi[i]][ri[i]] = acc[i] + (m.w[wi[i]].bias ? m.w[wi[i]].bias[ri[i]] : 0.0f);
}

/* out[r] = act(gate[r] . x) * (up[r] . x): a group's two rows are gate[r] and up[r]. */
template <int KIND, int NB, int KS>
__global__ void __launch_bounds__(MV_WARPS * 32, MV_MINB)
    matvec_glu(lm_linear gate, lm_linear up, const float *__restrict__ x, int act, float limit, float *__restrict__ out) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, kw = warp % KS;
    int r = blockIdx.x * (MV_WARPS / KS) + warp / KS, rc = min(r, gate.out - 1);
    mv_rows<2> R;
    mv_row_ptrs(R, 0, gate, rc);
    mv_row_ptrs(R, 1, up, rc);
    rows_start<KIND, NB, 2, KS>(gate, R, lane, kw);
    float acc[2];
    rows_dot<KIND, NB, 2, KS>(gate, R, x, lane, kw, acc);
    ks_reduce<2, KS>(acc, warp, kw, lane);
    if (kw == 0 && lane == 0 && r < gate.out)
        out[r] = act_f32(acc[0] + (gate.bias ? gate.bias[r] : 0.0f), acc[1] + (up.bias ? up.bias[r] : 0.0f), act, limit);
}

/* --- MLX affine 4/8-bit rows as integer dot products --------------------------------------------
 * Each block first quantizes x into shared memory: blocks of QX_XB(bits) elements (the elements of
 * one 16-byte vector of codes) as 16-bit integers with a scale per block (x ~ sx * q, |q| <= 32767,
 * so x keeps 15 bits below its block's largest value), split into a signed high byte and an
 * unsigned low byte and laid out in the codes' element order. Then sum(code * q) over a vector is
 * 256 * dp4a(codes, high bytes) + dp4a(codes, low bytes) (integer, exact), and a row's dot is the
 * sum over vectors of sx * (scale * that + bias * sum q): the exact product of W and the rounded
 * x, up to f32 rounding (tests/cuda/test_cuda_ops.c rounds x the same way). Two `dp4a` per
 * word of codes (4-bit: 8 codes, split into low and high nibbles; 8-bit: 4 codes) instead of a
 * conversion and a multiply per code. The grid holds only as many blocks as stay resident (x is
 * quantized once per block); each warp walks row groups of QX_NR rows with a stride. */
#define QX_NR 2 /* rows per warp */
#ifndef QX_U
#define QX_U 2 /* 16-byte vectors per row, lane and step */
#endif
#ifndef QX_BPS
#define QX_BPS 1 /* resident blocks per multiprocessor (more warps: the registers spill) */
#endif
#ifndef QX_WARPS
#define QX_WARPS 16 /* warps per block */
#endif
#define QX_QB 4 /* x items (8 elements) a thread quantizes per batch */
#define QX_XB(bits) ((bits) == 4 ? 32 : 16)  /* x block: the elements of one 16-byte vector */
#define QX_MAX_SMEM (48 * 1024 - 256) /* dynamic shared memory (qx_quantize has 64 bytes static) */

/* a . b over 4 bytes, a unsigned, b signed (s) or unsigned (u), plus c */
static __device__ __forceinline__ int dp4a_us(uint32_t a, uint32_t b, int c) {
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}
static __device__ __forceinline__ uint32_t dp4a_uu(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t d;
    asm("dp4a.u32.u32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

/* Bytes 0..3 of the word: the low bytes of a, b, c, d. */
static __device__ __forceinline__ uint32_t pack4(int a, int b, int c, int d) {
    return __byte_perm(__byte_perm((uint32_t)a, (uint32_t)b, 0x0040), __byte_perm((uint32_t)c, (uint32_t)d, 0x0040),
                       0x5410);
}

/* x[0 .. n) (times nw, when given) quantized into shared memory by the whole block (see above): one uint4 per 8
 * elements (4-bit: high bytes of the even elements, of the odd ones, low bytes of the even, of
 * the odd; 8-bit: high and low bytes of elements 0-3, then of 4-7), word j of block b at
 * xq[j * nv + b] (a warp's lanes read consecutive blocks without bank conflicts); sc[b] = (sx,
 * sx * sum of the block's integers). Returns the sum of x^2 (with nw; else 0) to every thread. */
template <int BITS>
static __device__ __forceinline__ float qx_quantize(const float *__restrict__ x, const float *__restrict__ nw, int n,
                                                    int nv, uint4 *xq, float2 *sc) {
    constexpr int TPB = QX_XB(BITS) / 8; /* threads per x block */
    __shared__ float part[QX_WARPS];
    int n8 = n / 8;
    float xsq = 0.0f;
    for (int base = 0; base < n8; base += QX_QB * blockDim.x) { /* every lane takes part in the shuffles */
        float4 a[QX_QB][2], s[QX_QB][2];
#pragma unroll
        for (int k = 0; k < QX_QB; k++) { /* a batch's loads go out together */
            int it = base + k * blockDim.x + threadIdx.x;
            a[k][0] = a[k][1] = make_float4(0, 0, 0, 0);
            s[k][0] = s[k][1] = make_float4(1, 1, 1, 1);
            if (it < n8) {
                a[k][0] = *(const float4 *)(x + 8 * (size_t)it), a[k][1] = *(const float4 *)(x + 8 * (size_t)it + 4);
                if (nw)
                    s[k][0] = __ldg((const float4 *)(nw + 8 * (size_t)it)), s[k][1] = __ldg((const float4 *)(nw + 8 * (size_t)it + 4));
            }
        }
#pragma unroll
        for (int k = 0; k < QX_QB; k++) {
            int it = base + k * blockDim.x + threadIdx.x;
            float v[8] = {a[k][0].x, a[k][0].y, a[k][0].z, a[k][0].w, a[k][1].x, a[k][1].y, a[k][1].z, a[k][1].w};
            if (nw) {
                float wv[8] = {s[k][0].x, s[k][0].y, s[k][0].z, s[k][0].w, s[k][1].x, s[k][1].y, s[k][1].z, s[k][1].w};
#pragma unroll
                for (int j = 0; j < 8; j++)
                    xsq += v[j] * v[j], v[j] *= wv[j];
            }
            float m = 0.0f;
            int bad = 0; /* inf or NaN in the block: codes 0 and sx NaN, so its dots become NaN */
#pragma unroll
            for (int j = 0; j < 8; j++)
                m = fmaxf(m, fabsf(v[j])), bad |= !(fabsf(v[j]) <= 3.4e38f);
#pragma unroll
            for (int o = 1; o < TPB; o <<= 1) {
                m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
                bad |= __shfl_xor_sync(0xffffffffu, bad, o);
            }
            float inv = !bad && m > 0.0f ? 32767.0f / m : 0.0f;
            float sx = bad ? __int_as_float(0x7fc00000) : m * (1.0f / 32767.0f);
            int q[8], qs = 0;
#pragma unroll
            for (int j = 0; j < 8; j++)
                q[j] = __float2int_rn(v[j] * inv), qs += q[j];
#pragma unroll
            for (int o = 1; o < TPB; o <<= 1)
                qs += __shfl_xor_sync(0xffffffffu, qs, o);
            uint4 r;
            if constexpr (BITS == 4) {
                r.x = pack4(q[0] >> 8, q[2] >> 8, q[4] >> 8, q[6] >> 8);
                r.y = pack4(q[1] >> 8, q[3] >> 8, q[5] >> 8, q[7] >> 8);
                r.z = pack4(q[0], q[2], q[4], q[6]);
                r.w = pack4(q[1], q[3], q[5], q[7]);
            } else {
                r.x = pack4(q[0] >> 8, q[1] >> 8, q[2] >> 8, q[3] >> 8);
                r.y = pack4(q[0], q[1], q[2], q[3]);
                r.z = pack4(q[4] >> 8, q[5] >> 8, q[6] >> 8, q[7] >> 8);
                r.w = pack4(q[4], q[5], q[6], q[7]);
            }
            if (it < n8) {
                xq[it % TPB * nv + it / TPB] = r;
                if (it % TPB == 0)
                    sc[it / TPB] = make_float2(sx, sx * (float)qs);
            }
        }
    }
    xsq = warp_sum(xsq);
    if ((threadIdx.x & 31) == 0)
        part[threadIdx.x >> 5] = xsq;
    __syncthreads();
    float t = 0.0f;
    for (int w = 0; w < QX_WARPS; w++)
        t += part[w];
    return t;
}

/* sum(code * x) of one 16-byte vector of codes against its x block, in units of the block's sx */
template <int BITS>
static __device__ __forceinline__ float qx_dot(const uint4 &v, const uint4 *xb) {
    int dh = 0;
    uint32_t dl = 0;
#pragma unroll
    for (int w = 0; w < 4; w++) {
        uint32_t u = vec_word<16>(v, w);
        if constexpr (BITS == 4) {
            uint4 xw = xb[w];
            uint32_t lo = u & 0x0F0F0F0Fu, hi = (u >> 4) & 0x0F0F0F0Fu;
            dh = dp4a_us(lo, xw.x, dh);
            dh = dp4a_us(hi, xw.y, dh);
            dl = dp4a_uu(lo, xw.z, dl);
            dl = dp4a_uu(hi, xw.w, dl);
        } else {
            uint4 xw = xb[w >> 1];
            dh = dp4a_us(u, (w & 1) ? xw.z : xw.x, dh);
            dl = dp4a_uu(u, (w & 1) ? xw.w : xw.y, dl);
        }
    }
    return (float)(dh * 256 + (int)dl);
}

/* Row i of row group g: weight m.w[*k], row *r (GLU: gate and up row g; else rows end to end,
 * QX_NR to a group, a row past the end repeating the last one). */
template <int GLU>
static __device__ __forceinline__ void qx_row(const mv_multi &m, int g, int i, int *k, int *r) {
    if (GLU) {
        *k = i, *r = g;
        return;
    }
    int rr = min(g * QX_NR + i, m.rows - 1), kk = 0;
    while (kk < m.n - 1 && rr >= m.w[kk].out)
        rr -= m.w[kk++].out;
    *k = kk, *r = rr;
}

template <int GLU>
static __device__ __forceinline__ void qx_rows(const mv_multi &m, int g, mv_rows<QX_NR> &R) {
#pragma unroll
    for (int i = 0; i < QX_NR; i++) {
        int k, r;
        qx_row<GLU>(m, g, i, &k, &r);
        mv_row_ptrs(R, i, m.w[k], r);
    }
}

/* Raw bits of element i of a scale array of dtype dt (f32 arrays 4-byte aligned: qx_launch). */
static __device__ __forceinline__ uint32_t raw_at(const uint8_t *p, int dt, int i) {
    return dt == LM_DT_F32 ? ((const uint32_t *)p)[i] : ((const uint16_t *)p)[i];
}
static __device__ __forceinline__ float raw_f32(uint32_t u, int dt) {
    return dt == LM_DT_BF16 ? __uint_as_float(u << 16) : dt == LM_DT_F16 ? f16_to_f32((uint16_t)u) : __uint_as_float(u);
}

/* One step's loads: the lane's QX_U vectors (32 apart) of each row, with their groups' scales
 * and biases as stored (converted only when used, so that nothing waits for them early). */
typedef struct qx_step {
    uint4 v[QX_U][QX_NR];
    uint32_t s[QX_U][QX_NR], b[QX_U][QX_NR];
} qx_step;

template <int XB>
static __device__ __forceinline__ void qx_load(const mv_rows<QX_NR> &R, int ch, int nv, int lane, int dt, int gshift,
                                               qx_step &t) {
#pragma unroll
    for (int u = 0; u < QX_U; u++) {
        int c = ch * 32 * QX_U + lane + 32 * u, gi = (c * XB) >> gshift;
#pragma unroll
        for (int i = 0; i < QX_NR; i++)
            if (c < nv) {
                t.v[u][i] = __ldg((const uint4 *)R.w[i] + c);
                t.s[u][i] = raw_at(R.s[i], dt, gi);
                t.b[u][i] = raw_at(R.b[i], dt, gi);
            }
    }
}

/* y rows of `m` (GLU: out[r] = act(gate[r] . x) * (up[r] . x), m.w = {gate, up}, m.y[0] = out).
 * A warp's work is a sequence of steps (row group, QX_U vectors per lane of each row); the
 * weights of the next step are loaded while the current one is multiplied. */
template <int BITS, int GLU>
__global__ void __launch_bounds__(QX_WARPS * 32, QX_BPS)
    matvec_qx(mv_multi m, const float *__restrict__ x, int act, float limit, lm_cuda_mv_io io) {
    constexpr int XB = QX_XB(BITS), XW = XB / 8; /* x elements and uint4 of codes per vector */
    extern __shared__ uint4 qx_smem[];
    const int in = m.w[0].in, nv = in / XB, dt = m.w[0].dtype, gshift = __ffs(m.w[0].group) - 1;
    const int nch = (nv + 32 * QX_U - 1) / (32 * QX_U); /* steps per row group */
    uint4 *xq = qx_smem;                                 /* [XW][nv] */
    float2 *sc = (float2 *)(qx_smem + in / 8);           /* [nv] */
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int groups = GLU ? m.rows : (m.rows + QX_NR - 1) / QX_NR, stride = gridDim.x * QX_WARPS;
    int g = blockIdx.x * QX_WARPS + warp, ch = 0;
    mv_rows<QX_NR> R;
    qx_step cur = {}, next = {};
    if (g < groups) { /* the first weights do not wait for x */
        qx_rows<GLU>(m, g, R);
        qx_load<XB>(R, 0, nv, lane, dt, gshift, cur);
    }
    lm_pdl_wait();
    lm_pdl_next();
    float rs = mv_rs(io, qx_quantize<BITS>(x, io.nw, in, nv, xq, sc), in);
    float acc[QX_NR] = {};
    while (g < groups) {
        int gn = g, chn = ch + 1;
        if (chn == nch)
            chn = 0, gn += stride;
        mv_rows<QX_NR> Rn = R;
        if (gn < groups) {
            if (chn == 0)
                qx_rows<GLU>(m, gn, Rn);
            qx_load<XB>(Rn, chn, nv, lane, dt, gshift, next);
        }
#pragma unroll
        for (int u = 0; u < QX_U; u++) {
            int c = ch * 32 * QX_U + lane + 32 * u;
            if (c < nv) {
                uint4 xb[XW];
#pragma unroll
                for (int j = 0; j < XW; j++)
                    xb[j] = xq[j * nv + c];
                float2 s = sc[c];
#pragma unroll
                for (int i = 0; i < QX_NR; i++)
                    acc[i] += raw_f32(cur.s[u][i], dt) * s.x * qx_dot<BITS>(cur.v[u][i], xb) + raw_f32(cur.b[u][i], dt) * s.y;
            }
        }
        if (chn == 0) { /* row group g done */
            float y[QX_NR];
#pragma unroll
            for (int i = 0; i < QX_NR; i++) {
                int k, r;
                qx_row<GLU>(m, g, i, &k, &r);
                float b = m.w[k].bias ? m.w[k].bias[r] : 0.0f;
                y[i] = warp_sum(acc[i]) * rs + b;
                acc[i] = 0.0f;
                if (!GLU && lane == i && g * QX_NR + i < m.rows)
                    m.y[k][r] = io.acc ? m.y[k][r] + y[i] : y[i];
            }
            if (GLU && lane == 0)
                m.y[0][g] = act_f32(y[0], y[1], act, limit);
        }
        g = gn, ch = chn, R = Rn, cur = next;
    }
}

/* Queues the integer-dot kernel for m (its weights already matched by mv_kind / mv_same);
 * returns 0 when it does not apply: 16-byte rows, groups a multiple of the x block, x in
 * shared memory. */
static int qx_launch(cuda_backend *c, int kind, const mv_multi &m, const float *x, int glu, lm_act act, float limit,
                     lm_cuda_mv_io io) {
    if (!c->qx || (kind != MV_Q4 && kind != MV_Q8))
        return 0;
    for (int i = 0; i < m.n; i++)
        if (((uintptr_t)m.w[i].w | m.w[i].w_row_bytes) & 15 ||
            (m.w[i].dtype == LM_DT_F32 && ((uintptr_t)m.w[i].scales | (uintptr_t)m.w[i].biases | m.w[i].s_row_bytes) & 3))
            return 0;
    int bits = kind == MV_Q4 ? 4 : 8, in = m.w[0].in, xb = QX_XB(bits);
    size_t smem = (size_t)in * 2 + (size_t)(in / xb) * sizeof(float2);
    if (in % xb || m.w[0].group % xb || smem > QX_MAX_SMEM)
        return 0;
    size_t groups = glu ? (size_t)m.rows : ((size_t)m.rows + QX_NR - 1) / QX_NR;
    /* as many resident blocks as keep the rounds of row groups even */
    size_t most = (size_t)c->sms * QX_BPS * QX_WARPS, rounds = (groups + most - 1) / most;
    unsigned blocks = lm_cuda_blocks((groups + rounds - 1) / rounds, QX_WARPS);
    void (*k)(mv_multi, const float *, int, float, lm_cuda_mv_io) =
        glu ? (bits == 4 ? matvec_qx<4, 1> : matvec_qx<8, 1>) : (bits == 4 ? matvec_qx<4, 0> : matvec_qx<8, 0>);
    lm_cuda_launch(c, "matvec_qx", k, blocks, QX_WARPS * 32, smem, m, x, (int)act, limit, io);
    return 1;
}

/* The kernel variant for a weight: KIND and vector bytes, or -1 when matvec does not serve it. */
static int mv_kind(const lm_linear *w, const float *x, int *nb_out) {
    int kind;
    if (w->kind == LM_W_DENSE && w->in_step <= 1)
        kind = w->dtype == LM_DT_BF16 ? MV_BF16 : w->dtype == LM_DT_F16 ? MV_F16 : w->dtype == LM_DT_F32 ? MV_F32 : -1;
    else if (w->kind == LM_W_AFFINE && (w->bits == 4 || w->bits == 8))
        kind = w->bits == 4 ? MV_Q4 : MV_Q8;
    else
        return -1;
    if (kind < 0 || ((uintptr_t)x & 15))
        return -1;
    int nb = kind == MV_Q4 ? MV_Q4_NB : 16;
    while (nb >= 4 && (((uintptr_t)w->w | w->w_row_bytes) & (size_t)(nb - 1)))
        nb /= 2;
    if (nb < 4)
        return -1;
    /* elements per vector: the row must hold whole vectors; affine: one group per vector */
    int per = kind == MV_F32 ? nb / 4 : kind == MV_Q4 ? nb * 2 : kind == MV_Q8 ? nb : nb / 2;
    if (w->in % per)
        return -1;
    if ((kind == MV_Q4 || kind == MV_Q8) && (w->group % per || per % 4 || (w->group & (w->group - 1))))
        return -1;
    *nb_out = nb;
    return kind;
}

/* Weights one warp may read side by side: the same input length, scale group and scale type. */
static int mv_same(const lm_linear *a, const lm_linear *b) {
    return a->in == b->in && (a->kind == LM_W_DENSE || (a->group == b->group && a->dtype == b->dtype));
}

/* Launch kernel template K<KIND, NB, KS> with the given arguments. */
#define MV_CASE(K, ks, kind, nb, grid, ...)                                                                          \
    case kind * 32 + nb:                                                                                             \
        lm_cuda_launch(c, #K, K<kind, nb, ks>, grid, MV_WARPS * 32, 0, __VA_ARGS__);                                 \
        break;
#define MV_SWITCH(K, ks, kind, nb, grid, ...)                                                                        \
    switch ((kind) * 32 + (nb)) {                                                                                    \
        MV_CASE(K, ks, MV_BF16, 16, grid, __VA_ARGS__)                                                               \
        MV_CASE(K, ks, MV_BF16, 8, grid, __VA_ARGS__)                                                                \
        MV_CASE(K, ks, MV_BF16, 4, grid, __VA_ARGS__)                                                                \
        MV_CASE(K, ks, MV_F16, 16, grid, __VA_ARGS__)                                                                \
        MV_CASE(K, ks, MV_F16, 8, grid, __VA_ARGS__)                                                                 \
        MV_CASE(K, ks, MV_F16, 4, grid, __VA_ARGS__)                                                                 \
        MV_CASE(K, ks, MV_F32, 16, grid, __VA_ARGS__)                                                                \
        MV_CASE(K, ks, MV_F32, 8, grid, __VA_ARGS__)                                                                 \
        MV_CASE(K, ks, MV_F32, 4, grid, __VA_ARGS__)                                                                 \
        MV_CASE(K, ks, MV_Q4, 16, grid, __VA_ARGS__)                                                                 \
        MV_CASE(K, ks, MV_Q4, 8, grid, __VA_ARGS__)                                                                  \
        MV_CASE(K, ks, MV_Q4, 4, grid, __VA_ARGS__)                                                                  \
        MV_CASE(K, ks, MV_Q8, 16, grid, __VA_ARGS__)                                                                 \
        MV_CASE(K, ks, MV_Q8, 8, grid, __VA_ARGS__)                                                                  \
        MV_CASE(K, ks, MV_Q8, 4, grid, __VA_ARGS__)                                                                  \
    }

#define MV_DISPATCH(K, kind, nb, ks, grid, ...)                                                                      \
    do {                                                                                                             \
        if ((ks) == MV_KS)                                                                                           \
            MV_SWITCH(K, MV_KS, kind, nb, grid, __VA_ARGS__)                                                         \
        else                                                                                                         \
            MV_SWITCH(K, 1, kind, nb, grid, __VA_ARGS__)                                                             \
    } while (0)

/* The K split for `groups` row groups: MV_KS warps per group when one warp per group would
 * leave the GPU short of warps (an H200 holds 132 x 64), else 1. */
static int mv_ks(size_t groups) { return groups < 8192 ? MV_KS : 1; }

/* Blocks for `groups` row groups at K split ks. */
static unsigned mv_blocks(size_t groups, int ks) { return lm_cuda_blocks(groups, (unsigned)(MV_WARPS / ks)); }

/* The input norm's weights must be read in the same vectors as x. */
static int mv_io_ok(const lm_cuda_mv_io &io) { return !((uintptr_t)io.nw & 15); }

/* Returns 1 when it queued y (+)= W x (io) for this weight, 0 when the format needs the generic
 * kernel. */
int lm_cuda_matvec(cuda_backend *c, const lm_linear *w, const float *x, float *y, lm_cuda_mv_io io) {
    int nb, kind = mv_kind(w, x, &nb);
    if (kind < 0 || !mv_io_ok(io))
        return 0;
    mv_multi m;
    memset(&m, 0, sizeof m);
    m.w[0] = *w, m.y[0] = y, m.n = 1, m.rows = w->out;
    if (qx_launch(c, kind, m, x, 0, LM_ACT_SILU, 0.0f, io))
        return 1;
    if (io.nw)
        return 0;
    size_t groups = ((size_t)w->out + MV_R - 1) / MV_R;
    int ks = mv_ks(groups);
    MV_DISPATCH(matvec, kind, nb, ks, mv_blocks(groups, ks), *w, x, y, io.acc);
    return 1;
}

/* n <= 3 weights of one variant sharing x, in one launch; 0 when they cannot be fused. */
int lm_cuda_matvec_n(cuda_backend *c, int n, const lm_linear *const *w, const float *x, float *const *y,
                     lm_cuda_mv_io io) {
    if (n < 1 || n > 3 || !mv_io_ok(io))
        return 0;
    mv_multi m;
    memset(&m, 0, sizeof m);
    int kind = -1, nb = 0;
    size_t rows = 0;
    for (int i = 0; i < n; i++) {
        int nbi, k = mv_kind(w[i], x, &nbi);
        if (k < 0 || (i && (k != kind || nbi != nb || !mv_same(w[0], w[i]))))
            return 0;
        kind = k, nb = nbi;
        m.w[i] = *w[i];
        m.y[i] = y[i];
        rows += (size_t)w[i]->out;
    }
    m.n = n;
    m.rows = (int)rows;
    if (qx_launch(c, kind, m, x, 0, LM_ACT_SILU, 0.0f, io))
        return 1;
    if (io.nw || io.acc)
        return 0;
    size_t groups = (rows + MV_R - 1) / MV_R;
    int ks = mv_ks(groups);
    MV_DISPATCH(matvec_n, kind, nb, ks, mv_blocks(groups, ks), m, x);
    return 1;
}

/* out = act(gate x) * (up x) in one launch; 0 when the two weights differ in variant or shape. */
int lm_cuda_matvec_glu(cuda_backend *c, const lm_linear *gate, const lm_linear *up, const float *x, lm_act act,
                       float limit, float *out, lm_cuda_mv_io io) {
    int nbg, nbu, kg = mv_kind(gate, x, &nbg), ku = mv_kind(up, x, &nbu);
    if (kg < 0 || kg != ku || nbg != nbu || gate->out != up->out || !mv_same(gate, up) || !mv_io_ok(io))
        return 0;
    mv_multi m;
    memset(&m, 0, sizeof m);
    m.w[0] = *gate, m.w[1] = *up, m.y[0] = out, m.n = 2, m.rows = gate->out;
    if (qx_launch(c, kg, m, x, 1, act, limit, io))
        return 1;
    if (io.nw)
        return 0;
    int ks = mv_ks((size_t)gate->out);
    MV_DISPATCH(matvec_glu, kg, nbg, ks, mv_blocks((size_t)gate->out, ks), *gate, *up, x, (int)act, limit, out);
    return 1;
}
