/* KV caches, one per layer, token-major rows [n_kv_heads*head_dim] with the absolute position of
 * each row (rows need not be in order: attention masks by position).
 * - standard: grows in steps of LM_KV_STEP rows (as mlx-lm's KVCache does), so decoding N tokens
 *   costs O(N) appends;
 * - rotating (window W > 0, for sliding-window layers): a new row takes the slot of a row no
 *   future query can see (position <= first new position - W), so the layer holds at most
 *   W - 1 + (tokens per call) rows: O(window) memory, and the same attention as a full cache
 *   with a window mask. */
#ifndef LM_CACHE_KV_CACHE_H
#define LM_CACHE_KV_CACHE_H
#include <stdint.h>

#include "backend/backend.h"

#define LM_KV_STEP 256

typedef struct lm_kv_layer {
    float *k, *v;     /* [cap, dim] (backend memory) */
    int32_t *pos;     /* [cap] absolute positions (host) */
    int cap, n;       /* rows allocated, rows used */
    int dim;          /* n_kv_heads * head_dim */
    int window;       /* 0: standard; else rotating over this many positions */
} lm_kv_layer;

typedef struct lm_kv_cache {
    lm_backend *be;
    lm_kv_layer *layers; /* [n_layers] */
    int n_layers;
    int max_rows;        /* hard limit (context) */
} lm_kv_cache;

lm_status lm_kv_init(lm_kv_cache *c, lm_backend *be, int n_layers, int dim, int max_rows);
void lm_kv_free(lm_kv_cache *c);
void lm_kv_reset(lm_kv_cache *c);
/* Append T rows of k and v (host or backend memory as the backend expects) at positions pos. */
lm_status lm_kv_append(lm_kv_cache *c, int layer, const float *k, const float *v, const int32_t *pos, int T);
/* Bytes held by the cache. */
size_t lm_kv_bytes(const lm_kv_cache *c);

#endif
