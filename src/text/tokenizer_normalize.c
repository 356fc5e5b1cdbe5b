/* Normalizers of tokenizer.json: NFC/NFD/NFKC/NFKD (utf8proc), Lowercase, Strip,
 * StripAccents, Replace (string or regex), Prepend, Sequence. They run once per span of
 * text between added tokens, so they favour simplicity over speed. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/tokenizer_impl.h"

typedef struct {
    const char *name;
    tk_norm_kind kind;
} norm_name;

static const norm_name norm_names[] = {
    {"NFC", TK_NORM_NFC},           {"NFD", TK_NORM_NFD},         {"NFKC", TK_NORM_NFKC},
    {"NFKD", TK_NORM_NFKD},         {"Lowercase", TK_NORM_LOWERCASE}, {"Strip", TK_NORM_STRIP},
    {"Replace", TK_NORM_REPLACE},   {"Prepend", TK_NORM_PREPEND}, {"Sequence", TK_NORM_SEQUENCE},
    {"StripAccents", TK_NORM_STRIP_ACCENTS},
};

static lm_status dup_json_str(const cJSON *j, const char *key, char **out, size_t *len, const char *what) {
    const char *s = NULL;
    LM_TRY(lm_json_str(j, key, &s, what));
    if (!s)
        return lm_err(LM_ERR_MISSING, "%s: \"%s\" is missing", what, key);
    *len = strlen(s);
    *out = malloc(*len + 1);
    if (!*out)
        return lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
    memcpy(*out, s, *len + 1);
    return LM_OK;
}

static lm_status parse_into(const cJSON *j, tk_norm *n, const char *what) {
    const char *type = NULL;
    LM_TRY(lm_json_str(j, "type", &type, what));
    if (!type)
        return lm_err(LM_ERR_FORMAT, "%s: normalizer without a \"type\"", what);
    int found = 0;
    for (size_t i = 0; i < sizeof norm_names / sizeof norm_names[0]; i++)
        if (strcmp(type, norm_names[i].name) == 0) {
            n->kind = norm_names[i].kind;
            found = 1;
        }
    if (!found) {
        /* A Precompiled normalizer with an empty map does nothing; others need SentencePiece's tables. */
        const cJSON *map = lm_json_get(j, "precompiled_charsmap");
        if (strcmp(type, "Precompiled") == 0 && (!map || (cJSON_IsString(map) && !*map->valuestring))) {
            n->kind = TK_NORM_SEQUENCE;
            return LM_OK;
        }
        return lm_err(LM_ERR_UNSUPPORTED, "%s: normalizer \"%.40s\" is not supported", what, type);
    }
    switch (n->kind) {
    case TK_NORM_STRIP:
        LM_TRY(lm_json_bool(j, "strip_left", 1, &n->left, what));
        LM_TRY(lm_json_bool(j, "strip_right", 1, &n->right, what));
        return LM_OK;
    case TK_NORM_REPLACE: {
        const cJSON *pat = lm_json_get(j, "pattern");
        if (!pat)
            return lm_err(LM_ERR_MISSING, "%s: Replace normalizer without a pattern", what);
        LM_TRY(tk_pattern_parse(pat, &n->pat, what));
        return dup_json_str(j, "content", &n->str, &n->str_len, what);
    }
    case TK_NORM_PREPEND:
        return dup_json_str(j, "prepend", &n->str, &n->str_len, what);
    case TK_NORM_SEQUENCE: {
        const cJSON *items = lm_json_get(j, "normalizers");
        if (!cJSON_IsArray(items))
            return lm_err(LM_ERR_FORMAT, "%s: Sequence normalizer needs a \"normalizers\" array", what);
        int k = cJSON_GetArraySize(items);
        if (k == 0)
            return LM_OK;
        n->items = calloc((size_t)k, sizeof *n->items);
        if (!n->items)
            return lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
        n->n_items = k;
        int i = 0;
        for (const cJSON *e = items->child; e; e = e->next, i++)
            LM_TRY(parse_into(e, &n->items[i], what));
        return LM_OK;
    }
    default:
        return LM_OK;
    }
}

lm_status tk_norm_parse(const cJSON *j, tk_norm **out, const char *what) {
    *out = NULL;
    if (!j)
        return LM_OK;
    tk_norm *n = calloc(1, sizeof *n);
    if (!n)
        return lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
    lm_status s = parse_into(j, n, what);
    if (s != LM_OK) {
        tk_norm_free(n);
        return s;
    }
    *out = n;
    return LM_OK;
}

static void norm_clear(tk_norm *n) {
    for (int i = 0; i < n->n_items; i++)
        norm_clear(&n->items[i]);
    free(n->items);
    tk_pattern_free(&n->pat);
    free(n->str);
}

void tk_norm_free(tk_norm *n) {
    if (!n)
        return;
    norm_clear(n);
    free(n);
}

/* --- applying ---------------------------------------------------------------------------- */

static lm_status swap_in(tk_buf *io, tk_buf *t) {
    tk_buf x = *io;
    *io = *t;
    *t = x;
    return LM_OK;
}

static lm_status unicode_form(tk_buf *io, utf8proc_option_t opt) {
    size_t i = 0;
    while (i < io->n && (unsigned char)io->p[i] < 0x80)
        i++;
    if (i == io->n)
        return LM_OK; /* ASCII is unchanged by every normalization form */
    utf8proc_uint8_t *res = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)io->p, (utf8proc_ssize_t)io->n, &res,
                                      opt | UTF8PROC_STABLE);
    if (r < 0)
        return lm_err(LM_ERR_INVALID_ARG, "tokenizer: normalization failed: %s", utf8proc_errmsg(r));
    io->n = 0;
    lm_status s = tk_buf_put(io, res, (size_t)r);
    free(res);
    return s;
}

static lm_status map_chars(tk_buf *io, tk_buf *t, int lower) {
    t->n = 0;
    LM_TRY(tk_buf_reserve(t, io->n));
    for (size_t i = 0; i < io->n;) {
        int32_t cp;
        int k = tk_utf8_decode(io->p + i, io->n - i, &cp);
        i += (size_t)k;
        if (lower) {
            char u[4];
            int m = tk_utf8_encode(utf8proc_tolower(cp), u);
            LM_TRY(tk_buf_put(t, u, (size_t)m));
        } else if (utf8proc_category(cp) < UTF8PROC_CATEGORY_MN || utf8proc_category(cp) > UTF8PROC_CATEGORY_ME) {
            LM_TRY(tk_buf_put(t, io->p + i - (size_t)k, (size_t)k));
        }
    }
    return swap_in(io, t);
}

static void strip(tk_buf *io, int left, int right) {
    size_t a = 0, b = io->n;
    while (left && a < b) {
        int32_t cp;
        int k = tk_utf8_decode(io->p + a, b - a, &cp);
        if (!tk_is_space(cp))
            break;
        a += (size_t)k;
    }
    while (right && b > a) {
        size_t s = b - 1;
        while (s > a && ((unsigned char)io->p[s] & 0xC0) == 0x80)
            s--;
        int32_t cp;
        tk_utf8_decode(io->p + s, b - s, &cp);
        if (!tk_is_space(cp))
            break;
        b = s;
    }
    memmove(io->p, io->p + a, b - a);
    io->n = b - a;
    io->p[io->n] = 0;
}

static lm_status apply_one(const tk_norm *nm, tk_work *w, tk_buf *io, tk_buf *t) {
    switch (nm->kind) {
    case TK_NORM_NFC:
        return unicode_form(io, UTF8PROC_COMPOSE);
    case TK_NORM_NFD:
        return unicode_form(io, UTF8PROC_DECOMPOSE);
    case TK_NORM_NFKC:
        return unicode_form(io, UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
    case TK_NORM_NFKD:
        return unicode_form(io, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
    case TK_NORM_LOWERCASE:
        return map_chars(io, t, 1);
    case TK_NORM_STRIP_ACCENTS:
        return map_chars(io, t, 0);
    case TK_NORM_STRIP:
        strip(io, nm->left, nm->right);
        return LM_OK;
    case TK_NORM_PREPEND:
        if (io->n == 0)
            return LM_OK;
        t->n = 0;
        LM_TRY(tk_buf_put(t, nm->str, nm->str_len));
        LM_TRY(tk_buf_put(t, io->p, io->n));
        return swap_in(io, t);
    case TK_NORM_REPLACE:
        LM_TRY(tk_pattern_segments(&nm->pat, w, io->p, io->n));
        t->n = 0;
        for (size_t i = 0; i < w->n_segs; i++) {
            const tk_seg *g = &w->segs[i];
            if (g->is_match)
                LM_TRY(tk_buf_put(t, nm->str, nm->str_len));
            else
                LM_TRY(tk_buf_put(t, io->p + g->start, g->end - g->start));
        }
        return swap_in(io, t);
    case TK_NORM_SEQUENCE:
        for (int i = 0; i < nm->n_items; i++)
            LM_TRY(apply_one(&nm->items[i], w, io, t));
        return LM_OK;
    default:
        return lm_err(LM_ERR_INTERNAL, "tokenizer: bad normalizer kind");
    }
}

lm_status tk_norm_apply(const tk_norm *nm, tk_work *w, const char *s, size_t n, tk_buf *out) {
    out->n = 0;
    LM_TRY(tk_buf_put(out, s, n));
    if (!nm)
        return LM_OK;
    tk_buf t = {0};
    lm_status st = apply_one(nm, w, out, &t);
    tk_buf_free(&t);
    return st;
}
