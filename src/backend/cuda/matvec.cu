/* Decode matrix-vector products (one token): y[out] = W x, streaming the weight at full width.
 * A warp computes MV_R rows at once (they share every x load and, for the affine formats, the
 * sums of x); each lane reads the rows in NB-byte vectors (16 when the rows and their base are
 * 16-byte aligned, else 8 or 4), MV_U vectors per row in flight before the first use, and
 * dequantizes in registers: dense bf16/f16/f32, MLX affine 4 and 8 bit (one scale group per
 * vector: sum q*x and sum x, then scale and bias once). Integers become floats without a
 * conversion instruction: a byte is placed under the exponent of 2^23 (one PRMT) and 2^23 is
 * subtracted (exact), and every 32-bit word keeps its own partial sums so that no long chain of
 * dependent additions forms. Other formats take linear.cu's kernel. Fused variants for the
 * decode step: q/k/v in one launch, gate/up with the activation. */
#include <string.h>

#include "backend/cuda/cuda_internal.cuh"

#define MV_WARPS 8 /* warps per block */
#define MV_R 2     /* rows per warp */
#define MV_U 4     /* vectors in flight per row and lane */

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
typedef struct mv_rows {
    const uint8_t *w[MV_R], *s[MV_R], *b[MV_R];
} mv_rows;

static __device__ __forceinline__ void mv_row_ptrs(mv_rows &R, int i, const lm_linear &w, int r) {
    R.w[i] = (const uint8_t *)w.w + (size_t)r * w.w_row_bytes;
    R.s[i] = (const uint8_t *)w.scales + (size_t)r * w.s_row_bytes;
    R.b[i] = (const uint8_t *)w.biases + (size_t)r * w.s_row_bytes;
}

/* acc[i] = row i . x, summed over the warp (every lane gets them); `w` gives in, group, dtype. */
template <int KIND, int NB>
static __device__ __forceinline__ void rows_dot(const lm_linear &w, const mv_rows &R, const float *__restrict__ x,
                                                int lane, float *acc) {
    typedef typename mv_vec<NB>::t vec;
    constexpr int per = mv_per<KIND, NB>::n;
    constexpr bool affine = KIND == MV_Q4 || KIND == MV_Q8;
    int nv = w.in / per;
#pragma unroll
    for (int i = 0; i < MV_R; i++)
        acc[i] = 0.0f;
    for (int c0 = lane; c0 < nv; c0 += 32 * MV_U) {
        vec v[MV_U][MV_R];
#pragma unroll
        for (int u = 0; u < MV_U; u++)
#pragma unroll
            for (int i = 0; i < MV_R; i++)
                if (c0 + 32 * u < nv)
                    v[u][i] = __ldg((const vec *)R.w[i] + c0 + 32 * u);
#pragma unroll
        for (int u = 0; u < MV_U; u++) {
            int c = c0 + 32 * u;
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
            for (int i = 0; i < MV_R; i++) {
                float d = mv_dot<KIND, NB>(v[u][i], xv);
                if constexpr (affine) {
                    int g = c * per / w.group;
                    acc[i] += d * scalar_at(R.s[i], w.dtype, g) + xs * scalar_at(R.b[i], w.dtype, g);
                } else {
                    acc[i] += d;
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < MV_R; i++)
        acc[i] = warp_sum(acc[i]);
}

/* y = W x: warp k of the grid computes rows MV_R*k .. MV_R*k+MV_R-1 (rows past the end repeat
 * the last one and are not stored). */
template <int KIND, int NB>
__global__ void __launch_bounds__(MV_WARPS * 32) matvec(lm_linear w, const float *__restrict__ x, float *__restrict__ y) {
    int r0 = (blockIdx.x * MV_WARPS + (threadIdx.x >> 5)) * MV_R, lane = threadIdx.x & 31;
    if (r0 >= w.out)
        return;
    mv_rows R;
#pragma unroll
    for (int i = 0; i < MV_R; i++)
        mv_row_ptrs(R, i, w, min(r0 + i, w.out - 1));
    float acc[MV_R];
    rows_dot<KIND, NB>(w, R, x, lane, acc);
#pragma unroll
    for (int i = 0; i < MV_R; i++)
        if (lane == i && r0 + i < w.out)
            y[r0 + i] = acc[i] + (w.bias ? w.bias[r0 + i] : 0.0f);
}

/* Up to three weights over one input (q, k, v): their rows laid end to end over the grid. */
typedef struct mv_multi {
    lm_linear w[3];
    float *y[3];
    int n, rows;
} mv_multi;

template <int KIND, int NB>
__global__ void __launch_bounds__(MV_WARPS * 32) matvec_n(mv_multi m, const float *__restrict__ x) {
    int r0 = (blockIdx.x * MV_WARPS + (threadIdx.x >> 5)) * MV_R, lane = threadIdx.x & 31;
    if (r0 >= m.rows)
        return;
    mv_rows R;
    int wi[MV_R], ri[MV_R];
#pragma unroll
    for (int i = 0; i < MV_R; i++) {
        int r = min(r0 + i, m.rows - 1), k = 0;
        while (k < m.n - 1 && r >= m.w[k].out)
            r -= m.w[k++].out;
        wi[i] = k, ri[i] = r;
        mv_row_ptrs(R, i, m.w[k], r);
    }
    float acc[MV_R];
    rows_dot<KIND, NB>(m.w[0], R, x, lane, acc);
#pragma unroll
    for (int i = 0; i < MV_R; i++)
        if (lane == i && r0 + i < m.rows)
            m.y[wi[i]][ri[i]] = acc[i] + (m.w[wi[i]].bias ? m.w[wi[i]].bias[ri[i]] : 0.0f);
}

/* out[r] = act(gate[r] . x) * (up[r] . x): a warp's two rows are gate[r] and up[r]. */
static_assert(MV_R == 2, "matvec_glu pairs one gate row with one up row");
template <int KIND, int NB>
__global__ void __launch_bounds__(MV_WARPS * 32)
    matvec_glu(lm_linear gate, lm_linear up, const float *__restrict__ x, int act, float limit, float *__restrict__ out) {
    int r = blockIdx.x * MV_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= gate.out)
        return;
    mv_rows R;
    mv_row_ptrs(R, 0, gate, r);
#pragma unroll
    for (int i = 1; i < MV_R; i++)
        mv_row_ptrs(R, i, up, r);
    float acc[MV_R];
    rows_dot<KIND, NB>(gate, R, x, lane, acc);
    if (lane == 0)
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
    int nb = 16;
    while (nb >= 4 && (((uintptr_t)w->w | w->w_row_bytes) & (size_t)(nb - 1)))
        nb /= 2;
    if (nb < 4)
        return -1;
    /* elements per vector: the row must hold whole vectors; affine: one group per vector */
    int per = kind == MV_F32 ? nb / 4 : kind == MV_Q4 ? nb * 2 : kind == MV_Q8 ? nb : nb / 2;
    if (w->in % per)
        return -1;
    if ((kind == MV_Q4 || kind == MV_Q8) && (w->group % per || per % 4))
        return -1;
    *nb_out = nb;
    return kind;
}

/* Weights one warp may read side by side: the same input length, scale group and scale type. */
static int mv_same(const lm_linear *a, const lm_linear *b) {
    return a->in == b->in && (a->kind == LM_W_DENSE || (a->group == b->group && a->dtype == b->dtype));
}

/* Launch kernel template K<KIND, NB> with the given arguments. */
#define MV_DISPATCH(K, kind, nb, grid, ...)                                                                        \
    do {                                                                                                           \
        switch ((kind) * 32 + (nb)) {                                                                              \
        case MV_BF16 * 32 + 16: K<MV_BF16, 16><<<grid, MV_WARPS * 32, 0, c->stream>>>(__VA_ARGS__); break;        \
        case MV_BF16 * 32 + 8: K<MV_BF16, 8><<<grid, MV_WARPS * 32, 0, c->stream>>>(__VA_ARGS__); break;          \
        case MV_BF16 * 32 + 4: K<MV_BF16, 4><<<grid, MV_WARPS * 32, 0, c->stream>>>(__VA_ARGS__); break;          \
        case MV_F16 * 32 + 16: K<MV_F16, 16><<<grid, MV_WARPS * 32, 0, c->stream>>>(__VA_ARGS__); break;          \
        case MV_F16 * 32 + 8: K<MV_F16, 8><<<grid, MV_WARPS * 32, 0, c->stream>>>(__VA_ARGS__); break;            \
        case MV_F16 * 32 + 4: K<MV_F16, 4><<<grid, MV_WARPS * 32, 0, c->stream>>>(__VA_ARGS__); break;            \
        case MV_F32 * 32 + 16: K<MV_F32, 16><<<grid, MV_WARPS * 32, 0, c->stream>>>(__VA_ARGS__); break;          \
        case MV_F32 * 32 + 8: K<MV_F32, 8><<<grid, MV_WARPS * 32, 0, c->stream>>>(__VA_ARGS__); break;            \
        case MV_F32 * 32 + 4: K<MV_F32, 4><<<grid, MV_WARPS * 32, 0, c->stream>>>(__VA_ARGS__); break;            \
        case MV_Q4 * 32 + 16: K<MV_Q4, 16><<<grid, MV_WARPS * 32, 0, c->stream>>>(__VA_ARGS__); break;            \
        case MV_Q4 * 32 + 8: K<MV_Q4, 8><<<grid, MV_WARPS * 32, 0, c->stream>>>(__VA_ARGS__); break;              \
        case MV_Q4 * 32 + 4: K<MV_Q4, 4><<<grid, MV_WARPS * 32, 0, c->stream>>>(__VA_ARGS__); break;              \
        case MV_Q8 * 32 + 16: K<MV_Q8, 16><<<grid, MV_WARPS * 32, 0, c->stream>>>(__VA_ARGS__); break;            \
        case MV_Q8 * 32 + 8: K<MV_Q8, 8><<<grid, MV_WARPS * 32, 0, c->stream>>>(__VA_ARGS__); break;              \
        default: K<MV_Q8, 4><<<grid, MV_WARPS * 32, 0, c->stream>>>(__VA_ARGS__); break;                          \
        }                                                                                                          \
    } while (0)

/* Returns 1 when it queued y = W x for this weight, 0 when the format needs the generic kernel. */
int lm_cuda_matvec(cuda_backend *c, const lm_linear *w, const float *x, float *y) {
    int nb, kind = mv_kind(w, x, &nb);
    if (kind < 0)
        return 0;
    unsigned grid = lm_cuda_blocks((size_t)w->out, MV_WARPS * MV_R);
    MV_DISPATCH(matvec, kind, nb, grid, *w, x, y);
    lm_cuda_launched(c, "matvec");
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
    unsigned grid = lm_cuda_blocks(rows, MV_WARPS * MV_R);
    MV_DISPATCH(matvec_n, kind, nb, grid, m, x);
    lm_cuda_launched(c, "matvec_n");
    return 1;
}

/* out = act(gate x) * (up x) in one launch; 0 when the two weights differ in variant or shape. */
int lm_cuda_matvec_glu(cuda_backend *c, const lm_linear *gate, const lm_linear *up, const float *x, lm_act act,
                       float limit, float *out) {
    int nbg, nbu, kg = mv_kind(gate, x, &nbg), ku = mv_kind(up, x, &nbu);
    if (kg < 0 || kg != ku || nbg != nbu || gate->out != up->out || !mv_same(gate, up))
        return 0;
    unsigned grid = lm_cuda_blocks((size_t)gate->out, MV_WARPS);
    MV_DISPATCH(matvec_glu, kg, nbg, grid, *gate, *up, x, (int)act, limit, out);
    lm_cuda_launched(c, "matvec_glu");
    return 1;
}
