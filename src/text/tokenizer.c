/* The tokenizer: loading tokenizer.json (+ tokenizer_config.json), the encode pipeline,
 * post-processors, and the public lm_tokenizer_* API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "text/tokenizer_impl.h"

/* --- loading: added tokens ------------------------------------------------------------------ */

static lm_status added_push(lm_tokenizer *tok, int *cap, const char *content, int32_t id, const cJSON *j,
                            int def_special, const char *what) {
    int special = def_special, lstrip = 0, rstrip = 0, single = 0, normalized;
    LM_TRY(lm_json_bool(j, "special", def_special, &special, what));
    LM_TRY(lm_json_bool(j, "lstrip", 0, &lstrip, what));
    LM_TRY(lm_json_bool(j, "rstrip", 0, &rstrip, what));
    LM_TRY(lm_json_bool(j, "single_word", 0, &single, what));
    LM_TRY(lm_json_bool(j, "normalized", !special, &normalized, what));
    if (!*content)
        return LM_OK; /* HF ignores empty added tokens */
    for (int i = 0; i < tok->n_added; i++)
        if (tok->added[i].id == id)
            return LM_OK; /* tokenizer.json's entry wins over tokenizer_config.json's */
    if (tok->n_added == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        tk_added *a = realloc(tok->added, (size_t)nc * sizeof *a);
        if (!a)
            return lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
        tok->added = a;
        *cap = nc;
    }
    tk_added *a = &tok->added[tok->n_added];
    memset(a, 0, sizeof *a);
    a->len = strlen(content);
    a->content = malloc(a->len + 1);
    if (!a->content)
        return lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
    memcpy(a->content, content, a->len + 1);
    a->id = id;
    a->special = (uint8_t)special;
    a->lstrip = (uint8_t)lstrip;
    a->rstrip = (uint8_t)rstrip;
    a->single_word = (uint8_t)single;
    a->normalized = (uint8_t)normalized;
    tok->n_added++;
    return LM_OK;
}

static lm_status parse_id(const cJSON *v, int32_t *id, const char *what) {
    *id = -1;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 0x7ffffffe ||
        v->valuedouble != (double)(long long)v->valuedouble)
        return lm_err(LM_ERR_FORMAT, "%s: added token id is not a valid id", what);
    *id = (int32_t)v->valuedouble;
    return LM_OK;
}

static lm_status load_added(lm_tokenizer *tok, const cJSON *root, const cJSON *config, const char *what) {
    int cap = 0;
    const cJSON *arr = lm_json_get(root, "added_tokens");
    if (arr && !cJSON_IsArray(arr))
        return lm_err(LM_ERR_FORMAT, "%s: added_tokens must be an array", what);
    for (const cJSON *e = arr ? arr->child : NULL; e; e = e->next) {
        const char *content = NULL;
        int32_t id;
        LM_TRY(lm_json_str(e, "content", &content, what));
        if (!content)
            return lm_err(LM_ERR_FORMAT, "%s: added token without content", what);
        LM_TRY(parse_id(lm_json_get(e, "id"), &id, what));
        LM_TRY(added_push(tok, &cap, content, id, e, 0, what));
    }
    const cJSON *dec = lm_json_get(config, "added_tokens_decoder");
    if (dec && cJSON_IsObject(dec)) {
        for (const cJSON *e = dec->child; e; e = e->next) {
            const char *content = NULL;
            char *end = NULL;
            long v = strtol(e->string, &end, 10);
            if (!end || *end || v < 0 || v > 0x7ffffffe)
                return lm_err(LM_ERR_FORMAT, "tokenizer_config.json: bad added_tokens_decoder key \"%.20s\"",
                              e->string);
            LM_TRY(lm_json_str(e, "content", &content, "tokenizer_config.json"));
            if (content)
                LM_TRY(added_push(tok, &cap, content, (int32_t)v, e, 1, "tokenizer_config.json"));
        }
    }
    return LM_OK;
}

/* Index added tokens by id and build the two match tries (raw and normalized text). */
static lm_status index_added(lm_tokenizer *tok, const char *what) {
    int32_t n = tok->bpe.vocab.n_ids;
    for (int i = 0; i < tok->n_added; i++)
        if (tok->added[i].id >= n)
            n = tok->added[i].id + 1;
    tok->n_vocab = n;
    tok->added_of_id = malloc(((size_t)n + 1) * sizeof *tok->added_of_id);
    if (!tok->added_of_id)
        return lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
    memset(tok->added_of_id, 0xff, ((size_t)n + 1) * sizeof *tok->added_of_id);
    tk_work w;
    LM_TRY(tk_work_init(&w));
    tk_buf nb = {0};
    lm_status st = LM_OK;
    for (int i = 0; i < tok->n_added && st == LM_OK; i++) {
        tk_added *a = &tok->added[i];
        tok->added_of_id[a->id] = i;
        if (a->normalized && tok->norm) {
            st = tk_norm_apply(tok->norm, &w, a->content, a->len, &nb);
            if (st != LM_OK)
                break;
            a->dec = malloc(nb.n + 1);
            if (!a->dec) {
                st = lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
                break;
            }
            memcpy(a->dec, nb.p ? nb.p : "", nb.n);
            a->dec[nb.n] = 0;
            a->dec_len = nb.n;
            st = tk_trie_add(&tok->trie_norm, a->dec, a->dec_len, i);
        } else {
            a->dec = a->content;
            a->dec_len = a->len;
            st = tk_trie_add(a->normalized ? &tok->trie_norm : &tok->trie_raw, a->content, a->len, i);
        }
    }
    tk_buf_free(&nb);
    tk_work_free(&w);
    return st;
}

/* --- loading: post-processor ---------------------------------------------------------------- */

static lm_status ids_append(int32_t **v, int *n, const int32_t *add, int k, const char *what) {
    int32_t *p = realloc(*v, ((size_t)*n + (size_t)k + 1) * sizeof *p);
    if (!p)
        return lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
    if (k)
        memcpy(p + *n, add, (size_t)k * sizeof *p);
    *v = p;
    *n += k;
    return LM_OK;
}

static lm_status template_special(const lm_tokenizer *tok, const cJSON *specials, const char *name, int32_t **v,
                                  int *n, const char *what) {
    const cJSON *sp = lm_json_get(specials, name);
    const cJSON *ids = lm_json_get(sp, "ids");
    if (!ids || !cJSON_IsArray(ids))
        return lm_err(LM_ERR_FORMAT, "%s: TemplateProcessing special token \"%.40s\" has no ids", what, name);
    for (const cJSON *e = ids->child; e; e = e->next) {
        int32_t id;
        LM_TRY(parse_id(e, &id, what));
        if (id >= tok->n_vocab)
            return lm_err(LM_ERR_FORMAT, "%s: TemplateProcessing id %d is outside the vocab", what, (int)id);
        LM_TRY(ids_append(v, n, &id, 1, what));
    }
    return LM_OK;
}

static lm_status parse_post(lm_tokenizer *tok, const cJSON *j, const char *what) {
    if (!j)
        return LM_OK;
    const char *type = NULL;
    LM_TRY(lm_json_str(j, "type", &type, what));
    if (!type)
        return lm_err(LM_ERR_FORMAT, "%s: post_processor without a \"type\"", what);
    if (strcmp(type, "ByteLevel") == 0)
        return LM_OK; /* only adjusts offsets */
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *items = lm_json_get(j, "processors");
        if (!cJSON_IsArray(items))
            return lm_err(LM_ERR_FORMAT, "%s: Sequence post_processor needs \"processors\"", what);
        for (const cJSON *e = items->child; e; e = e->next)
            LM_TRY(parse_post(tok, e, what));
        return LM_OK;
    }
    int32_t *pre = NULL, *suf = NULL;
    int n_pre = 0, n_suf = 0;
    lm_status st = LM_OK;
    if (strcmp(type, "TemplateProcessing") == 0) {
        const cJSON *single = lm_json_get(j, "single"), *specials = lm_json_get(j, "special_tokens");
        if (!cJSON_IsArray(single))
            return lm_err(LM_ERR_FORMAT, "%s: TemplateProcessing needs a \"single\" array", what);
        int seen_a = 0;
        for (const cJSON *e = single->child; e && st == LM_OK; e = e->next) {
            const cJSON *sp = lm_json_get(e, "SpecialToken"), *seq = lm_json_get(e, "Sequence");
            const char *id = NULL;
            if (sp) {
                st = lm_json_str(sp, "id", &id, what);
                if (st == LM_OK && !id)
                    st = lm_err(LM_ERR_FORMAT, "%s: TemplateProcessing SpecialToken without id", what);
                if (st == LM_OK)
                    st = seen_a ? template_special(tok, specials, id, &suf, &n_suf, what)
                                : template_special(tok, specials, id, &pre, &n_pre, what);
            } else if (seq) {
                seen_a = 1;
            } else {
                st = lm_err(LM_ERR_FORMAT, "%s: TemplateProcessing item is neither SpecialToken nor Sequence", what);
            }
        }
    } else if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) {
        const cJSON *cls = lm_json_get(j, "cls"), *sep = lm_json_get(j, "sep");
        int32_t c, s;
        if (!cJSON_IsArray(cls) || !cJSON_IsArray(sep) || cJSON_GetArraySize(cls) != 2 || cJSON_GetArraySize(sep) != 2)
            return lm_err(LM_ERR_FORMAT, "%s: %s needs cls and sep pairs", what, type);
        LM_TRY(parse_id(cls->child->next, &c, what));
        LM_TRY(parse_id(sep->child->next, &s, what));
        st = ids_append(&pre, &n_pre, &c, 1, what);
        if (st == LM_OK)
            st = ids_append(&suf, &n_suf, &s, 1, what);
    } else {
        return lm_err(LM_ERR_UNSUPPORTED, "%s: post_processor \"%.40s\" is not supported", what, type);
    }
    /* compose: a later processor wraps the result of the earlier ones */
    if (st == LM_OK && n_pre) {
        st = ids_append(&pre, &n_pre, tok->post_pre, tok->n_post_pre, what);
        if (st == LM_OK) {
            free(tok->post_pre);
            tok->post_pre = pre;
            tok->n_post_pre = n_pre;
            pre = NULL;
        }
    }
    if (st == LM_OK && n_suf) {
        st = ids_append(&tok->post_suf, &tok->n_post_suf, suf, n_suf, what);
    }
    free(pre);
    free(suf);
    return st;
}

/* --- loading: the whole file ----------------------------------------------------------------- */

static void build_byte_map(lm_tokenizer *tok) {
    int extra = 0;
    for (int i = 0; i < 0x144; i++)
        tok->chr_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        int32_t cp = printable ? b : 256 + extra++;
        char u[4];
        int k = tk_utf8_encode(cp, u);
        tok->byte_chr[b][0] = u[0];
        tok->byte_chr[b][1] = k > 1 ? u[1] : 0;
        tok->byte_chr_len[b] = (uint8_t)k;
        tok->chr_byte[cp] = (int16_t)b;
    }
}

static lm_status special_token_id(const lm_tokenizer *tok, const cJSON *config, const char *key, int32_t *out) {
    const cJSON *v = lm_json_get(config, key);
    if (v && cJSON_IsObject(v))
        v = lm_json_get(v, "content");
    if (v && cJSON_IsString(v))
        *out = lm_tokenizer_token_to_id(tok, v->valuestring, strlen(v->valuestring));
    return LM_OK;
}

static lm_status load_parts(lm_tokenizer *tok, const cJSON *root, const cJSON *config, const char *what) {
    if (!cJSON_IsObject(root))
        return lm_err(LM_ERR_FORMAT, "%s: not a JSON object", what);
    const cJSON *model = lm_json_get(root, "model");
    if (!model || !cJSON_IsObject(model))
        return lm_err(LM_ERR_MISSING, "%s: \"model\" is missing", what);
    build_byte_map(tok);
    LM_TRY(tk_bpe_parse(model, &tok->bpe, what));
    LM_TRY(tk_norm_parse(lm_json_get(root, "normalizer"), &tok->norm, what));
    LM_TRY(tk_pre_parse(lm_json_get(root, "pre_tokenizer"), &tok->pre, what));
    LM_TRY(tk_dec_parse(lm_json_get(root, "decoder"), &tok->dec, what));
    tok->dec_byte_fallback = tk_dec_has(tok->dec, TK_DEC_BYTEFALLBACK);
    LM_TRY(load_added(tok, root, config, what));
    LM_TRY(index_added(tok, what));
    LM_TRY(parse_post(tok, lm_json_get(root, "post_processor"), what));
    tok->bos_id = tok->eos_id = -1;
    if (config) {
        LM_TRY(special_token_id(tok, config, "bos_token", &tok->bos_id));
        LM_TRY(special_token_id(tok, config, "eos_token", &tok->eos_id));
    } else if (tok->n_post_pre) {
        tok->bos_id = tok->post_pre[0];
    }
    return LM_OK;
}

lm_status lm_tokenizer_load_json(const char *json, size_t json_len, const char *config_json, size_t config_len,
                                 const char *what, lm_tokenizer **out) {
    if (!out)
        return lm_err(LM_ERR_INVALID_ARG, "lm_tokenizer_load_json: out is NULL");
    *out = NULL;
    if (!json)
        return lm_err(LM_ERR_INVALID_ARG, "lm_tokenizer_load_json: json is NULL");
    if (!what)
        what = "tokenizer.json";
    cJSON *root = NULL, *config = NULL;
    LM_TRY(lm_json_parse(json, json_len, what, &root));
    if (config_json) {
        lm_status s = lm_json_parse(config_json, config_len, "tokenizer_config.json", &config);
        if (s != LM_OK) {
            cJSON_Delete(root);
            return s;
        }
    }
    lm_tokenizer *tok = calloc(1, sizeof *tok);
    lm_status s = tok ? load_parts(tok, root, config, what) : lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
    cJSON_Delete(root);
    cJSON_Delete(config);
    if (s != LM_OK) {
        lm_tokenizer_free(tok);
        return s;
    }
    *out = tok;
    return LM_OK;
}

lm_status lm_tokenizer_load(const char *dir, lm_tokenizer **out) {
    if (!out || !dir)
        return lm_err(LM_ERR_INVALID_ARG, "lm_tokenizer_load: NULL argument");
    *out = NULL;
    char path[4096], cpath[4096];
    char *json = NULL, *cfg = NULL;
    size_t n = 0, cn = 0;
    LM_TRY(lm_path_join(path, sizeof path, dir, "tokenizer.json"));
    LM_TRY(lm_path_join(cpath, sizeof cpath, dir, "tokenizer_config.json"));
    LM_TRY(lm_read_file(path, &json, &n));
    if (lm_file_exists(cpath)) {
        lm_status s = lm_read_file(cpath, &cfg, &cn);
        if (s != LM_OK) {
            free(json);
            return s;
        }
    }
    lm_status s = lm_tokenizer_load_json(json, n, cfg, cn, path, out);
    free(json);
    free(cfg);
    return s;
}

void lm_tokenizer_free(lm_tokenizer *tok) {
    if (!tok)
        return;
    tk_bpe_free(&tok->bpe);
    tk_norm_free(tok->norm);
    tk_pre_free(tok->pre);
    tk_dec_free(tok->dec);
    for (int i = 0; i < tok->n_added; i++) {
        if (tok->added[i].dec != tok->added[i].content)
            free(tok->added[i].dec);
        free(tok->added[i].content);
    }
    free(tok->added);
    free(tok->added_of_id);
    tk_trie_free(&tok->trie_raw);
    tk_trie_free(&tok->trie_norm);
    free(tok->post_pre);
    free(tok->post_suf);
    free(tok);
}

/* --- encoding --------------------------------------------------------------------------------- */

/* Pre-tokenize and run the model over one normalized span (no added tokens in it). */
static lm_status encode_span(const lm_tokenizer *tok, tk_work *w, const char *s, size_t n, int first, tk_ids *out) {
    tk_strs *words = &w->s[2];
    tk_strs_clear(words);
    LM_TRY(tk_added_split(tok, &tok->trie_norm, s, n, first, words));
    LM_TRY(tk_pre_apply(tok->pre, tok, w, &words));
    for (size_t i = 0; i < words->n; i++) {
        const tk_piece *p = &words->v[i];
        if (p->id >= 0)
            LM_TRY(tk_ids_push(out, p->id));
        else
            LM_TRY(tk_bpe_encode(&tok->bpe, w, words->buf.p + p->off, p->len, out));
    }
    return LM_OK;
}

lm_status tk_encode(const lm_tokenizer *tok, tk_work *w, const char *text, size_t len, int add_special,
                    tk_ids *out) {
    size_t ok = tk_utf8_valid_prefix(text, len);
    if (ok != len)
        return lm_err(LM_ERR_INVALID_ARG, "tokenizer: input is not valid UTF-8 (byte %zu)", ok);
    if (add_special)
        for (int i = 0; i < tok->n_post_pre; i++)
            LM_TRY(tk_ids_push(out, tok->post_pre[i]));
    tk_strs *spans = &w->s[1];
    tk_strs_clear(spans);
    LM_TRY(tk_added_split(tok, &tok->trie_raw, text, len, 1, spans));
    for (size_t i = 0; i < spans->n; i++) {
        const tk_piece *p = &spans->v[i];
        const char *s = spans->buf.p + p->off;
        if (p->id >= 0) {
            LM_TRY(tk_ids_push(out, p->id));
        } else if (tok->norm) {
            LM_TRY(tk_norm_apply(tok->norm, w, s, p->len, &w->nbuf));
            LM_TRY(encode_span(tok, w, w->nbuf.p ? w->nbuf.p : "", w->nbuf.n, p->first, out));
        } else {
            LM_TRY(encode_span(tok, w, s, p->len, p->first, out));
        }
    }
    if (add_special)
        for (int i = 0; i < tok->n_post_suf; i++)
            LM_TRY(tk_ids_push(out, tok->post_suf[i]));
    return LM_OK;
}

/* --- public API -------------------------------------------------------------------------------- */

lm_status lm_tokenizer_encode(const lm_tokenizer *tok, const char *text, size_t len, int add_special, int32_t *ids,
                              int32_t cap, int32_t *n_ids) {
    if (n_ids)
        *n_ids = 0;
    if (!tok || (!text && len) || !n_ids || (cap > 0 && !ids) || cap < 0)
        return lm_err(LM_ERR_INVALID_ARG, "lm_tokenizer_encode: bad argument");
    tk_work w;
    tk_ids out = {0};
    LM_TRY(tk_work_init(&w));
    lm_status s = tk_encode(tok, &w, text ? text : "", len, add_special, &out);
    tk_work_free(&w);
    if (s == LM_OK && out.n > 0x7fffffff)
        s = lm_err(LM_ERR_INVALID_ARG, "lm_tokenizer_encode: too many tokens");
    if (s == LM_OK) {
        if (out.n <= (size_t)cap) {
            if (out.n)
                memcpy(ids, out.v, out.n * sizeof *ids);
            *n_ids = (int32_t)out.n;
        } else {
            *n_ids = -(int32_t)out.n;
        }
    }
    tk_ids_free(&out);
    return s;
}

lm_status lm_tokenizer_decode(const lm_tokenizer *tok, const int32_t *ids, size_t n_ids, int skip_special, char *buf,
                              size_t cap, size_t *len) {
    if (len)
        *len = 0;
    if (cap && buf)
        buf[0] = 0;
    if (!tok || (!ids && n_ids) || (cap && !buf))
        return lm_err(LM_ERR_INVALID_ARG, "lm_tokenizer_decode: bad argument");
    tk_work w;
    tk_buf out = {0};
    LM_TRY(tk_work_init(&w));
    lm_status s = tk_decode(tok, &w, ids, n_ids, skip_special, &out);
    tk_work_free(&w);
    if (s == LM_OK) {
        if (len)
            *len = out.n;
        if (cap) {
            size_t k = out.n < cap - 1 ? out.n : cap - 1;
            if (k)
                memcpy(buf, out.p, k);
            buf[k] = 0;
        }
    }
    tk_buf_free(&out);
    return s;
}

int32_t lm_tokenizer_vocab_size(const lm_tokenizer *tok) { return tok ? tok->n_vocab : 0; }

int32_t lm_tokenizer_token_to_id(const lm_tokenizer *tok, const char *token, size_t len) {
    if (!tok || !token)
        return -1;
    for (int i = 0; i < tok->n_added; i++)
        if (tok->added[i].len == len && memcmp(tok->added[i].content, token, len) == 0)
            return tok->added[i].id;
    return tk_vocab_find(&tok->bpe.vocab, token, len);
}

const char *lm_tokenizer_id_to_token(const lm_tokenizer *tok, int32_t id, size_t *len) {
    if (!tok || id < 0 || id >= tok->n_vocab)
        return NULL;
    int32_t a = tok->added_of_id[id];
    if (a >= 0) {
        if (len)
            *len = tok->added[a].len;
        return tok->added[a].content;
    }
    return tk_vocab_str(&tok->bpe.vocab, id, len);
}

int32_t lm_tokenizer_bos(const lm_tokenizer *tok) { return tok ? tok->bos_id : -1; }
int32_t lm_tokenizer_eos(const lm_tokenizer *tok) { return tok ? tok->eos_id : -1; }

int lm_tokenizer_is_special(const lm_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->n_vocab)
        return 0;
    int32_t a = tok->added_of_id[id];
    return a >= 0 && tok->added[a].special;
}
