/* Decoders of tokenizer.json (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace,
 * Sequence) and ids -> text. Each decoder maps a list of token strings to a new list
 * (HF decode_chain); the final list is concatenated. */
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_impl.h"

static lm_status parse_into(const cJSON *j, tk_dec *d, const char *what) {
    const char *type = NULL;
    LM_TRY(lm_json_str(j, "type", &type, what));
    if (!type)
        return lm_err(LM_ERR_FORMAT, "%s: decoder without a \"type\"", what);
    if (strcmp(type, "ByteLevel") == 0) {
        d->kind = TK_DEC_BYTELEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        d->kind = TK_DEC_BYTEFALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        d->kind = TK_DEC_FUSE;
    } else if (strcmp(type, "Replace") == 0) {
        d->kind = TK_DEC_REPLACE;
        const cJSON *pat = lm_json_get(j, "pattern");
        const char *content = NULL;
        if (!pat)
            return lm_err(LM_ERR_MISSING, "%s: Replace decoder without a pattern", what);
        LM_TRY(tk_pattern_parse(pat, &d->pat, what));
        LM_TRY(lm_json_str(j, "content", &content, what));
        if (!content)
            return lm_err(LM_ERR_MISSING, "%s: Replace decoder without content", what);
        d->str_len = strlen(content);
        d->str = malloc(d->str_len + 1);
        if (!d->str)
            return lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
        memcpy(d->str, content, d->str_len + 1);
    } else if (strcmp(type, "Strip") == 0) {
        const char *content = NULL;
        long long start = 0, stop = 0;
        d->kind = TK_DEC_STRIP;
        LM_TRY(lm_json_str(j, "content", &content, what));
        LM_TRY(lm_json_int(j, "start", 0, &start, what));
        LM_TRY(lm_json_int(j, "stop", 0, &stop, what));
        if (!content || !*content || start < 0 || stop < 0 || start > 1 << 20 || stop > 1 << 20)
            return lm_err(LM_ERR_FORMAT, "%s: Strip decoder needs a content character and start/stop >= 0", what);
        tk_utf8_decode(content, strlen(content), &d->ch);
        d->start = (int)start;
        d->stop = (int)stop;
    } else if (strcmp(type, "Metaspace") == 0) {
        d->kind = TK_DEC_METASPACE;
        LM_TRY(tk_parse_replacement(j, &d->ch, what));
        LM_TRY(tk_parse_prepend_scheme(j, &d->prepend, what));
    } else if (strcmp(type, "Sequence") == 0) {
        d->kind = TK_DEC_SEQUENCE;
        const cJSON *items = lm_json_get(j, "decoders");
        if (!cJSON_IsArray(items))
            return lm_err(LM_ERR_FORMAT, "%s: Sequence decoder needs a \"decoders\" array", what);
        int k = cJSON_GetArraySize(items);
        if (k == 0)
            return LM_OK;
        d->items = calloc((size_t)k, sizeof *d->items);
        if (!d->items)
            return lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
        d->n_items = k;
        int i = 0;
        for (const cJSON *e = items->child; e; e = e->next, i++)
            LM_TRY(parse_into(e, &d->items[i], what));
    } else {
        return lm_err(LM_ERR_UNSUPPORTED, "%s: decoder \"%.40s\" is not supported", what, type);
    }
    return LM_OK;
}

lm_status tk_dec_parse(const cJSON *j, tk_dec **out, const char *what) {
    *out = NULL;
    if (!j)
        return LM_OK;
    tk_dec *d = calloc(1, sizeof *d);
    if (!d)
        return lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
    lm_status s = parse_into(j, d, what);
    if (s != LM_OK) {
        tk_dec_free(d);
        return s;
    }
    *out = d;
    return LM_OK;
}

static void dec_clear(tk_dec *d) {
    for (int i = 0; i < d->n_items; i++)
        dec_clear(&d->items[i]);
    free(d->items);
    tk_pattern_free(&d->pat);
    free(d->str);
}

int tk_dec_has(const tk_dec *d, tk_dec_kind kind) {
    if (!d)
        return 0;
    if (d->kind == kind)
        return 1;
    for (int i = 0; i < d->n_items; i++)
        if (tk_dec_has(&d->items[i], kind))
            return 1;
    return 0;
}

void tk_dec_free(tk_dec *d) {
    if (!d)
        return;
    dec_clear(d);
    free(d);
}

/* --- applying ----------------------------------------------------------------------------- */

#define PIECE(l, i) ((l)->buf.p + (l)->v[i].off)

static lm_status byte_level(const lm_tokenizer *tok, tk_work *w, const tk_strs *in, tk_strs *out) {
    tk_buf *raw = &w->tmp;
    raw->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = PIECE(in, i);
        size_t n = in->v[i].len, start = raw->n, k = 0;
        int ok = 1;
        while (k < n) {
            int32_t cp;
            k += (size_t)tk_utf8_decode(s + k, n - k, &cp);
            if (cp < 0 || cp >= 0x144 || tok->chr_byte[cp] < 0) {
                ok = 0;
                break;
            }
            char b = (char)tok->chr_byte[cp];
            LM_TRY(tk_buf_put(raw, &b, 1));
        }
        if (!ok) { /* a character outside the byte map: keep the token's own bytes */
            raw->n = start;
            LM_TRY(tk_buf_put(raw, s, n));
        }
    }
    size_t off = out->buf.n;
    LM_TRY(tk_utf8_lossy(&out->buf, raw->p ? raw->p : "", raw->n));
    return tk_strs_add_tail(out, off, -1, 0);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static lm_status flush_bytes(tk_buf *bytes, tk_strs *out) {
    if (!bytes->n)
        return LM_OK;
    if (tk_utf8_valid_prefix(bytes->p, bytes->n) == bytes->n) {
        LM_TRY(tk_strs_add(out, bytes->p, bytes->n, -1, 0));
    } else {
        for (size_t i = 0; i < bytes->n; i++)
            LM_TRY(tk_strs_add(out, "\xEF\xBF\xBD", 3, -1, 0));
    }
    bytes->n = 0;
    return LM_OK;
}

static lm_status byte_fallback(tk_work *w, const tk_strs *in, tk_strs *out) {
    tk_buf *bytes = &w->tmp;
    bytes->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = PIECE(in, i);
        size_t n = in->v[i].len;
        int hi = n == 6 ? hexval(s[3]) : -1, lo = n == 6 ? hexval(s[4]) : -1;
        if (n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' && hi >= 0 && lo >= 0) {
            char b = (char)(hi * 16 + lo);
            LM_TRY(tk_buf_put(bytes, &b, 1));
            continue;
        }
        LM_TRY(flush_bytes(bytes, out));
        LM_TRY(tk_strs_add(out, s, n, -1, 0));
    }
    return flush_bytes(bytes, out);
}

static lm_status strip(const tk_dec *d, const tk_strs *in, tk_strs *out) {
    char u[4];
    size_t ul = (size_t)tk_utf8_encode(d->ch, u);
    for (size_t i = 0; i < in->n; i++) {
        const char *s = PIECE(in, i);
        size_t a = 0, b = in->v[i].len;
        for (int k = 0; k < d->start && b - a >= ul && memcmp(s + a, u, ul) == 0; k++)
            a += ul;
        for (int k = 0; k < d->stop && b - a >= ul && memcmp(s + b - ul, u, ul) == 0; k++)
            b -= ul;
        LM_TRY(tk_strs_add(out, s + a, b - a, -1, 0));
    }
    return LM_OK;
}

static lm_status metaspace(const tk_dec *d, const tk_strs *in, tk_strs *out) {
    char u[4];
    size_t ul = (size_t)tk_utf8_encode(d->ch, u);
    for (size_t i = 0; i < in->n; i++) {
        const char *s = PIECE(in, i);
        size_t n = in->v[i].len, off = out->buf.n;
        int drop = i == 0 && d->prepend != TK_PREPEND_NEVER;
        for (size_t k = 0; k < n;) {
            if (n - k >= ul && memcmp(s + k, u, ul) == 0) {
                if (!drop)
                    LM_TRY(tk_buf_put(&out->buf, " ", 1));
                k += ul;
            } else {
                LM_TRY(tk_buf_put(&out->buf, s + k, 1));
                k++;
            }
        }
        LM_TRY(tk_strs_add_tail(out, off, -1, 0));
    }
    return LM_OK;
}

static lm_status replace(const tk_dec *d, tk_work *w, const tk_strs *in, tk_strs *out) {
    for (size_t i = 0; i < in->n; i++) {
        const char *s = PIECE(in, i);
        size_t n = in->v[i].len, off = out->buf.n;
        LM_TRY(tk_pattern_segments(&d->pat, w, s, n));
        for (size_t k = 0; k < w->n_segs; k++) {
            const tk_seg *g = &w->segs[k];
            if (g->is_match)
                LM_TRY(tk_buf_put(&out->buf, d->str, d->str_len));
            else
                LM_TRY(tk_buf_put(&out->buf, s + g->start, g->end - g->start));
        }
        LM_TRY(tk_strs_add_tail(out, off, -1, 0));
    }
    return LM_OK;
}

static lm_status apply_step(const tk_dec *d, const lm_tokenizer *tok, tk_work *w, tk_strs **cur, tk_strs **spare) {
    if (d->kind == TK_DEC_SEQUENCE) {
        for (int i = 0; i < d->n_items; i++)
            LM_TRY(apply_step(&d->items[i], tok, w, cur, spare));
        return LM_OK;
    }
    tk_strs *in = *cur, *out = *spare;
    tk_strs_clear(out);
    switch (d->kind) {
    case TK_DEC_BYTELEVEL:
        LM_TRY(byte_level(tok, w, in, out));
        break;
    case TK_DEC_BYTEFALLBACK:
        LM_TRY(byte_fallback(w, in, out));
        break;
    case TK_DEC_FUSE: {
        size_t off = out->buf.n;
        for (size_t i = 0; i < in->n; i++)
            LM_TRY(tk_buf_put(&out->buf, PIECE(in, i), in->v[i].len));
        LM_TRY(tk_strs_add_tail(out, off, -1, 0));
        break;
    }
    case TK_DEC_STRIP:
        LM_TRY(strip(d, in, out));
        break;
    case TK_DEC_METASPACE:
        LM_TRY(metaspace(d, in, out));
        break;
    case TK_DEC_REPLACE:
        LM_TRY(replace(d, w, in, out));
        break;
    default:
        return lm_err(LM_ERR_INTERNAL, "tokenizer: bad decoder kind");
    }
    *spare = in;
    *cur = out;
    return LM_OK;
}

lm_status tk_dec_apply(const tk_dec *d, const lm_tokenizer *tok, tk_work *w, tk_strs **toks) {
    if (!d)
        return LM_OK;
    tk_strs *cur = *toks, *spare = cur == &w->s[0] ? &w->s[1] : &w->s[0];
    LM_TRY(apply_step(d, tok, w, &cur, &spare));
    *toks = cur;
    return LM_OK;
}

lm_status tk_decode(const lm_tokenizer *tok, tk_work *w, const int32_t *ids, size_t n, int skip_special,
                    tk_buf *out) {
    tk_strs *toks = &w->s[0];
    tk_strs_clear(toks);
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->n_vocab)
            continue;
        const char *s;
        size_t len;
        int32_t a = tok->added_of_id[id];
        if (a >= 0) {
            if (skip_special && tok->added[a].special)
                continue;
            s = tok->added[a].dec;
            len = tok->added[a].dec_len;
        } else {
            s = tk_vocab_str(&tok->bpe.vocab, id, &len);
            if (!s)
                continue;
        }
        LM_TRY(tk_strs_add(toks, s, len, id, 0));
    }
    if (!tok->dec) {
        for (size_t i = 0; i < toks->n; i++) {
            if (i)
                LM_TRY(tk_buf_put(out, " ", 1));
            LM_TRY(tk_buf_put(out, PIECE(toks, i), toks->v[i].len));
        }
        return LM_OK;
    }
    LM_TRY(tk_dec_apply(tok->dec, tok, w, &toks));
    for (size_t i = 0; i < toks->n; i++)
        LM_TRY(tk_buf_put(out, PIECE(toks, i), toks->v[i].len));
    return LM_OK;
}
