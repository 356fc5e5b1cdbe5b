/* Decode matrix-vector products (one token): y[out] = W x, streaming the weight at full width.
 * A warp computes MV_R rows at once (they share every x load and, for the affine formats, the
 * sums of x); in narrow matrices MV_KS warps split each row group's columns. Each lane reads
 * the rows in NB-byte vectors (16 when the rows and their base are 16-byte aligned, else 8 or
 * 4; 4-bit rows at most MV_Q4_NB), MV_U vectors per row in flight before the first use, and
 * dequantizes in registers: dense bf16/f16/f32, MLX affine 4 and 8 bit (one scale group per
 * vector: sum q*x and sum x, then scale and bias once). Integers become floats without a
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

/* The first vectors this lane will read of each row go on their way to L2 (weights: before
 * lm_pdl_wait); then the kernel waits for x and lets the next kernel start. */
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

/* y = W x: group g of the grid computes rows MV_R*g .. MV_R*g+MV_R-1 (rows past the end repeat
 * the last one and are not stored; no warp leaves before the shared-memory reduction). */
template <int KIND, int NB, int KS>
__global__ void __launch_bounds__(MV_WARPS * 32, MV_MINB) matvec(lm_linear w, const float *__restrict__ x, float *__restrict__ y) {
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
        if (kw == 0 && lane == i && r0 + i < w.out)
            y[r0 + i] = acc[i] + (w.bias ? w.bias[r0 + i] : 0.0f);
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

/* Returns 1 when it queued y = W x for this weight, 0 when the format needs the generic kernel. */
int lm_cuda_matvec(cuda_backend *c, const lm_linear *w, const float *x, float *y) {
    int nb, kind = mv_kind(w, x, &nb);
    if (kind < 0)
        return 0;
    size_t groups = ((size_t)w->out + MV_R - 1) / MV_R;
    int ks = mv_ks(groups);
    MV_DISPATCH(matvec, kind, nb, ks, mv_blocks(groups, ks), *w, x, y);
    return 1;
}

/* n <= 3 weights of one variant sharing x, in one launch; 0 when they cannot be fused. */
int lm_cuda_matvec_n(cuda_backend *c, int n, const lm_linear *const *w, const float *x, float *const *y) {
    if (n < 1 || n > 3)
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
    size_t groups = (rows + MV_R - 1) / MV_R;
    int ks = mv_ks(groups);
    MV_DISPATCH(matvec_n, kind, nb, ks, mv_blocks(groups, ks), m, x);
    return 1;
}

/* out = act(gate x) * (up x) in one launch; 0 when the two weights differ in variant or shape. */
int lm_cuda_matvec_glu(cuda_backend *c, const lm_linear *gate, const lm_linear *up, const float *x, lm_act act,
                       float limit, float *out) {
    int nbg, nbu, kg = mv_kind(gate, x, &nbg), ku = mv_kind(up, x, &nbu);
    if (kg < 0 || kg != ku || nbg != nbu || gate->out != up->out || !mv_same(gate, up))
        return 0;
    int ks = mv_ks((size_t)gate->out);
    MV_DISPATCH(matvec_glu, kg, nbg, ks, mv_blocks((size_t)gate->out, ks), *gate, *up, x, (int)act, limit, out);
    return 1;
}
