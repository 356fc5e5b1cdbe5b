/* KV caches, one per layer, token-major rows [n_kv_heads*head_dim] with the absolute position of
 * each row (rows need not be in order: attention masks by position).
 * - standard: grows in steps of LM_KV_STEP rows (as mlx-lm's KVCache does), so decoding N tokens
 *   costs O(N) appends;
 * - rotating (span > 0): before rows are appended at positions p0.., every row with
 *   keep <= pos < p0 - span is dead and its slot is reused, so a layer holds at most
 *   keep + span + (tokens per call) rows. Sliding-window layers use keep 0, span window-1 (the
 *   rows no future query can see: the same attention as a full cache with a window mask);
 *   --max-kv-size M uses keep 4, span M-4-1 on every layer (mlx-lm's RotatingKVCache);
 * - quantized (after lm_kv_quantize): rows are stored MLX-affine packed (bits, group along the
 *   row, f32 scales and biases, as mlx-lm's QuantizedKVCache) and dequantized for attention.
 * Rows start as f32, or as f16 (LM_KV_F16; half the memory, llama.cpp's default cache type),
 * which attention reads as they are where the backend can (backend.h's attn_f16) and from an f32
 * copy elsewhere. */
#ifndef LM_CACHE_KV_CACHE_H
#define LM_CACHE_KV_CACHE_H
#include <stdint.h>

#include "backend/backend.h"

#define LM_KV_STEP 256
#define LM_KV_F16 16 /* lm_kv_cache.bits of f16 rows (no scales) */

typedef struct lm_kv_layer {
    uint8_t *k, *v;   /* [cap, row bytes] (backend memory): f32 or f16 rows, or packed when quantized */
    float *ks, *kb, *vs, *vb; /* quantized: [cap, dim/group] scales and biases */
    int32_t *pos;     /* [cap] absolute positions (host); < 0: empty slot */
    int32_t *pos_d;   /* [cap] the same in backend memory (what attention reads) */
    int cap, n;       /* rows allocated, rows used */
    int dim;          /* n_kv_heads * head_dim */
    int keep, span;   /* rotating when span > 0 (see above) */
    int evicted;      /* a row was dropped: the sequence can no longer be truncated */
} lm_kv_layer;

typedef struct lm_kv_cache {
    lm_backend *be;
    lm_kv_layer *layers; /* [n_layers] */
    int n_layers;
    int max_rows;        /* hard limit for standard layers (the context) */
    int bits, group;     /* 0: f32 rows; LM_KV_F16: f16 rows; 2..8: packed */
    int base_bits;       /* the format a sequence starts in (0 or LM_KV_F16) */
    float *dq_k, *dq_v;  /* dequantized rows of one layer [dq_cap, dim] */
    int dq_cap;
} lm_kv_cache;

/* f16: rows are stored as f16 (else f32) until lm_kv_quantize. */
lm_status lm_kv_init(lm_kv_cache *c, lm_backend *be, int n_layers, int dim, int max_rows, int f16);
void lm_kv_free(lm_kv_cache *c);
void lm_kv_reset(lm_kv_cache *c);
/* Append T f32 rows of k and v (backend memory) at positions pos (host memory). With rope (NULL:
 * none), rope->q and the keys are first rotated (the backend's kv_put may do both on the way into
 * the cache; otherwise the rope op rotates q and k in place). */
lm_status lm_kv_append(lm_kv_cache *c, int layer, float *k, const float *v, const int32_t *pos, int T,
                       const lm_rope_args *rope);
/* The layer's rows for attention: f16 (*f16 = 1) where they are stored so and the backend's
 * attention reads them, else f32 (converted into scratch when stored otherwise). */
lm_status lm_kv_rows(lm_kv_cache *c, int layer, const void **k, const void **v, int *f16);
/* Store every row (present and future) in another format: bits LM_KV_F16 (group ignored), or
 * quantized to bits 2..8 with group 32/64/128 dividing dim. A quantized cache stays so. */
lm_status lm_kv_quantize(lm_kv_cache *c, int bits, int group);
/* Rows are stored packed (quantized). */
static inline int lm_kv_packed(const lm_kv_cache *c) { return c->bits && c->bits != LM_KV_F16; }
/* Bytes of one stored row of k (or v) and the number of scale groups per row (0: not packed). */
size_t lm_kv_row_bytes(const lm_kv_cache *c, const lm_kv_layer *L);
int lm_kv_groups(const lm_kv_cache *c, const lm_kv_layer *L);
/* Make room in every layer for the next T appended rows, so that lm_kv_append allocates nothing
 * (recorded steps). Returns LM_ERR_UNSUPPORTED when an append could still allocate or quantize
 * (rotating layers, packed rows): the caller then runs the step as usual. */
lm_status lm_kv_prepare_append(lm_kv_cache *c, int T);
/* Make room for n rows (raw restores by the prompt cache). */
lm_status lm_kv_reserve(lm_kv_cache *c, int layer, int n);
/* Set the positions of rows [0, n) (host memory) and the layer's row count to n. */
void lm_kv_set_rows(lm_kv_cache *c, int layer, const int32_t *pos, int n);
/* Drop every row at position >= n. Fails (LM_ERR_UNSUPPORTED) when a layer has already evicted
 * rows, since positions before n may be gone. */
lm_status lm_kv_truncate(lm_kv_cache *c, int n);
/* Bytes held by the cache. */
size_t lm_kv_bytes(const lm_kv_cache *c);

#endif
