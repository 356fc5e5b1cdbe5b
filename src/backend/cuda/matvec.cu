/* Decode matrix-vector products (one token): y[out] = W x, streaming the weight at full width.
 * One warp per output row; each lane reads the row in NB-byte vectors (16 when the row and its
 * base are 16-byte aligned, else 8 or 4), U vectors in flight before the first use, and
 * dequantizes in registers: dense bf16/f16/f32, MLX affine 4 and 8 bit (one scale group per
 * vector: sum q*x and sum x, then scale and bias once). Other formats take linear.cu's kernel.
 * Fused variants for the decode step: q/k/v in one launch, gate/up with the activation. */
#include <string.h>

#include "backend/cuda/cuda_internal.cuh"

#define MV_WARPS 8 /* rows per block */
#define MV_U 4     /* vectors in flight per lane */

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

/* x[e0 .. e0+n) . decoded vector v (affine: raw q values; *xs receives sum x) */
template <int KIND, int NB>
static __device__ __forceinline__ float mv_dot(const typename mv_vec<NB>::t &v, const float *__restrict__ x, float *xs) {
    float d = 0.0f, s = 0.0f;
#pragma unroll
    for (int w = 0; w < NB / 4; w++) {
        uint32_t u = vec_word<NB>(v, w);
        if (KIND == MV_F32) {
            d += __uint_as_float(u) * x[w];
        } else if (KIND == MV_BF16 || KIND == MV_F16) {
            float2 xx = *(const float2 *)(x + 2 * w);
            float a = KIND == MV_BF16 ? __uint_as_float(u << 16) : f16_to_f32((uint16_t)(u & 0xffff));
            float b = KIND == MV_BF16 ? __uint_as_float(u & 0xffff0000u) : f16_to_f32((uint16_t)(u >> 16));
            d += a * xx.x + b * xx.y;
        } else {
            const int per = KIND == MV_Q4 ? 8 : 4, bits = KIND == MV_Q4 ? 4 : 8;
#pragma unroll
            for (int j = 0; j < per; j += 4) {
                float4 xx = *(const float4 *)(x + w * per + j);
                d += (float)((u >> (bits * j)) & ((1u << bits) - 1)) * xx.x;
                d += (float)((u >> (bits * (j + 1))) & ((1u << bits) - 1)) * xx.y;
                d += (float)((u >> (bits * (j + 2))) & ((1u << bits) - 1)) * xx.z;
                d += (float)((u >> (bits * (j + 3))) & ((1u << bits) - 1)) * xx.w;
                s += xx.x + xx.y + xx.z + xx.w;
            }
        }
    }
    *xs = s;
    return d;
}

/* W[r] . x, summed over the warp (every lane gets it). */
template <int KIND, int NB>
static __device__ __forceinline__ float row_dot(const lm_linear &w, int r, const float *__restrict__ x, int lane) {
    typedef typename mv_vec<NB>::t vec;
    const int per = mv_per<KIND, NB>::n;
    const vec *row = (const vec *)((const uint8_t *)w.w + (size_t)r * w.w_row_bytes);
    const uint8_t *sr = (const uint8_t *)w.scales + (size_t)r * w.s_row_bytes;
    const uint8_t *br = (const uint8_t *)w.biases + (size_t)r * w.s_row_bytes;
    int nv = w.in / per;
    float acc = 0.0f;
    for (int c0 = lane; c0 < nv; c0 += 32 * MV_U) {
        vec v[MV_U];
#pragma unroll
        for (int u = 0; u < MV_U; u++)
            if (c0 + 32 * u < nv)
                v[u] = __ldg(row + c0 + 32 * u);
#pragma unroll
        for (int u = 0; u < MV_U; u++) {
            int c = c0 + 32 * u;
            if (c < nv) {
                float xs;
                float d = mv_dot<KIND, NB>(v[u], x + (size_t)c * per, &xs);
                if (KIND == MV_Q4 || KIND == MV_Q8) {
                    int g = c * per / w.group;
                    acc += d * scalar_at(sr, w.dtype, g) + xs * scalar_at(br, w.dtype, g);
                } else {
                    acc += d;
                }
            }
        }
    }
    return warp_sum(acc) + (w.bias ? w.bias[r] : 0.0f);
}

template <int KIND, int NB>
__global__ void __launch_bounds__(MV_WARPS * 32) matvec(lm_linear w, const float *__restrict__ x, float *__restrict__ y) {
    int r = blockIdx.x * MV_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= w.out)
        return;
    float d = row_dot<KIND, NB>(w, r, x, lane);
    if (lane == 0)
        y[r] = d;
}

/* Up to three weights over one input (q, k, v): their rows laid end to end over the grid. */
typedef struct mv_multi {
    lm_linear w[3];
    float *y[3];
    int n;
} mv_multi;

template <int KIND, int NB>
__global__ void __launch_bounds__(MV_WARPS * 32) matvec_n(mv_multi m, const float *__restrict__ x) {
    int r = blockIdx.x * MV_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    int i = 0;
    while (i < m.n && r >= m.w[i].out)
        r -= m.w[i++].out;
    if (i >= m.n)
        return;
    float d = row_dot<KIND, NB>(m.w[i], r, x, lane);
    if (lane == 0)
        m.y[i][r] = d;
}

/* out[r] = act(gate[r] . x) * (up[r] . x) */
template <int KIND, int NB>
__global__ void __launch_bounds__(MV_WARPS * 32)
    matvec_glu(lm_linear gate, lm_linear up, const float *__restrict__ x, int act, float limit, float *__restrict__ out) {
    int r = blockIdx.x * MV_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= gate.out)
        return;
    float g = row_dot<KIND, NB>(gate, r, x, lane), u = row_dot<KIND, NB>(up, r, x, lane);
    if (lane == 0)
        out[r] = act_f32(g, u, act, limit);
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
    unsigned grid = lm_cuda_blocks((size_t)w->out, MV_WARPS);
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
        if (k < 0 || (i && (k != kind || nbi != nb)))
            return 0;
        kind = k, nb = nbi;
        m.w[i] = *w[i];
        m.y[i] = y[i];
        rows += (size_t)w[i]->out;
    }
    m.n = n;
    unsigned grid = lm_cuda_blocks(rows, MV_WARPS);
    MV_DISPATCH(matvec_n, kind, nb, grid, m, x);
    lm_cuda_launched(c, "matvec_n");
    return 1;
}

/* out = act(gate x) * (up x) in one launch; 0 when the two weights differ in variant or shape. */
int lm_cuda_matvec_glu(cuda_backend *c, const lm_linear *gate, const lm_linear *up, const float *x, lm_act act,
                       float limit, float *out) {
    int nbg, nbu, kg = mv_kind(gate, x, &nbg), ku = mv_kind(up, x, &nbu);
    if (kg < 0 || kg != ku || nbg != nbu || gate->out != up->out)
        return 0;
    unsigned grid = lm_cuda_blocks((size_t)gate->out, MV_WARPS);
    MV_DISPATCH(matvec_glu, kg, nbg, grid, *gate, *up, x, (int)act, limit, out);
    lm_cuda_launched(c, "matvec_glu");
    return 1;
}
