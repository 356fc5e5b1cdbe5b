/* Decode matrix-vector products (one token): y[out] = W x, streaming the weight at full width.
 * One warp per output row; each lane reads the row in NB-byte vectors (16 when the row and its
 * base are 16-byte aligned, else 8 or 4), U vectors in flight before the first use, and
 * dequantizes in registers: dense bf16/f16/f32, MLX affine 4 and 8 bit (one scale group per
 * vector: sum q*x and sum x, then scale and bias once). Other formats take linear.cu's kernel. */
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

template <int KIND, int NB>
__global__ void __launch_bounds__(MV_WARPS * 32) matvec(lm_linear w, const float *__restrict__ x, float *__restrict__ y) {
    typedef typename mv_vec<NB>::t vec;
    const int per = mv_per<KIND, NB>::n;
    int r = blockIdx.x * MV_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= w.out)
        return;
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
    acc = warp_sum(acc);
    if (lane == 0)
        y[r] = acc + (w.bias ? w.bias[r] : 0.0f);
}

template <int KIND>
static void matvec_launch(cuda_backend *c, const lm_linear *w, int nb, const float *x, float *y) {
    unsigned grid = lm_cuda_blocks((size_t)w->out, MV_WARPS);
    if (nb == 16)
        matvec<KIND, 16><<<grid, MV_WARPS * 32, 0, c->stream>>>(*w, x, y);
    else if (nb == 8)
        matvec<KIND, 8><<<grid, MV_WARPS * 32, 0, c->stream>>>(*w, x, y);
    else
        matvec<KIND, 4><<<grid, MV_WARPS * 32, 0, c->stream>>>(*w, x, y);
    lm_cuda_launched(c, "matvec");
}

/* Returns 1 when it queued y = W x for this weight, 0 when the format needs the generic kernel. */
int lm_cuda_matvec(cuda_backend *c, const lm_linear *w, const float *x, float *y) {
    int kind;
    if (w->kind == LM_W_DENSE && w->in_step <= 1)
        kind = w->dtype == LM_DT_BF16 ? MV_BF16 : w->dtype == LM_DT_F16 ? MV_F16 : w->dtype == LM_DT_F32 ? MV_F32 : -1;
    else if (w->kind == LM_W_AFFINE && (w->bits == 4 || w->bits == 8))
        kind = w->bits == 4 ? MV_Q4 : MV_Q8;
    else
        return 0;
    if (kind < 0 || ((uintptr_t)x & 15))
        return 0;
    int nb = 16;
    while (nb >= 4 && (((uintptr_t)w->w | w->w_row_bytes) & (size_t)(nb - 1)))
        nb /= 2;
    if (nb < 4)
        return 0;
    /* elements per vector: the row must hold whole vectors; affine: one group per vector */
    int per = kind == MV_F32 ? nb / 4 : kind == MV_Q4 ? nb * 2 : kind == MV_Q8 ? nb : nb / 2;
    if (w->in % per)
        return 0;
    if ((kind == MV_Q4 || kind == MV_Q8) && (w->group % per || per % 4))
        return 0;
    switch (kind) {
    case MV_BF16: matvec_launch<MV_BF16>(c, w, nb, x, y); break;
    case MV_F16: matvec_launch<MV_F16>(c, w, nb, x, y); break;
    case MV_F32: matvec_launch<MV_F32>(c, w, nb, x, y); break;
    case MV_Q4: matvec_launch<MV_Q4>(c, w, nb, x, y); break;
    default: matvec_launch<MV_Q8>(c, w, nb, x, y); break;
    }
    return 1;
}
