#include "cache/kv_cache.h"

#include <stdlib.h>
#include <string.h>

size_t lm_kv_row_bytes(const lm_kv_cache *c, const lm_kv_layer *L) {
    return c->bits ? (size_t)L->dim * c->bits / 8 : (size_t)L->dim * sizeof(float);
}

int lm_kv_groups(const lm_kv_cache *c, const lm_kv_layer *L) { return lm_kv_packed(c) ? L->dim / c->group : 0; }

lm_status lm_kv_init(lm_kv_cache *c, lm_backend *be, int n_layers, int dim, int max_rows, int f16) {
    memset(c, 0, sizeof *c);
    c->be = be;
    c->bits = c->base_bits = f16 ? LM_KV_F16 : 0;
    c->n_layers = n_layers;
    c->max_rows = max_rows;
    c->layers = calloc((size_t)n_layers, sizeof *c->layers);
    if (!c->layers)
        return lm_err(LM_ERR_NOMEM, "out of memory for the KV cache");
    for (int l = 0; l < n_layers; l++)
        c->layers[l].dim = dim;
    return LM_OK;
}

static void release_layer(lm_kv_cache *c, lm_kv_layer *L) {
    void *bufs[6] = {L->k, L->v, L->ks, L->kb, L->vs, L->vb};
    for (int i = 0; i < 6; i++)
        c->be->ops->release(c->be, bufs[i]);
    L->k = L->v = NULL;
    L->ks = L->kb = L->vs = L->vb = NULL;
}

static void free_pos(lm_kv_cache *c, lm_kv_layer *L) {
    free(L->pos);
    c->be->ops->release(c->be, L->pos_d);
    L->pos = L->pos_d = NULL;
}

/* Positions of slots [slot, slot+n): the host array and its backend mirror. */
static void set_pos(lm_kv_cache *c, lm_kv_layer *L, int slot, const int32_t *pos, int n) {
    memcpy(L->pos + slot, pos, (size_t)n * sizeof *pos);
    c->be->ops->upload(c->be, L->pos_d + slot, pos, (size_t)n * sizeof *pos);
}

void lm_kv_set_rows(lm_kv_cache *c, int layer, const int32_t *pos, int n) {
    set_pos(c, &c->layers[layer], 0, pos, n);
    c->layers[layer].n = n;
}

void lm_kv_free(lm_kv_cache *c) {
    if (!c->layers)
        return;
    for (int l = 0; l < c->n_layers; l++) {
        release_layer(c, &c->layers[l]);
        free_pos(c, &c->layers[l]);
    }
    c->be->ops->release(c->be, c->dq_k);
    c->be->ops->release(c->be, c->dq_v);
    free(c->layers);
    c->layers = NULL;
}

void lm_kv_reset(lm_kv_cache *c) {
    for (int l = 0; l < c->n_layers; l++) {
        lm_kv_layer *L = &c->layers[l];
        if (c->bits != c->base_bits) { /* a new sequence starts in the base format again */
            release_layer(c, L);
            free_pos(c, L);
            L->cap = 0;
        }
        L->n = 0;
        L->evicted = 0;
    }
    c->bits = c->base_bits;
    c->group = 0;
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

/* --- storage ---------------------------------------------------------------------------------------- */

/* Reallocate layer L to `cap` rows in the cache's current format, keeping its n rows. */
static lm_status resize(lm_kv_cache *c, lm_kv_layer *L, int cap) {
    lm_backend *be = c->be;
    size_t rb = lm_kv_row_bytes(c, L), sb = (size_t)lm_kv_groups(c, L) * sizeof(float);
    lm_kv_layer N = *L;
    N.k = be->ops->alloc(be, (size_t)cap * rb);
    N.v = be->ops->alloc(be, (size_t)cap * rb);
    N.ks = N.kb = N.vs = N.vb = NULL;
    int ok = N.k && N.v;
    if (sb) {
        N.ks = be->ops->alloc(be, (size_t)cap * sb);
        N.kb = be->ops->alloc(be, (size_t)cap * sb);
        N.vs = be->ops->alloc(be, (size_t)cap * sb);
        N.vb = be->ops->alloc(be, (size_t)cap * sb);
        ok = ok && N.ks && N.kb && N.vs && N.vb;
    }
    N.pos = malloc((size_t)cap * sizeof *N.pos);
    N.pos_d = be->ops->alloc(be, (size_t)cap * sizeof *N.pos_d);
    if (!ok || !N.pos || !N.pos_d) {
        release_layer(c, &N);
        free_pos(c, &N);
        lm_status st = be->ops->status ? be->ops->status(be) : LM_OK;
        if (st != LM_OK)
            return lm_err_prefix(st, "growing the KV cache to %d tokens", cap);
        return lm_err(LM_ERR_NOMEM, "out of memory growing the KV cache to %d tokens", cap);
    }
    if (L->n) {
        be->ops->copy(be, N.k, L->k, (size_t)L->n * rb);
        be->ops->copy(be, N.v, L->v, (size_t)L->n * rb);
        if (sb) {
            be->ops->copy(be, N.ks, L->ks, (size_t)L->n * sb);
            be->ops->copy(be, N.kb, L->kb, (size_t)L->n * sb);
            be->ops->copy(be, N.vs, L->vs, (size_t)L->n * sb);
            be->ops->copy(be, N.vb, L->vb, (size_t)L->n * sb);
        }
        memcpy(N.pos, L->pos, (size_t)L->n * sizeof *N.pos);
        be->ops->copy(be, N.pos_d, L->pos_d, (size_t)L->n * sizeof *N.pos_d);
    }
    release_layer(c, L);
    free_pos(c, L);
    N.cap = cap;
    *L = N;
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
    return resize(c, L, cap);
}

lm_status lm_kv_prepare_append(lm_kv_cache *c, int T) {
    if (lm_kv_packed(c))
        return LM_ERR_UNSUPPORTED;
    for (int l = 0; l < c->n_layers; l++)
        if (c->layers[l].span > 0)
            return LM_ERR_UNSUPPORTED;
    for (int l = 0; l < c->n_layers; l++) {
        lm_kv_layer *L = &c->layers[l];
        if (L->n + T > c->max_rows)
            return LM_ERR_UNSUPPORTED; /* the append reports the error */
        if (L->n + T > L->cap)
            LM_TRY(grow(c, L, L->n + T));
    }
    return LM_OK;
}

lm_status lm_kv_reserve(lm_kv_cache *c, int layer, int n) {
    lm_kv_layer *L = &c->layers[layer];
    return n > L->cap ? resize(c, L, n) : LM_OK;
}

/* Write n f32 rows into slots s.. of plane (data, scales, biases; no scales unless packed). */
static void store_rows(lm_kv_cache *c, const lm_kv_layer *L, uint8_t *data, float *sc, float *bi, int s, int n,
                       const float *rows) {
    size_t rb = lm_kv_row_bytes(c, L), ng = (size_t)lm_kv_groups(c, L);
    if (!c->bits)
        c->be->ops->copy(c->be, data + (size_t)s * rb, rows, (size_t)n * rb);
    else
        c->be->ops->kv_quantize(c->be, rows, n, L->dim, c->bits, c->group, data + (size_t)s * rb,
                                ng ? sc + (size_t)s * ng : NULL, ng ? bi + (size_t)s * ng : NULL);
}

/* n rows of k and v (f32) at slots slot.. with positions pos */
static void put_rows(lm_kv_cache *c, lm_kv_layer *L, int slot, int n, const float *k, const float *v,
                     const int32_t *pos) {
    store_rows(c, L, L->k, L->ks, L->kb, slot, n, k);
    store_rows(c, L, L->v, L->vs, L->vb, slot, n, v);
    set_pos(c, L, slot, pos, n);
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
            put_rows(c, L, s, 1, k + (size_t)t * L->dim, v + (size_t)t * L->dim, pos + t);
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
    put_rows(c, L, L->n, T - t, k + (size_t)t * L->dim, v + (size_t)t * L->dim, pos + t);
    L->n += T - t;
    return LM_OK;
}

lm_status lm_kv_append(lm_kv_cache *c, int layer, float *k, const float *v, const int32_t *pos, int T,
                       const lm_rope_args *rope) {
    lm_kv_layer *L = &c->layers[layer];
    lm_backend *be = c->be;
    int consecutive = 1;
    for (int t = 1; t < T && consecutive; t++)
        consecutive = pos[t] == pos[0] + t;
    int direct = L->span <= 0 && !lm_kv_packed(c) && consecutive && be->ops->kv_put && L->n + T <= c->max_rows;
    if (direct && L->n + T > L->cap)
        LM_TRY(grow(c, L, L->n + T));
    size_t rb = lm_kv_row_bytes(c, L);
    /* one kernel: rows, positions, rope */
    if (direct && be->ops->kv_put(be, L->k + (size_t)L->n * rb, L->v + (size_t)L->n * rb, k, v, T, L->dim,
                                  L->pos_d + L->n, pos[0], rope, c->bits == LM_KV_F16)) {
        memcpy(L->pos + L->n, pos, (size_t)T * sizeof *pos);
        L->n += T;
        return LM_OK;
    }
    if (rope) {
        be->ops->rope(be, rope->q, T, rope->n_heads, rope->head_dim, rope->rot_dim, rope->cs);
        be->ops->rope(be, k, T, rope->n_kv, rope->head_dim, rope->rot_dim, rope->cs);
    }
    if (L->span > 0)
        return append_rotating(c, L, k, v, pos, T);
    if (L->n + T > c->max_rows)
        return lm_err(LM_ERR_CONTEXT, "the sequence (%d tokens) exceeds the context of %d tokens", L->n + T,
                      c->max_rows);
    if (L->n + T > L->cap)
        LM_TRY(grow(c, L, L->n + T));
    put_rows(c, L, L->n, T, k, v, pos);
    L->n += T;
    return LM_OK;
}

/* --- other formats ----------------------------------------------------------------------------- */

/* Room in the f32 scratch for `rows` rows. */
static lm_status ensure_dq(lm_kv_cache *c, int rows, int dim) {
    if (rows <= c->dq_cap)
        return LM_OK;
    c->be->ops->release(c->be, c->dq_k);
    c->be->ops->release(c->be, c->dq_v);
    c->dq_k = c->be->ops->alloc(c->be, (size_t)rows * dim * sizeof(float));
    c->dq_v = c->be->ops->alloc(c->be, (size_t)rows * dim * sizeof(float));
    c->dq_cap = c->dq_k && c->dq_v ? rows : 0;
    return c->dq_cap ? LM_OK : lm_err(LM_ERR_NOMEM, "out of memory converting the KV cache to f32");
}

/* Every slot of L (stored with bits, group) as f32 into the scratch, which has room. An empty slot
 * of a rotating cache converts to whatever it holds; attention skips it by its negative position. */
static void to_f32(lm_kv_cache *c, const lm_kv_layer *L, int bits, int group) {
    c->be->ops->kv_dequant(c->be, L->k, L->ks, L->kb, L->n, L->dim, bits, group, c->dq_k);
    c->be->ops->kv_dequant(c->be, L->v, L->vs, L->vb, L->n, L->dim, bits, group, c->dq_v);
}

lm_status lm_kv_quantize(lm_kv_cache *c, int bits, int group) {
    if (c->bits == bits || lm_kv_packed(c))
        return LM_OK;
    int dim = c->layers[0].dim, old_bits = c->bits, old_group = c->group, most = 0;
    if (bits == LM_KV_F16)
        group = 0;
    else if ((bits < 2 || bits > 8 || bits == 7) || (group != 32 && group != 64 && group != 128) || dim % group)
        return lm_err(LM_ERR_INVALID_ARG, "KV cache quantization: bits must be 2-6 or 8 and the group size "
                      "32, 64 or 128 dividing the row size %d (got %d bits, group %d)", dim, bits, group);
    for (int l = 0; l < c->n_layers; l++)
        most = c->layers[l].n > most ? c->layers[l].n : most;
    if (old_bits) /* f16 rows reach the new format through f32 */
        LM_TRY(ensure_dq(c, most, dim));
    lm_kv_layer *fresh = calloc((size_t)c->n_layers, sizeof *fresh);
    if (!fresh)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    /* allocate every layer's new planes first, so a failure leaves the cache intact */
    c->bits = bits;
    c->group = group;
    lm_status st = LM_OK;
    for (int l = 0; l < c->n_layers && st == LM_OK; l++) {
        fresh[l] = c->layers[l];
        fresh[l].k = fresh[l].v = NULL;
        fresh[l].ks = fresh[l].kb = fresh[l].vs = fresh[l].vb = NULL;
        fresh[l].pos = fresh[l].pos_d = NULL;
        fresh[l].n = 0;
        st = resize(c, &fresh[l], c->layers[l].cap > 0 ? c->layers[l].cap : 1);
    }
    if (st != LM_OK) {
        for (int l = 0; l < c->n_layers; l++) {
            release_layer(c, &fresh[l]);
            free_pos(c, &fresh[l]);
        }
        c->bits = old_bits;
        c->group = old_group;
        free(fresh);
        return st;
    }
    for (int l = 0; l < c->n_layers; l++) {
        lm_kv_layer *old = &c->layers[l], *L = &fresh[l];
        const float *k = (const float *)old->k, *v = (const float *)old->v;
        if (old_bits) {
            to_f32(c, old, old_bits, old_group);
            k = c->dq_k;
            v = c->dq_v;
        }
        if (old->n)
            put_rows(c, L, 0, old->n, k, v, old->pos);
        L->n = old->n;
        release_layer(c, old);
        free_pos(c, old);
        *old = *L;
    }
    free(fresh);
    return LM_OK;
}

lm_status lm_kv_rows(lm_kv_cache *c, int layer, const void **k, const void **v, int *f16) {
    lm_kv_layer *L = &c->layers[layer];
    *f16 = c->bits == LM_KV_F16 && c->be->ops->attn_f16;
    if (!c->bits || *f16) {
        *k = L->k;
        *v = L->v;
        return LM_OK;
    }
    LM_TRY(ensure_dq(c, L->n > 0 ? L->cap : 0, L->dim));
    to_f32(c, L, c->bits, c->group);
    *k = c->dq_k;
    *v = c->dq_v;
    return LM_OK;
}

size_t lm_kv_bytes(const lm_kv_cache *c) {
    size_t n = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const lm_kv_layer *L = &c->layers[l];
        n += (size_t)L->cap * 2 * (lm_kv_row_bytes(c, L) + 2 * (size_t)lm_kv_groups(c, L) * sizeof(float));
    }
    return n;
}
