/* A linear weight W [out, in] as stored: dense (f32/f16/bf16) or packed (MLX affine, MXFP4).
 * y = x W^T (+ bias). Views of row ranges share the storage (fused qkv/gate_up projections). */
#ifndef LM_LAYERS_LINEAR_H
#define LM_LAYERS_LINEAR_H
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"

typedef enum { LM_W_DENSE, LM_W_AFFINE, LM_W_MXFP4, LM_W_COUNT } lm_wkind;

typedef struct lm_linear {
    lm_wkind kind;
    lm_dtype dtype;       /* dense: element type; affine: scales/biases type */
    int out, in;          /* logical shape */
    const void *w;        /* dense [out, in]; affine u32 [out, in*bits/32]; mxfp4 u8 [out, in/2] */
    const void *scales;   /* affine [out, in/group] (dtype); mxfp4 u8 e8m0 [out, in/32] */
    const void *biases;   /* affine [out, in/group] (dtype) */
    int bits, group;      /* affine: 2..8 bits; group 32/64/128; mxfp4: group 32 */
    size_t w_row_bytes, s_row_bytes; /* bytes per row of w and of scales/biases */
    size_t in_step;       /* dense: elements between consecutive inputs of a row (1: contiguous;
                             transposed or interleaved expert weights of GPT-OSS use more) */
    const float *bias;    /* optional additive bias [out], f32 */
} lm_linear;

/* A view of rows [r0, r0+n). */
lm_linear lm_linear_rows(const lm_linear *w, int r0, int n);
/* Dequantize/convert row r into out[in]. */
void lm_linear_row_f32(const lm_linear *w, int r, float *out);
/* Bytes the weight occupies (for bandwidth accounting). */
size_t lm_linear_bytes(const lm_linear *w);
/* Number of logical parameters. */
static inline int64_t lm_linear_params(const lm_linear *w) { return (int64_t)w->out * w->in; }

#endif
