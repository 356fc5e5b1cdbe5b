/* Prompt caches: a context's KV cache and the tokens that produced it, as a safetensors file
 *   layers.<l>.keys [n, dim] f32 (or as stored: f16, packed u8 with scales and biases),
 *   layers.<l>.values [n, dim] likewise, layers.<l>.positions [n] i32,
 *   tokens [n_tokens] i32
 * with __metadata__ naming the format, the model and the cache layout, so a file is only
 * loaded into a context that would have produced the same cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "models/model.h"

#define FORMAT "lmcore-prompt-cache"

/* "model_type|layers|dim|vocab|params|kv_bits/group/start[/f16]|keep:span,..." identifies the
 * model and the cache settings. */
static void layout_string(const lm_ctx *c, char *buf, size_t cap) {
    const lm_model *m = c->m;
    size_t n = (size_t)snprintf(buf, cap, "%s|%d|%d|%d|%lld|%d/%d/%d%s|", m->cfg.model_type, m->cfg.n_layers,
                                c->kv.layers[0].dim, m->cfg.vocab, (long long)m->n_params, c->params.kv_bits,
                                c->params.kv_group_size, c->params.quantized_kv_start, c->kv.base_bits ? "/f16" : "");
    for (int l = 0; l < c->kv.n_layers && n < cap; l++)
        n += (size_t)snprintf(buf + n, cap - n, "%d:%d,", c->kv.layers[l].keep, c->kv.layers[l].span);
}

/* The planes of a layer as stored: keys, values (f32 or f16 [n, dim], or packed u8 [n, row bytes])
 * and, when packed, their scales and biases (f32 [n, groups]). */
#define N_PLANES 6
static const char *const PLANE[N_PLANES] = {"keys", "values", "key_scales", "key_biases", "value_scales",
                                            "value_biases"};

static void planes(const lm_kv_cache *kv, const lm_kv_layer *L, void *ptr[N_PLANES], size_t width[N_PLANES]) {
    void *p[N_PLANES] = {L->k, L->v, L->ks, L->kb, L->vs, L->vb};
    size_t rb = lm_kv_row_bytes(kv, L), sb = (size_t)lm_kv_groups(kv, L) * sizeof(float);
    for (int i = 0; i < N_PLANES; i++) {
        ptr[i] = p[i];
        width[i] = i < 2 ? rb : sb;
    }
}

/* The dtype of plane j in the cache's format. */
static lm_dtype plane_dtype(const lm_kv_cache *kv, int j) {
    return j >= 2 || !kv->bits ? LM_DT_F32 : kv->bits == LM_KV_F16 ? LM_DT_F16 : LM_DT_U8;
}

lm_status lm_ctx_save(const lm_ctx *c, const char *path, const int32_t *tokens, int n_tokens) {
    if (!c || !path || n_tokens < 0 || (n_tokens && !tokens))
        return lm_err(LM_ERR_INVALID_ARG, "lm_ctx_save: bad argument");
    int L = c->kv.n_layers, per = lm_kv_packed(&c->kv) ? N_PLANES + 1 : 3;
    lm_st_out *outs = calloc((size_t)L * per + 1, sizeof *outs);
    char (*names)[48] = calloc((size_t)L * per, sizeof *names);
    char layout[8192], meta[9000];
    if (!outs || !names) {
        free(outs);
        free(names);
        return lm_err(LM_ERR_NOMEM, "out of memory");
    }
    /* the planes live in backend memory: bring them to the host */
    size_t total = 1;
    for (int l = 0; l < L; l++) {
        void *ptr[N_PLANES];
        size_t width[N_PLANES];
        planes(&c->kv, &c->kv.layers[l], ptr, width);
        for (int j = 0; j < per - 1; j++)
            total += (size_t)c->kv.layers[l].n * width[j];
    }
    uint8_t *host = malloc(total), *hp = host;
    if (!host) {
        free(outs);
        free(names);
        return lm_err(LM_ERR_NOMEM, "out of memory");
    }
    lm_backend *be = c->kv.be;
    int k = 0, evicted = 0;
    for (int l = 0; l < L; l++) {
        const lm_kv_layer *kv = &c->kv.layers[l];
        void *ptr[N_PLANES];
        size_t width[N_PLANES];
        planes(&c->kv, kv, ptr, width);
        for (int j = 0; j < per - 1; j++) {
            size_t bytes = (size_t)kv->n * width[j];
            if (bytes)
                be->ops->download(be, hp, ptr[j], bytes);
            ptr[j] = hp;
            hp += bytes;
        }
        evicted |= kv->evicted;
        for (int j = 0; j < per - 1; j++, k++) {
            snprintf(names[k], sizeof names[k], "layers.%d.%s", l, PLANE[j]);
            lm_dtype dt = plane_dtype(&c->kv, j);
            outs[k] = (lm_st_out){names[k], dt, 2, {kv->n, (int64_t)(width[j] / LM_DTYPES[dt].size)},
                                  kv->n ? ptr[j] : ""};
        }
        snprintf(names[k], sizeof names[k], "layers.%d.positions", l);
        outs[k] = (lm_st_out){names[k], LM_DT_I32, 1, {kv->n}, kv->n ? (const void *)kv->pos : ""};
        k++;
    }
    outs[k] = (lm_st_out){"tokens", LM_DT_I32, 1, {n_tokens}, n_tokens ? (const void *)tokens : ""};
    layout_string(c, layout, sizeof layout);
    snprintf(meta, sizeof meta,
             "{\"format\":\"%s\",\"version\":\"1\",\"layout\":\"%s\",\"n_past\":\"%d\",\"evicted\":\"%d\","
             "\"quantized\":\"%d/%d\"}",
             FORMAT, layout, c->n_past, evicted, c->kv.bits, c->kv.group);
    lm_status st = lm_st_write(path, outs, k + 1, meta);
    free(host);
    free(outs);
    free(names);
    return st;
}

static lm_status meta_str(const cJSON *meta, const char *key, const char **out, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, key);
    if (!cJSON_IsString(v))
        return lm_err(LM_ERR_FORMAT, "%s: not an lmcore prompt cache (metadata \"%s\" missing)", path, key);
    *out = v->valuestring;
    return LM_OK;
}

/* Restore every layer's rows byte for byte (the context is empty and in the file's format). */
static lm_status load_layers(lm_ctx *c, const lm_st_set *st, const char *path) {
    int per = lm_kv_packed(&c->kv) ? N_PLANES : 2;
    for (int l = 0; l < c->kv.n_layers; l++) {
        lm_kv_layer *kv = &c->kv.layers[l];
        char name[64];
        snprintf(name, sizeof name, "layers.%d.positions", l);
        const lm_st_tensor *tp = lm_st_find(st, name);
        if (!tp || tp->dtype != LM_DT_I32 || tp->ndim != 1 || tp->numel > INT32_MAX / 2)
            return lm_err(LM_ERR_FORMAT, "%s: layer %d of the prompt cache is missing", path, l);
        int n = (int)tp->numel;
        const lm_st_tensor *t[N_PLANES];
        void *ptr[N_PLANES];
        size_t width[N_PLANES];
        LM_TRY(lm_kv_reserve(&c->kv, l, n > 0 ? n : 1));
        planes(&c->kv, kv, ptr, width);
        for (int j = 0; j < per; j++) {
            snprintf(name, sizeof name, "layers.%d.%s", l, PLANE[j]);
            t[j] = lm_st_find(st, name);
            if (!t[j] || t[j]->dtype != plane_dtype(&c->kv, j) || t[j]->ndim != 2 || t[j]->shape[0] != n ||
                (size_t)t[j]->nbytes != (size_t)n * width[j])
                return lm_err(LM_ERR_SHAPE, "%s: '%s' of the prompt cache has the wrong shape", path, name);
        }
        for (int j = 0; j < per; j++)
            if (n)
                c->kv.be->ops->upload(c->kv.be, ptr[j], t[j]->data, t[j]->nbytes);
        lm_kv_set_rows(&c->kv, l, tp->data, n);
    }
    return LM_OK;
}

lm_status lm_ctx_load(lm_ctx *c, const char *path, int32_t **tokens, int *n_tokens) {
    if (!c || !path || !tokens || !n_tokens)
        return lm_err(LM_ERR_INVALID_ARG, "lm_ctx_load: NULL argument");
    *tokens = NULL;
    *n_tokens = 0;
    lm_st_set *st;
    LM_TRY(lm_st_open_file(path, &st));
    cJSON *meta = NULL;
    lm_status s = LM_OK;
    const char *fmt = NULL, *layout = NULL, *n_past_s = NULL, *evicted_s = NULL, *quant_s = NULL;
    char want[8192];
    int qbits = 0, qgroup = 0;
    if (!st->metadata || lm_json_parse(st->metadata, strlen(st->metadata), path, &meta) != LM_OK) {
        s = lm_err(LM_ERR_FORMAT, "%s: not an lmcore prompt cache (no metadata)", path);
        goto done;
    }
    if ((s = meta_str(meta, "format", &fmt, path)) != LM_OK || (s = meta_str(meta, "layout", &layout, path)) ||
        (s = meta_str(meta, "n_past", &n_past_s, path)) || (s = meta_str(meta, "evicted", &evicted_s, path)) ||
        (s = meta_str(meta, "quantized", &quant_s, path)))
        goto done;
    layout_string(c, want, sizeof want);
    if (strcmp(fmt, FORMAT) != 0 || strcmp(layout, want) != 0) {
        s = lm_err(LM_ERR_INVALID_ARG, "%s: the prompt cache was made by another model or cache setting (%s; this "
                   "context: %s)", path, layout, want);
        goto done;
    }
    int n_past = atoi(n_past_s);
    const lm_st_tensor *tt = lm_st_find(st, "tokens");
    if (!tt || tt->dtype != LM_DT_I32 || tt->ndim != 1 || n_past < 0 || tt->numel > n_past ||
        sscanf(quant_s, "%d/%d", &qbits, &qgroup) != 2) {
        s = lm_err(LM_ERR_FORMAT, "%s: bad token list or metadata in the prompt cache", path);
        goto done;
    }
    lm_ctx_reset(c);
    if ((qbits && (s = lm_kv_quantize(&c->kv, qbits, qgroup)) != LM_OK) || (s = load_layers(c, st, path)) != LM_OK) {
        lm_ctx_reset(c);
        goto done;
    }
    for (int l = 0; l < c->kv.n_layers; l++)
        c->kv.layers[l].evicted = atoi(evicted_s) != 0;
    c->n_past = n_past;
    *n_tokens = (int)tt->numel;
    *tokens = malloc((size_t)tt->numel * sizeof(int32_t) + 1);
    if (!*tokens) {
        lm_ctx_reset(c);
        s = lm_err(LM_ERR_NOMEM, "out of memory");
        goto done;
    }
    memcpy(*tokens, tt->data, (size_t)tt->numel * sizeof(int32_t));
done:
    cJSON_Delete(meta);
    lm_st_close(st);
    return s;
}

void lm_free_tokens(int32_t *tokens) { free(tokens); }
