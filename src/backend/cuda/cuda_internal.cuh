/* CUDA backend internals shared by the op files: the backend struct, error recording (every
 * CUDA call checked; the first failure is kept and reported by the status op), launch helpers
 * and device-side readers of stored weights. */
#ifndef LM_CUDA_INTERNAL_CUH
#define LM_CUDA_INTERNAL_CUH
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "backend/backend.h"
}

/* Device scratch buffers, grown on demand (lm_cuda_scratch). */
enum {
    LM_CUDA_SCR_XB,
    LM_CUDA_SCR_WB,
    LM_CUDA_SCR_ATTN,
    LM_CUDA_SCR_KVH,
    LM_CUDA_SCR_SAMPLE,
    LM_CUDA_SCR_EDIT, /* the logit changes of edit_logits */
    LM_CUDA_SCR_COUNT
};

#define LM_CUDA_STAGE_BYTES (1u << 20) /* pinned staging ring for small uploads */

#define LM_CUDA_ATTN_TICKETS 512 /* split attention runs for fewer (token, kv head) pairs */
#define LM_CUDA_ARGMAX_BLOCKS 256 /* most blocks of one argmax launch (sample.cu) */

/* The per-block partials of the argmax and sample ops' passes over a row and the ticket their
 * last block takes (zeroed at creation; the ticket wraps back to 0 at the end of each launch). */
typedef struct lm_cuda_argmax_scratch {
    double sum[LM_CUDA_ARGMAX_BLOCKS]; /* sum(exp(x - the chunk's max)), or (sampling) of its kept weights */
    float max[LM_CUDA_ARGMAX_BLOCKS];  /* the chunk's max */
    unsigned ticket;                   /* blocks done */
} lm_cuda_argmax_scratch;

typedef struct cuda_backend {
    lm_backend base;
    int device;
    cudaStream_t stream;
    lm_status err;   /* first deferred error (LM_OK: none) */
    char msg[512];   /* its message */
    void *scratch[LM_CUDA_SCR_COUNT];       /* device memory */
    size_t scratch_bytes[LM_CUDA_SCR_COUNT];
    void *cublas;    /* cublasHandle_t, created at the first GEMM (gemm.cu) */
    uint8_t *stage;  /* [LM_CUDA_STAGE_BYTES] pinned host memory, or NULL (uploads then block) */
    size_t stage_off;
    int graphs;      /* record_begin may capture (LMCORE_CUDA_GRAPHS=1 at creation) */
    int fuse;        /* fused decode ops run fused (LMCORE_CUDA_FUSE=0 at creation: separately) */
    int capturing;   /* between record_begin and record_end */
    int pdl;         /* lm_cuda_launch lets kernels start early (LMCORE_CUDA_PDL=0 at creation: off) */
    int qx;          /* affine matvecs take integer dot products (LMCORE_CUDA_QX=0 at creation: float) */
    int sms;         /* multiprocessors of the device */
    cudaGraphExec_t exec; /* the last step's executable graph, updated in place while its shape holds */
    lm_cuda_argmax_scratch *argmax; /* device memory of the argmax op */
    unsigned *attn_tickets;         /* [LM_CUDA_ATTN_TICKETS] blocks of split attention done per
                                     * (token, kv head), zeroed at creation (attention.cu) */
} cuda_backend;

static inline cuda_backend *cu_be(lm_backend *be) { return (cuda_backend *)be; }

/* Record the first failure; returns 1 when e is cudaSuccess. */
int lm_cuda_check(cuda_backend *c, cudaError_t e, const char *what);
/* Record a failure that is not a CUDA error (an unsupported shape, say). */
void lm_cuda_fail(cuda_backend *c, lm_status code, const char *what);
/* Check the last launch (named `kernel`). */
static inline void lm_cuda_launched(cuda_backend *c, const char *kernel) {
    lm_cuda_check(c, cudaGetLastError(), kernel);
}
/* Work is skipped once an error is pending (the status op clears it). */
static inline int lm_cuda_skip(cuda_backend *c) { return c->err != LM_OK; }

static inline unsigned lm_cuda_blocks(size_t n, unsigned per) { return (unsigned)((n + per - 1) / per); }

/* Scratch slot `slot` with at least `bytes` bytes (grown on demand; NULL after an error). */
void *lm_cuda_scratch(cuda_backend *c, int slot, size_t bytes);

/* --- programmatic dependent launch ----------------------------------------------------------------
 * A kernel queued with lm_cuda_launch may start while the kernel before it in the stream is still
 * running (once that one has called lm_pdl_next in every block), so that its launch and its first
 * weight loads overlap the other's tail. Such a kernel calls lm_pdl_wait before it touches any
 * activation (read or write): that returns once the kernel before has finished and its writes
 * are visible (which, kernel by kernel, covers every earlier one). Weights may be read before. A
 * kernel queued any other way waits for the one before it to finish, as usual. */
static __device__ __forceinline__ void lm_pdl_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

static __device__ __forceinline__ void lm_pdl_next(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* kernel<<<grid, block, smem, c->stream>>>(args...) in thread-block clusters of `cluster` blocks
 * (1 x 1 x 1: none), with early start when c->pdl; the launch is checked under `name`. */
template <typename... P, typename... A>
static inline void lm_cuda_launch_cluster(cuda_backend *c, const char *name, void (*kernel)(P...), dim3 grid,
                                          dim3 block, size_t smem, dim3 cluster, A... args) {
    cudaLaunchAttribute at[2];
    unsigned n = 0;
    if (c->pdl) {
        at[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[n++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (cluster.x * cluster.y * cluster.z > 1) {
        at[n].id = cudaLaunchAttributeClusterDimension;
        at[n].val.clusterDim.x = cluster.x;
        at[n].val.clusterDim.y = cluster.y;
        at[n++].val.clusterDim.z = cluster.z;
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = c->stream;
    cfg.attrs = at;
    cfg.numAttrs = n;
    lm_cuda_check(c, cudaLaunchKernelEx(&cfg, kernel, args...), name);
}

/* kernel<<<grid, block, smem, c->stream>>>(args...), with early start when c->pdl; the launch is
 * checked under `name`. */
template <typename... P, typename... A>
static inline void lm_cuda_launch(cuda_backend *c, const char *name, void (*kernel)(P...), dim3 grid, dim3 block,
                                  size_t smem, A... args) {
    lm_cuda_launch_cluster(c, name, kernel, grid, block, smem, dim3(1, 1, 1), args...);
}

/* --- device helpers ------------------------------------------------------------------------- */

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over a block of up to 1024 threads (every thread gets the result). */
static __device__ __forceinline__ double block_sum(double v) {
    __shared__ double part[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads(); /* part[] may still be read by a previous call */
    if (lane == 0)
        part[w] = v;
    __syncthreads();
    double s = 0;
    for (int i = 0; i < nw; i++)
        s += part[i];
    return s;
}

static __device__ __forceinline__ float bf16_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

static __device__ __forceinline__ float f16_to_f32(uint16_t h) { return __half2float(__ushort_as_half(h)); }

/* KV cache values, f32 or f16 rows (backend.h's kv_f16): one, two (aligned to two) or four
 * (aligned to four) as floats, and a store. */
static __device__ __forceinline__ float kv_ld1(const float *p) { return *p; }
static __device__ __forceinline__ float kv_ld1(const __half *p) { return __half2float(*p); }
static __device__ __forceinline__ float2 kv_ld2(const float *p) { return *(const float2 *)p; }
static __device__ __forceinline__ float2 kv_ld2(const __half *p) { return __half22float2(*(const __half2 *)p); }
static __device__ __forceinline__ float4 kv_ld4(const float *p) { return *(const float4 *)p; }
static __device__ __forceinline__ float4 kv_ld4(const __half *p) {
    uint2 u = *(const uint2 *)p;
    float2 a = __half22float2(*(const __half2 *)&u.x), b = __half22float2(*(const __half2 *)&u.y);
    return make_float4(a.x, a.y, b.x, b.y);
}
static __device__ __forceinline__ void kv_st(float *p, float v) { *p = v; }
static __device__ __forceinline__ void kv_st(__half *p, float v) { *p = __float2half_rn(v); }

/* Element i of a float array of dtype dt starting at byte address p (any alignment for f32). */
static __device__ __forceinline__ float scalar_at(const uint8_t *p, int dt, size_t i) {
    if (dt == LM_DT_BF16)
        return bf16_to_f32(((const uint16_t *)p)[i]);
    if (dt == LM_DT_F16)
        return f16_to_f32(((const uint16_t *)p)[i]);
    const uint8_t *b = p + 4 * i;
    if (((uintptr_t)b & 3) == 0)
        return *(const float *)b;
    uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return __uint_as_float(u);
}

/* The k-th `bits`-wide value of an LSB-first little-endian bit stream (quant.h's lm_bits_get). */
static __device__ __forceinline__ uint32_t bits_at(const uint8_t *s, int bits, size_t k) {
    size_t bit = k * (size_t)bits, byte = bit >> 3;
    unsigned sh = (unsigned)(bit & 7);
    uint32_t v = s[byte];
    if (sh + (unsigned)bits > 8)
        v |= (uint32_t)s[byte + 1] << 8;
    if (sh + (unsigned)bits > 16)
        v |= (uint32_t)s[byte + 2] << 16;
    return (v >> sh) & ((1u << bits) - 1);
}

static __device__ __forceinline__ float e2m1_to_f32(unsigned nib) {
    const float mag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    float v = mag[nib & 7];
    return (nib & 8) ? -v : v;
}

static __device__ __forceinline__ float e8m0_to_f32(uint8_t e) {
    return e == 0xff ? __int_as_float(0x7fc00000) : ldexpf(1.0f, (int)e - 127);
}

/* W[r][i] of a weight as stored (dense, MLX affine, MXFP4), in f32. */
static __device__ __forceinline__ float weight_at(const lm_linear &w, int r, int i) {
    const uint8_t *row = (const uint8_t *)w.w + (size_t)r * w.w_row_bytes;
    if (w.kind == LM_W_DENSE)
        return scalar_at(row, w.dtype, (size_t)i * (w.in_step > 1 ? w.in_step : 1));
    if (w.kind == LM_W_AFFINE) {
        const uint8_t *s = (const uint8_t *)w.scales + (size_t)r * w.s_row_bytes;
        const uint8_t *b = (const uint8_t *)w.biases + (size_t)r * w.s_row_bytes;
        int g = i / w.group;
        return (float)bits_at(row, w.bits, (size_t)i) * scalar_at(s, w.dtype, (size_t)g) + scalar_at(b, w.dtype, (size_t)g);
    }
    uint8_t byte = row[i >> 1];
    unsigned nib = (i & 1) ? byte >> 4 : byte & 15;
    const uint8_t *s = (const uint8_t *)w.scales + (size_t)r * w.s_row_bytes;
    return e2m1_to_f32(nib) * e8m0_to_f32(s[i / 32]);
}

/* The gated activations: act(g) * u (LM_ACT_SWIGLU_OAI clamps at limit). */
static __device__ __forceinline__ float act_f32(float g, float u, int act, float limit) {
    switch (act) {
    case LM_ACT_SILU:
        return g / (1.0f + expf(-g)) * u;
    case LM_ACT_GELU_TANH:
        return 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g))) * u;
    case LM_ACT_SWIGLU_OAI: { /* GPT-OSS: clamped, alpha 1.702, (up + 1) */
        float x = g < limit ? g : limit;
        float y = u < -limit ? -limit : u > limit ? limit : u;
        return x / (1.0f + expf(-1.702f * x)) * (y + 1.0f);
    }
    default:
        return 0.5f * g * (1.0f + erff(g * 0.7071067811865476f)) * u;
    }
}

/* --- ops (one .cu per family) ------------------------------------------------------------------ */

/* What a decode matvec does around the product (matvec.cu): nw (an RMSNorm's weights, eps; 16-byte
 * aligned; served by the MLX 4/8-bit kernel only) makes it W (rmsnorm(x) * nw); acc adds the
 * result to y instead of storing it. */
typedef struct lm_cuda_mv_io {
    const float *nw;
    float eps;
    int acc;
} lm_cuda_mv_io;
static const lm_cuda_mv_io lm_cuda_mv_plain = {NULL, 0.0f, 0};
/* Fast paths of lm_cuda_linear; each returns 0 when it does not handle the weight (or io). */
int lm_cuda_matvec(cuda_backend *c, const lm_linear *w, const float *x, float *y, lm_cuda_mv_io io); /* T == 1 */
int lm_cuda_gemm(cuda_backend *c, const lm_linear *w, const float *x, int T, float *y);    /* T large */
/* n weights sharing x (converted once); 0 when they do not all take the same cuBLAS path */
int lm_cuda_gemm_n(cuda_backend *c, int n, const lm_linear *const *w, const float *x, int T, float *const *y);
void lm_cuda_gemm_free(cuda_backend *c);
int lm_cuda_weights_to_f16(lm_backend *be, void *p, size_t n);
int lm_cuda_matvec_n(cuda_backend *c, int n, const lm_linear *const *w, const float *x, float *const *y,
                     lm_cuda_mv_io io);
int lm_cuda_matvec_glu(cuda_backend *c, const lm_linear *gate, const lm_linear *up, const float *x, lm_act act,
                       float limit, float *out, lm_cuda_mv_io io);
/* x += y (when y), then h = rmsnorm(x) * w, row by row (rows of float4 where n and the
 * addresses allow, else element by element). */
void lm_cuda_rms_rows(cuda_backend *c, float *x, const float *y, const float *w, int rows, int n, float eps, float *h);
int lm_cuda_attention_tc(cuda_backend *c, const lm_attn_args *a); /* 0: shape not handled */
#define LM_CUDA_GEMM_MIN_T 64 /* tokens from which linear goes through cuBLAS */

void lm_cuda_linear(lm_backend *be, const lm_linear *w, const float *x, int T, float *y);
void lm_cuda_embed(lm_backend *be, const lm_linear *table, const int32_t *ids, int T, float scale, float *out);
void lm_cuda_rmsnorm(lm_backend *be, const float *x, const float *w, int rows, int n, float eps, float *y);
void lm_cuda_rms_match(lm_backend *be, float *y, const float *ref, int T, int n);
void lm_cuda_sparsify(lm_backend *be, float *x, int T, int n, float mult);
void lm_cuda_rope(lm_backend *be, float *x, int T, int n_heads, int head_dim, int rot_dim, const float *cs);
void lm_cuda_attention(lm_backend *be, const lm_attn_args *a);
void lm_cuda_glu(lm_backend *be, const float *gate, const float *up, int ld, int T, int n, lm_act act, float limit,
                 float *out);
void lm_cuda_add(lm_backend *be, float *x, const float *y, size_t n);
void lm_cuda_scale(lm_backend *be, float *x, float s, size_t n);
void lm_cuda_softcap(lm_backend *be, float *x, float cap, size_t n);
void lm_cuda_mul_rows(lm_backend *be, float *x, const float *w, int rows, int n);
void lm_cuda_moe_route(lm_backend *be, const float *logits, int T, int E, int K, int topk_softmax, int norm_topk,
                       int32_t *idx, float *w);
void lm_cuda_gather_rows(lm_backend *be, const float *src, const int32_t *rows, int n, int dim, float *dst);
void lm_cuda_scatter_add_rows(lm_backend *be, float *dst, const float *src, const int32_t *rows, const float *w, int n,
                              int dim);
void lm_cuda_altup_predict(lm_backend *be, const float *streams, const float *coef, int ns, int T, int H, float *pred);
void lm_cuda_linear_n(lm_backend *be, int n, const lm_linear *const *w, const float *x, int T, float *const *y);
void lm_cuda_linear_glu(lm_backend *be, const lm_linear *gate, const lm_linear *up, const float *x, int T, lm_act act,
                        float limit, float *g_buf, float *u_buf, float *out);
int lm_cuda_matvec_add(lm_backend *be, const lm_linear *w, const float *x, float *y);
int lm_cuda_norm_matvec_n(lm_backend *be, const float *nw, float eps, int n, const lm_linear *const *w,
                          const float *x, float *const *y);
int lm_cuda_norm_matvec_glu(lm_backend *be, const float *nw, float eps, const lm_linear *gate, const lm_linear *up,
                            const float *x, lm_act act, float limit, float *out);
void lm_cuda_add_rmsnorm(lm_backend *be, float *x, const float *y, const float *w, int rows, int n, float eps,
                         float *h);
int lm_cuda_kv_put(lm_backend *be, void *kd, void *vd, const float *k, const float *v, int T, int dim,
                   int32_t *pos_d, int32_t p0, const lm_rope_args *rope, int f16);
void lm_cuda_altup_correct(lm_backend *be, float *streams, const float *pred, const float *x, const float *active,
                           const float *w, int ns, int T, int H);
void lm_cuda_argmax(lm_backend *be, const float *x, int V, lm_argmax_out *out);
void lm_cuda_sample(lm_backend *be, const float *x, int V, const lm_sample_args *a, lm_argmax_out *out);
void lm_cuda_edit_logits(lm_backend *be, float *x, const lm_logit_op *ops, int n);
void lm_cuda_kv_quantize(lm_backend *be, const float *x, int n, int dim, int bits, int group, uint8_t *q, float *s,
                         float *b);
void lm_cuda_kv_dequant(lm_backend *be, const uint8_t *q, const float *s, const float *b, int n, int dim, int bits,
                        int group, float *out);

#endif
