#include "cache/kv_cache.h"

#include <stdlib.h>
#include <string.h>

lm_status lm_kv_init(lm_kv_cache *c, lm_backend *be, int n_layers, int dim, int max_rows) {
    memset(c, 0, sizeof *c);
    c->be = be;
    c->n_layers = n_layers;
    c->max_rows = max_rows;
    c->layers = calloc((size_t)n_layers, sizeof *c->layers);
    if (!c->layers)
        return lm_err(LM_ERR_NOMEM, "out of memory for the KV cache");
    for (int l = 0; l < n_layers; l++)
        c->layers[l].dim = dim;
    return LM_OK;
}

void lm_kv_free(lm_kv_cache *c) {
    if (!c->layers)
        return;
    for (int l = 0; l < c->n_layers; l++) {
        c->be->ops->release(c->be, c->layers[l].k);
        c->be->ops->release(c->be, c->layers[l].v);
        c->be->ops->release(c->be, c->layers[l].pos_d);
        free(c->layers[l].pos);
    }
    free(c->layers);
    c->layers = NULL;
}

void lm_kv_reset(lm_kv_cache *c) {
    for (int l = 0; l < c->n_layers; l++) {
        c->layers[l].n = 0;
        c->layers[l].evicted = 0;
    }
}

lm_status lm_kv_truncate(lm_kv_cache *c, int n) {
    for (int l = 0; l < c->n_layers; l++)
        if (c->layers[l].evicted && c->layers[l].n > 0)
            return lm_err(LM_ERR_UNSUPPORTED, "the KV cache has dropped tokens (rotating cache): it cannot be "
                          "truncated to %d tokens; start the sequence again", n);
    for (int l = 0; l < c->n_layers; l++) {
        lm_kv_layer *L = &c->layers[l];
        int w = 0; /* rows never evicted are in position order */
        while (w < L->n && L->pos[w] < n)
            w++;
        L->n = w;
    }
    return LM_OK;
}

static lm_status grow(lm_kv_cache *c, lm_kv_layer *L, int need) {
    int cap = L->cap;
    while (cap < need)
        cap += LM_KV_STEP;
    if (L->span > 0) /* rotating layers grow only to what is live */
        cap = need;
    if (cap > c->max_rows)
        cap = need > c->max_rows ? need : c->max_rows;
    lm_backend *be = c->be;
    size_t row = (size_t)L->dim * sizeof(float);
    float *k = be->ops->alloc(be, (size_t)cap * row), *v = be->ops->alloc(be, (size_t)cap * row);
    int32_t *pos_d = be->ops->alloc(be, (size_t)cap * sizeof *pos_d);
    int32_t *pos = malloc((size_t)cap * sizeof *pos);
    if (!k || !v || !pos || !pos_d) {
        be->ops->release(be, k);
        be->ops->release(be, v);
        be->ops->release(be, pos_d);
        free(pos);
        lm_status st = be->ops->status ? be->ops->status(be) : LM_OK;
        if (st != LM_OK)
            return lm_err_prefix(st, "growing the KV cache to %d tokens", cap);
        return lm_err(LM_ERR_NOMEM, "out of memory growing the KV cache to %d tokens", cap);
    }
    if (L->n) {
        be->ops->copy(be, k, L->k, (size_t)L->n * row);
        be->ops->copy(be, v, L->v, (size_t)L->n * row);
        be->ops->copy(be, pos_d, L->pos_d, (size_t)L->n * sizeof *pos_d);
        memcpy(pos, L->pos, (size_t)L->n * sizeof *pos);
    }
    be->ops->release(be, L->k);
    be->ops->release(be, L->v);
    be->ops->release(be, L->pos_d);
    free(L->pos);
    L->k = k;
    L->v = v;
    L->pos = pos;
    L->pos_d = pos_d;
    L->cap = cap;
    return LM_OK;
}

/* Positions of slots [slot, slot+n): host array and its backend mirror. */
static void set_pos(lm_kv_cache *c, lm_kv_layer *L, int slot, const int32_t *pos, int n) {
    memcpy(L->pos + slot, pos, (size_t)n * sizeof *pos);
    c->be->ops->upload(c->be, L->pos_d + slot, pos, (size_t)n * sizeof *pos);
}

static void put_row(lm_kv_cache *c, lm_kv_layer *L, int slot, const float *k, const float *v, int32_t pos) {
    size_t row = (size_t)L->dim * sizeof(float);
    c->be->ops->copy(c->be, (char *)L->k + (size_t)slot * row, k, row);
    c->be->ops->copy(c->be, (char *)L->v + (size_t)slot * row, v, row);
    set_pos(c, L, slot, &pos, 1);
}

static lm_status append_rotating(lm_kv_cache *c, lm_kv_layer *L, const float *k, const float *v, const int32_t *pos,
                                 int T) {
    int t = 0;
    int32_t dead = pos[0] - L->span; /* rows before this position (and not kept) are dropped */
    for (int s = 0; s < L->n; s++) {
        int32_t p = L->pos[s];
        if (p >= 0 && (p < L->keep || p >= dead))
            continue;
        if (p >= 0)
            L->evicted = 1;
        if (t < T) { /* reuse the slot */
            put_row(c, L, s, k + (size_t)t * L->dim, v + (size_t)t * L->dim, pos[t]);
            t++;
        } else {     /* leave it empty: attention skips negative positions */
            int32_t none = -1;
            set_pos(c, L, s, &none, 1);
        }
    }
    if (t == T)
        return LM_OK;
    if (L->n + (T - t) > L->cap)
        LM_TRY(grow(c, L, L->n + (T - t)));
    for (; t < T; t++)
        put_row(c, L, L->n++, k + (size_t)t * L->dim, v + (size_t)t * L->dim, pos[t]);
    return LM_OK;
}

lm_status lm_kv_append(lm_kv_cache *c, int layer, const float *k, const float *v, const int32_t *pos, int T) {
    lm_kv_layer *L = &c->layers[layer];
    if (L->span > 0)
        return append_rotating(c, L, k, v, pos, T);
    if (L->n + T > c->max_rows)
        return lm_err(LM_ERR_CONTEXT, "the sequence (%d tokens) exceeds the context of %d tokens", L->n + T,
                      c->max_rows);
    if (L->n + T > L->cap)
        LM_TRY(grow(c, L, L->n + T));
    size_t row = (size_t)L->dim * sizeof(float);
    c->be->ops->copy(c->be, (char *)L->k + (size_t)L->n * row, k, (size_t)T * row);
    c->be->ops->copy(c->be, (char *)L->v + (size_t)L->n * row, v, (size_t)T * row);
    set_pos(c, L, L->n, pos, T);
    L->n += T;
    return LM_OK;
}

size_t lm_kv_bytes(const lm_kv_cache *c) {
    size_t n = 0;
    for (int l = 0; l < c->n_layers; l++)
        n += (size_t)c->layers[l].cap * c->layers[l].dim * 2 * sizeof(float);
    return n;
}
