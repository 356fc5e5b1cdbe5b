/* Prompt caches: a context's KV cache and the tokens that produced it, as a safetensors file
 *   layers.<l>.keys [n, dim] f32, layers.<l>.values [n, dim] f32, layers.<l>.positions [n] i32,
 *   tokens [n_tokens] i32
 * with __metadata__ naming the format, the model and the cache layout, so a file is only
 * loaded into a context that would have produced the same cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "models/model.h"

#define FORMAT "lmcore-prompt-cache"

/* "model_type|layers|dim|keep:span,keep:span,..." identifies model and cache layout. */
static void layout_string(const lm_ctx *c, char *buf, size_t cap) {
    const lm_model *m = c->m;
    size_t n = (size_t)snprintf(buf, cap, "%s|%d|%d|%d|%lld|", m->cfg.model_type, m->cfg.n_layers, c->kv.layers[0].dim,
                                m->cfg.vocab, (long long)m->n_params);
    for (int l = 0; l < c->kv.n_layers && n < cap; l++)
        n += (size_t)snprintf(buf + n, cap - n, "%d:%d,", c->kv.layers[l].keep, c->kv.layers[l].span);
}

lm_status lm_ctx_save(const lm_ctx *c, const char *path, const int32_t *tokens, int n_tokens) {
    if (!c || !path || n_tokens < 0 || (n_tokens && !tokens))
        return lm_err(LM_ERR_INVALID_ARG, "lm_ctx_save: bad argument");
    int L = c->kv.n_layers;
    lm_st_out *outs = calloc((size_t)L * 3 + 1, sizeof *outs);
    char (*names)[48] = calloc((size_t)L * 3, sizeof *names);
    char layout[8192], meta[9000];
    if (!outs || !names) {
        free(outs);
        free(names);
        return lm_err(LM_ERR_NOMEM, "out of memory");
    }
    /* keys and values come to the host (they live in backend memory) */
    size_t total = 1;
    for (int l = 0; l < L; l++)
        total += 2 * (size_t)c->kv.layers[l].n * c->kv.layers[l].dim;
    float *host = malloc(total * sizeof *host), *hp = host;
    if (!host) {
        free(outs);
        free(names);
        return lm_err(LM_ERR_NOMEM, "out of memory");
    }
    lm_backend *be = c->kv.be;
    int k = 0, evicted = 0;
    for (int l = 0; l < L; l++) {
        const lm_kv_layer *kv = &c->kv.layers[l];
        size_t rows = (size_t)kv->n * kv->dim;
        float *hk = hp, *hv = hp + rows;
        hp += 2 * rows;
        be->ops->download(be, hk, kv->k, rows * sizeof(float));
        be->ops->download(be, hv, kv->v, rows * sizeof(float));
        evicted |= kv->evicted;
        const char *part[3] = {"keys", "values", "positions"};
        const void *data[3] = {hk, hv, kv->pos};
        for (int j = 0; j < 3; j++, k++) {
            snprintf(names[k], sizeof names[k], "layers.%d.%s", l, part[j]);
            outs[k].name = names[k];
            outs[k].dtype = j == 2 ? LM_DT_I32 : LM_DT_F32;
            outs[k].ndim = j == 2 ? 1 : 2;
            outs[k].shape[0] = kv->n;
            outs[k].shape[1] = kv->dim;
            outs[k].data = kv->n ? data[j] : "";
        }
    }
    outs[k] = (lm_st_out){"tokens", LM_DT_I32, 1, {n_tokens}, n_tokens ? (const void *)tokens : ""};
    layout_string(c, layout, sizeof layout);
    snprintf(meta, sizeof meta, "{\"format\":\"%s\",\"version\":\"1\",\"layout\":\"%s\",\"n_past\":\"%d\",\"evicted\":\"%d\"}",
             FORMAT, layout, c->n_past, evicted);
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

static lm_status load_layers(lm_ctx *c, const lm_st_set *st, const char *path) {
    for (int l = 0; l < c->kv.n_layers; l++) {
        lm_kv_layer *kv = &c->kv.layers[l];
        char kn[48], vn[48], pn[48];
        snprintf(kn, sizeof kn, "layers.%d.keys", l);
        snprintf(vn, sizeof vn, "layers.%d.values", l);
        snprintf(pn, sizeof pn, "layers.%d.positions", l);
        const lm_st_tensor *tk = lm_st_find(st, kn), *tv = lm_st_find(st, vn), *tp = lm_st_find(st, pn);
        if (!tk || !tv || !tp)
            return lm_err(LM_ERR_FORMAT, "%s: layer %d of the prompt cache is missing", path, l);
        int64_t n = tp->numel;
        if (tp->dtype != LM_DT_I32 || tk->dtype != LM_DT_F32 || tv->dtype != LM_DT_F32 || tk->ndim != 2 ||
            tk->shape[0] != n || tk->shape[1] != kv->dim || tv->numel != tk->numel || n > INT32_MAX / 2)
            return lm_err(LM_ERR_SHAPE, "%s: layer %d of the prompt cache has the wrong shape", path, l);
        if (n == 0)
            continue;
        /* append in one call, then restore the stored slots exactly (rotating layers keep order-free rows) */
        int span = kv->span;
        kv->span = 0;
        lm_status s = lm_kv_append(&c->kv, l, tk->data, tv->data, tp->data, (int)n);
        kv->span = span;
        if (s != LM_OK)
            return s;
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
    const char *fmt = NULL, *layout = NULL, *n_past_s = NULL, *evicted_s = NULL;
    char want[8192];
    if (!st->metadata || lm_json_parse(st->metadata, strlen(st->metadata), path, &meta) != LM_OK) {
        s = lm_err(LM_ERR_FORMAT, "%s: not an lmcore prompt cache (no metadata)", path);
        goto done;
    }
    if ((s = meta_str(meta, "format", &fmt, path)) != LM_OK || (s = meta_str(meta, "layout", &layout, path)) ||
        (s = meta_str(meta, "n_past", &n_past_s, path)) || (s = meta_str(meta, "evicted", &evicted_s, path)))
        goto done;
    layout_string(c, want, sizeof want);
    if (strcmp(fmt, FORMAT) != 0 || strcmp(layout, want) != 0) {
        s = lm_err(LM_ERR_INVALID_ARG, "%s: the prompt cache was made by another model or cache setting (%s; this "
                   "context: %s)", path, layout, want);
        goto done;
    }
    int n_past = atoi(n_past_s);
    const lm_st_tensor *tt = lm_st_find(st, "tokens");
    if (!tt || tt->dtype != LM_DT_I32 || tt->ndim != 1 || n_past < 0 || tt->numel > n_past) {
        s = lm_err(LM_ERR_FORMAT, "%s: bad token list in the prompt cache", path);
        goto done;
    }
    lm_ctx_reset(c);
    if ((s = load_layers(c, st, path)) != LM_OK) {
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
