/* KV caches, one per layer, token-major rows [n_kv_heads*head_dim] with the absolute position of
 * each row (rows need not be in order: attention masks by position).
 * - standard: grows in steps of LM_KV_STEP rows (as mlx-lm's KVCache does), so decoding N tokens
 *   costs O(N) appends;
 * - rotating (span > 0): before rows are appended at positions p0.., every row with
 *   keep <= pos < p0 - span is dead and its slot is reused, so a layer holds at most
 *   keep + span + (tokens per call) rows. Sliding-window layers use keep 0, span window-1 (the
 *   rows no future query can see: the same attention as a full cache with a window mask);
 *   --max-kv-size M uses keep 4, span M-4-1 on every layer (mlx-lm's RotatingKVCache). */
#ifndef LM_CACHE_KV_CACHE_H
#define LM_CACHE_KV_CACHE_H
#include <stdint.h>

#include "backend/backend.h"

#define LM_KV_STEP 256

typedef struct lm_kv_layer {
    float *k, *v;     /* [cap, dim] (backend memory) */
    int32_t *pos;     /* [cap] absolute positions (host) */
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
} lm_kv_cache;

lm_status lm_kv_init(lm_kv_cache *c, lm_backend *be, int n_layers, int dim, int max_rows);
void lm_kv_free(lm_kv_cache *c);
void lm_kv_reset(lm_kv_cache *c);
/* Append T rows of k and v (backend memory; host memory too: a device backend copies either) at
 * positions pos (host memory). */
lm_status lm_kv_append(lm_kv_cache *c, int layer, const float *k, const float *v, const int32_t *pos, int T);
/* Drop every row at position >= n. Fails (LM_ERR_UNSUPPORTED) when a layer has already evicted
 * rows, since positions before n may be gone. */
lm_status lm_kv_truncate(lm_kv_cache *c, int n);
/* Bytes held by the cache. */
size_t lm_kv_bytes(const lm_kv_cache *c);

#endif
