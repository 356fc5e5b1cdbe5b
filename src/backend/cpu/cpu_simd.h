/* CPU kernel sets, one per instruction-set level, chosen at run time by CPU detection.
 * The scalar set is the portable reference every other set is tested against
 * (tests/kernels). A backend holds a pointer to its set; nothing here is process state. */
#ifndef LM_CPU_SIMD_H
#define LM_CPU_SIMD_H
#include <stddef.h>
#include <stdint.h>

#include "layers/linear.h"

typedef enum {
    LM_ISA_SCALAR, /* portable C */
    LM_ISA_AVX2,   /* AVX2 + FMA + F16C */
    LM_ISA_AVX512, /* AVX-512 F/BW/VL/DQ/VNNI/VBMI + FMA + F16C (Ice Lake, Zen 4, Sapphire Rapids) */
    LM_ISA_COUNT
} lm_isa;

/* Decode reads weights far beyond the TLB's reach, 4 KiB page after page (file mappings of a
 * page cache are mostly small pages). A prefetch this far ahead of each row starts the page walk
 * of a page well before the stream gets there; the hardware prefetchers stop at page borders.
 * Measured on Zen 4 (a KVM guest, 2 threads): Qwen3-0.6B q8 decode steps 9-10% faster, a plain
 * streaming read 2-25% faster (32 KiB to 128 KiB ahead did about as well, 512 KiB did not). */
#define LM_PAGE_AHEAD ((size_t)64 << 10)

/* The packed decode kernels prefetch each line of a row's stream this far ahead into L2
 * (prefetcht1), not into L1: measured on Zen 4 (2 threads, Llama-3.2-1B shape, A/B in one
 * process) against two rows ahead into L1, decode steps 13% (q8) and 16% (q4) faster, the 8192-wide
 * down projection 35% (q8); 8-16 KiB ahead did equally well, 4 KiB or less (into L1 or L2) did not. */
#define LM_LINE_AHEAD ((size_t)8 << 10)

/* Rows per block in the prefill GEMM: these are converted to f32 once and reused by all tokens. */
#define LM_GEMM_ROWS 16

/* The input of a matrix-vector product, prepared once per call. */
typedef struct lm_xvec {
    const float *x;   /* [in] */
    const float *sum; /* [in/group] sums of x per quantization group (packed weights) */
    const int16_t *q; /* [in] x / d[group], rounded: int16 activations (sets with quant_x) */
    const float *d;   /* [in/group] their scales */
    const float *corr; /* [in/group] sum(x) - d * sum(q): the rounding left in each group */
} lm_xvec;

/* The input of a prefill product, prepared once per call. */
typedef struct lm_xmat {
    const float *x;   /* [T, in] */
    int T;
    const int16_t *q; /* NULL, or [T, in] int16 activations (prep_xmat) */
    const float *d, *sum; /* [T, in/group] their scales, and sums of x */
} lm_xmat;

/* Rows of a KV cache as the attention kernels read them: row r of head group g starts at value
 * r*stride + g*hd of k (v alike); query head h reads group h / (nh/nkv). */
typedef struct lm_attn_rows {
    const void *k, *v;  /* [n][stride] f32 values, or f16 when f16 */
    size_t stride;      /* values between rows (>= nkv*hd) */
    int n;              /* rows */
    int nh, nkv, hd;    /* query heads, kv heads (nh % nkv == 0), head dim */
    int stream;         /* 1: few query tokens (decode), the rows come from memory once: a set
                           may then read each row front to back instead of in blocks */
    int f16;            /* the rows are f16 */
} lm_attn_rows;

/* The address of value i of f32 (or f16) rows p. */
static inline const void *lm_kv_at(const void *p, size_t i, int f16) {
    return f16 ? (const void *)((const uint16_t *)p + i) : (const void *)((const float *)p + i);
}

/* Scratch floats per thread that gemm_rows needs. */
#define LM_GEMM_SCRATCH(in) (2 * (size_t)LM_GEMM_ROWS * (size_t)(in) + 64)

typedef struct lm_cpu_kernels {
    lm_isa isa;
    const char *name;
    /* 1 when matvec reads this weight directly (else the caller converts rows with row_f32) */
    int (*matvec_ok)(const lm_linear *w);
    /* y[r - r0] = x . W[r] for r in [r0, r1). For packed weights x->sum is set, and x->q/x->d
     * too when the set has quant_x. */
    void (*matvec)(const lm_linear *w, const lm_xvec *x, int r0, int r1, float *y);
    /* NULL, or: quantize x per group of `group` to q with d = max|x_group| / LM_XQ_MAX,
     * |x - q*d| <= d/2 (to float rounding); sum and corr as in lm_xvec. Packed codes are
     * centred (q - 2^(bits-1)) through corr, which halves the error of the int16 input. */
    void (*quant_x)(const float *x, int in, int group, int layout, int16_t *q, float *d, float *sum, float *corr);
    /* the layout of q that matvec expects for w (LM_XL_*) */
    int (*x_layout)(const lm_linear *w);
    /* Row r of w as f32 into out[in]. */
    void (*row_f32)(const lm_linear *w, int r, float *out);
    /* NULL, or: prepare the prefill input of w as int16 per group (natural order, no centring
     * residual); returns 0 when this set multiplies w in float (then q stays unused). */
    int (*prep_xmat)(const lm_linear *w, const float *x, int T, int16_t *q, float *d, float *sum);
    /* Prefill: rows [r0, r0+nr) (nr <= LM_GEMM_ROWS) for all tokens, y[t*ldy + r - r0];
     * scratch: LM_GEMM_SCRATCH(in) floats. */
    void (*gemm_rows)(const lm_linear *w, const lm_xmat *x, int r0, int nr, float *y, int ldy, float *scratch);
    /* y[t*ldy + r] = x[t*ldx ..] . wf[r*n ..] for t < T, r < R (wf: R f32 rows of n). */
    void (*gemm)(const float *x, int ldx, int T, const float *wf, int R, int n, float *y, int ldy);
    float (*dot)(const float *a, const float *b, int n);
    /* s[i] = exp(s[i] - mx) (s[i] = -inf gives 0); returns the sum */
    float (*exp_sum)(float *s, int n, float mx);
    /* out[i] = silu(g[i]) * u[i] */
    void (*silu_mul)(const float *g, const float *u, float *out, int n);
    /* y[i] += a * x[i] */
    void (*axpy)(float *y, float a, const float *x, int n);
    /* s[h*lds + r] = scale * q[h] . k[r] (its group) for h < nh, r < n; q [nh][hd] */
    void (*attn_scores)(const lm_attn_rows *a, const float *q, float scale, float *s, size_t lds);
    /* out[h][i] += sum_r p[h*lds + r] * v[r] (its group)[i] for h < nh, i < hd; out [nh][hd] */
    void (*attn_values)(const lm_attn_rows *a, const float *p, size_t lds, float *out);
} lm_cpu_kernels;

/* The set for `isa`, or NULL when this CPU (or build) cannot run it. */
const lm_cpu_kernels *lm_cpu_kernels_get(lm_isa isa);
/* The fastest set this CPU runs. LMCORE_ISA=scalar|avx2|avx512 in the environment caps it. */
const lm_cpu_kernels *lm_cpu_kernels_best(void);
const char *lm_isa_name(lm_isa isa);

/* Sums of x per group of `group` elements: out[in/group]. */
void lm_group_sums(const float *x, int in, int group, float *out);
/* Layouts of the int16 input: natural; or per 64 elements the 32 even ones then the 32 odd
 * ones (a trailing 32: 16 even, 16 odd) to meet 4-bit codes split into low and high nibbles;
 * or (BYTES) each value split as q = 256 h + l with h, l signed bytes, per 64 elements the 64
 * h then the 64 l (a trailing 32: 32 h, 32 l) in the same storage, for byte-by-byte products
 * (|q| <= LM_XQ_MAX keeps h within a signed byte). */
enum { LM_XL_NATURAL = 0, LM_XL_NIBBLES = 1, LM_XL_BYTES = 2 };
static inline int lm_xq_pos(int i, int in, int layout) {
    if (layout == LM_XL_NATURAL)
        return i;
    int base = i / 64 * 64, cs = in - base < 64 ? in - base : 64, k = i - base;
    return base + (k % 2) * (cs / 2) + k / 2;
}
/* Element i of an input in any layout, and storing it. */
static inline int lm_xq_get(const int16_t *q, int i, int in, int layout) {
    if (layout != LM_XL_BYTES)
        return q[lm_xq_pos(i, in, layout)];
    int base = i / 64 * 64, cs = in - base < 64 ? in - base : 64;
    const int8_t *b = (const int8_t *)(q + base);
    return 256 * b[i - base] + b[cs + i - base];
}
static inline void lm_xq_set(int16_t *q, int i, int in, int layout, int v) {
    if (layout != LM_XL_BYTES) {
        q[lm_xq_pos(i, in, layout)] = (int16_t)v;
        return;
    }
    int base = i / 64 * 64, cs = in - base < 64 ? in - base : 64, h = (v + 128) >> 8;
    int8_t *b = (int8_t *)(q + base);
    b[i - base] = (int8_t)h;
    b[cs + i - base] = (int8_t)(v - 256 * h);
}
/* Portable attention kernels (the scalar set's). */
void lm_attn_scores_ref(const lm_attn_rows *a, const float *q, float scale, float *s, size_t lds);
void lm_attn_values_ref(const lm_attn_rows *a, const float *p, size_t lds, float *out);
/* Portable exp_sum and silu_mul (libm expf). */
float lm_exp_sum_ref(float *s, int n, float mx);
void lm_silu_mul_ref(const float *g, const float *u, float *out, int n);
/* gemm_rows from a set's row_f32 and gemm (float). */
void lm_gemm_rows_f32(const lm_cpu_kernels *k, const lm_linear *w, const lm_xmat *x, int r0, int nr, float *y, int ldy,
                      float *scratch);
/* Portable quant_x. */
void lm_quant_x_i16(const float *x, int in, int group, int layout, int16_t *q, float *d, float *sum, float *corr);
#define LM_XQ_MAX 32639.0f /* (32639 + 128) >> 8 = 127 */
/* The group a packed weight's input is prepared in (0 for dense weights). */
static inline int lm_xvec_group(const lm_linear *w) {
    return w->kind == LM_W_AFFINE ? w->group : w->kind == LM_W_MXFP4 ? 32 : 0;
}

/* Per-set tables (cpu_kern_*.c); the x86 ones are NULL-returning stubs elsewhere. */
const lm_cpu_kernels *lm_cpu_kernels_scalar(void);
const lm_cpu_kernels *lm_cpu_kernels_avx2(void);
const lm_cpu_kernels *lm_cpu_kernels_avx512(void);

#endif
