/* Pre-tokenizers of tokenizer.json: Split (string/regex, the five delimiter behaviours,
 * invert), ByteLevel (GPT-2 regex + byte-to-char mapping), Metaspace, Digits, Whitespace,
 * WhitespaceSplit, Punctuation, Sequence. Each step maps a list of pieces to a new list;
 * empty pieces are dropped, as in HF's PreTokenizedString::split. */
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_impl.h"

/* GPT-2's pre-tokenization regex, used by ByteLevel with use_regex. */
static const char GPT2_RE[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct {
    const char *name;
    tk_split_behavior b;
} behavior_name;

static const behavior_name behaviors[] = {
    {"Removed", TK_SPLIT_REMOVED},
    {"Isolated", TK_SPLIT_ISOLATED},
    {"MergedWithPrevious", TK_SPLIT_MERGED_WITH_PREVIOUS},
    {"MergedWithNext", TK_SPLIT_MERGED_WITH_NEXT},
    {"Contiguous", TK_SPLIT_CONTIGUOUS},
};

static lm_status parse_behavior(const cJSON *j, tk_split_behavior def, tk_split_behavior *out, const char *what) {
    const char *s = NULL;
    LM_TRY(lm_json_str(j, "behavior", &s, what));
    *out = def;
    if (!s)
        return LM_OK;
    for (size_t i = 0; i < sizeof behaviors / sizeof behaviors[0]; i++)
        if (strcmp(s, behaviors[i].name) == 0) {
            *out = behaviors[i].b;
            return LM_OK;
        }
    return lm_err(LM_ERR_FORMAT, "%s: unknown split behavior \"%.40s\"", what, s);
}

lm_status tk_parse_prepend_scheme(const cJSON *j, tk_prepend_scheme *out, const char *what) {
    const char *s = NULL;
    int add_prefix = 1;
    LM_TRY(lm_json_str(j, "prepend_scheme", &s, what));
    LM_TRY(lm_json_bool(j, "add_prefix_space", 1, &add_prefix, what));
    if (!s) {
        *out = add_prefix ? TK_PREPEND_ALWAYS : TK_PREPEND_NEVER;
    } else if (strcmp(s, "always") == 0) {
        *out = TK_PREPEND_ALWAYS;
    } else if (strcmp(s, "first") == 0) {
        *out = TK_PREPEND_FIRST;
    } else if (strcmp(s, "never") == 0) {
        *out = TK_PREPEND_NEVER;
    } else {
        return lm_err(LM_ERR_FORMAT, "%s: unknown prepend_scheme \"%.40s\"", what, s);
    }
    return LM_OK;
}

lm_status tk_parse_replacement(const cJSON *j, int32_t *cp, const char *what) {
    const char *s = NULL;
    LM_TRY(lm_json_str(j, "replacement", &s, what));
    if (!s)
        s = "\xE2\x96\x81";
    size_t n = strlen(s);
    if (n == 0 || tk_utf8_valid_prefix(s, n) != n)
        return lm_err(LM_ERR_FORMAT, "%s: replacement must be one character", what);
    int k = tk_utf8_decode(s, n, cp);
    if ((size_t)k != n)
        return lm_err(LM_ERR_FORMAT, "%s: replacement must be one character", what);
    return LM_OK;
}

static lm_status parse_into(const cJSON *j, tk_pre *p, const char *what) {
    const char *type = NULL;
    LM_TRY(lm_json_str(j, "type", &type, what));
    if (!type)
        return lm_err(LM_ERR_FORMAT, "%s: pre-tokenizer without a \"type\"", what);
    if (strcmp(type, "Split") == 0) {
        p->kind = TK_PRE_SPLIT;
        const cJSON *pat = lm_json_get(j, "pattern");
        if (!pat)
            return lm_err(LM_ERR_MISSING, "%s: Split without a pattern", what);
        LM_TRY(tk_pattern_parse(pat, &p->pat, what));
        LM_TRY(parse_behavior(j, TK_SPLIT_REMOVED, &p->behavior, what));
        return lm_json_bool(j, "invert", 0, &p->invert, what);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        p->kind = TK_PRE_BYTELEVEL;
        LM_TRY(lm_json_bool(j, "add_prefix_space", 1, &p->add_prefix_space, what));
        LM_TRY(lm_json_bool(j, "use_regex", 1, &p->use_regex, what));
        if (p->use_regex)
            LM_TRY(tk_pattern_regex(GPT2_RE, sizeof GPT2_RE - 1, &p->pat, what));
        return LM_OK;
    }
    if (strcmp(type, "Metaspace") == 0) {
        int32_t cp;
        p->kind = TK_PRE_METASPACE;
        LM_TRY(tk_parse_replacement(j, &cp, what));
        p->repl_len = tk_utf8_encode(cp, p->repl);
        LM_TRY(tk_parse_prepend_scheme(j, &p->prepend, what));
        return lm_json_bool(j, "split", 1, &p->split, what);
    }
    if (strcmp(type, "Digits") == 0) {
        p->kind = TK_PRE_DIGITS;
        return lm_json_bool(j, "individual_digits", 0, &p->individual_digits, what);
    }
    if (strcmp(type, "Whitespace") == 0) {
        static const char re[] = "\\w+|[^\\w\\s]+";
        p->kind = TK_PRE_WHITESPACE;
        return tk_pattern_regex(re, sizeof re - 1, &p->pat, what);
    }
    if (strcmp(type, "WhitespaceSplit") == 0) {
        p->kind = TK_PRE_WHITESPACE_SPLIT;
        return LM_OK;
    }
    if (strcmp(type, "Punctuation") == 0) {
        p->kind = TK_PRE_PUNCTUATION;
        return parse_behavior(j, TK_SPLIT_ISOLATED, &p->behavior, what);
    }
    if (strcmp(type, "Sequence") == 0) {
        p->kind = TK_PRE_SEQUENCE;
        const cJSON *items = lm_json_get(j, "pretokenizers");
        if (!cJSON_IsArray(items))
            return lm_err(LM_ERR_FORMAT, "%s: Sequence pre-tokenizer needs a \"pretokenizers\" array", what);
        int k = cJSON_GetArraySize(items);
        if (k == 0)
            return LM_OK;
        p->items = calloc((size_t)k, sizeof *p->items);
        if (!p->items)
            return lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
        p->n_items = k;
        int i = 0;
        for (const cJSON *e = items->child; e; e = e->next, i++)
            LM_TRY(parse_into(e, &p->items[i], what));
        return LM_OK;
    }
    return lm_err(LM_ERR_UNSUPPORTED, "%s: pre-tokenizer \"%.40s\" is not supported", what, type);
}

lm_status tk_pre_parse(const cJSON *j, tk_pre **out, const char *what) {
    *out = NULL;
    if (!j)
        return LM_OK;
    tk_pre *p = calloc(1, sizeof *p);
    if (!p)
        return lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
    lm_status s = parse_into(j, p, what);
    if (s != LM_OK) {
        tk_pre_free(p);
        return s;
    }
    *out = p;
    return LM_OK;
}

static void pre_clear(tk_pre *p) {
    for (int i = 0; i < p->n_items; i++)
        pre_clear(&p->items[i]);
    free(p->items);
    tk_pattern_free(&p->pat);
}

void tk_pre_free(tk_pre *p) {
    if (!p)
        return;
    pre_clear(p);
    free(p);
}

/* --- splitting ---------------------------------------------------------------------------- */

typedef enum { PRED_NUMERIC, PRED_SPACE, PRED_PUNCT, PRED_CHAR } pred_kind;

/* Segments from a per-character predicate, like HF's Pattern for Fn(char) -> bool. */
static lm_status char_segments(tk_work *w, const char *s, size_t n, pred_kind k, int32_t ch) {
    w->n_segs = 0;
    size_t last = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        size_t cl = (size_t)tk_utf8_decode(s + i, n - i, &cp);
        int hit = k == PRED_NUMERIC ? tk_is_numeric(cp)
                  : k == PRED_SPACE ? tk_is_space(cp)
                  : k == PRED_PUNCT ? tk_is_punct(cp)
                                    : cp == ch;
        if (hit) {
            if (w->n_segs + 2 > w->cap_segs) {
                size_t cap = w->cap_segs ? w->cap_segs * 2 : 64;
                tk_seg *v = realloc(w->segs, cap * sizeof *v);
                if (!v)
                    return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory");
                w->segs = v;
                w->cap_segs = cap;
            }
            if (last < i)
                w->segs[w->n_segs++] = (tk_seg){last, i, 0};
            w->segs[w->n_segs++] = (tk_seg){i, i + cl, 1};
            last = i + cl;
        }
        i += cl;
    }
    if (last < n || n == 0) {
        if (w->n_segs + 1 > w->cap_segs) {
            size_t cap = w->cap_segs ? w->cap_segs * 2 : 64;
            tk_seg *v = realloc(w->segs, cap * sizeof *v);
            if (!v)
                return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory");
            w->segs = v;
            w->cap_segs = cap;
        }
        w->segs[w->n_segs++] = (tk_seg){last, n, 0};
    }
    return LM_OK;
}

/* Turn w->segs into pieces of `out` following HF's NormalizedString::split. */
static lm_status emit_split(tk_work *w, tk_strs *out, const char *s, int first, tk_split_behavior b, int invert) {
    size_t n = w->n_segs;
    tk_seg *g = w->segs;
    if (invert)
        for (size_t i = 0; i < n; i++)
            g[i].is_match = !g[i].is_match;
    /* (start, end, remove) triples written back into g[0..m) */
    size_t m = 0;
    int prev = 0;
    switch (b) {
    case TK_SPLIT_ISOLATED:
        for (size_t i = 0; i < n; i++)
            g[i].is_match = 0;
        m = n;
        break;
    case TK_SPLIT_REMOVED:
        m = n;
        break;
    case TK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            int im = g[i].is_match; /* read before g[m] (m <= i) is overwritten */
            if (im == prev && m > 0)
                g[m - 1].end = g[i].end;
            else
                g[m++] = (tk_seg){g[i].start, g[i].end, 0};
            prev = im;
        }
        break;
    case TK_SPLIT_MERGED_WITH_PREVIOUS:
        for (size_t i = 0; i < n; i++) {
            int im = g[i].is_match;
            if (im && !prev && m > 0)
                g[m - 1].end = g[i].end;
            else
                g[m++] = (tk_seg){g[i].start, g[i].end, 0};
            prev = im;
        }
        break;
    case TK_SPLIT_MERGED_WITH_NEXT: {
        /* fold from the right, merging a match into the segment after it */
        size_t k = n; /* result built in g[k..n) going leftwards */
        for (size_t ii = n; ii-- > 0;) {
            tk_seg cur = g[ii];
            if (cur.is_match && !prev && k < n)
                g[k].start = cur.start;
            else
                g[--k] = (tk_seg){cur.start, cur.end, 0};
            prev = cur.is_match;
        }
        memmove(g, g + k, (n - k) * sizeof *g);
        m = n - k;
        break;
    }
    default:
        return lm_err(LM_ERR_INTERNAL, "tokenizer: bad split behavior");
    }
    for (size_t i = 0; i < m; i++) {
        if (g[i].is_match || g[i].end == g[i].start)
            continue;
        LM_TRY(tk_strs_add(out, s + g[i].start, g[i].end - g[i].start, -1, first && g[i].start == 0));
    }
    return LM_OK;
}

/* --- applying ----------------------------------------------------------------------------- */

static lm_status byte_level(const tk_pre *p, const lm_tokenizer *tok, tk_work *w, const tk_piece *pc,
                            const char *src, tk_strs *out) {
    const char *s = src;
    size_t n = pc->len;
    if (p->add_prefix_space && (n == 0 || s[0] != ' ')) {
        w->tmp.n = 0;
        LM_TRY(tk_buf_put(&w->tmp, " ", 1));
        LM_TRY(tk_buf_put(&w->tmp, s, n));
        s = w->tmp.p;
        n = w->tmp.n;
    }
    if (p->use_regex) {
        LM_TRY(tk_pattern_segments(&p->pat, w, s, n));
    } else {
        w->n_segs = 0;
        if (!w->cap_segs) {
            w->segs = malloc(64 * sizeof *w->segs);
            if (!w->segs)
                return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory");
            w->cap_segs = 64;
        }
        w->segs[w->n_segs++] = (tk_seg){0, n, 0};
    }
    for (size_t i = 0; i < w->n_segs; i++) {
        const tk_seg *g = &w->segs[i];
        if (g->end == g->start)
            continue;
        size_t off = out->buf.n;
        LM_TRY(tk_buf_reserve(&out->buf, 2 * (g->end - g->start)));
        char *d = out->buf.p + off;
        for (size_t k = g->start; k < g->end; k++) {
            unsigned char c = (unsigned char)s[k];
            *d++ = tok->byte_chr[c][0];
            if (tok->byte_chr_len[c] == 2)
                *d++ = tok->byte_chr[c][1];
        }
        out->buf.n = (size_t)(d - out->buf.p);
        out->buf.p[out->buf.n] = 0;
        LM_TRY(tk_strs_add_tail(out, off, -1, pc->first && g->start == 0));
    }
    return LM_OK;
}

static lm_status metaspace(const tk_pre *p, tk_work *w, const tk_piece *pc, const char *s, tk_strs *out) {
    tk_buf *t = &w->tmp;
    t->n = 0;
    int starts = pc->len >= (size_t)p->repl_len && memcmp(s, p->repl, (size_t)p->repl_len) == 0;
    int lead_space = pc->len > 0 && s[0] == ' ';
    if (!starts && !lead_space &&
        (p->prepend == TK_PREPEND_ALWAYS || (p->prepend == TK_PREPEND_FIRST && pc->first)))
        LM_TRY(tk_buf_put(t, p->repl, (size_t)p->repl_len));
    for (size_t i = 0; i < pc->len; i++) {
        if (s[i] == ' ')
            LM_TRY(tk_buf_put(t, p->repl, (size_t)p->repl_len));
        else
            LM_TRY(tk_buf_put(t, s + i, 1));
    }
    if (!p->split)
        return tk_strs_add(out, t->p, t->n, -1, pc->first);
    int32_t cp;
    tk_utf8_decode(p->repl, (size_t)p->repl_len, &cp);
    LM_TRY(char_segments(w, t->p, t->n, PRED_CHAR, cp));
    return emit_split(w, out, t->p, pc->first, TK_SPLIT_MERGED_WITH_NEXT, 0);
}

static lm_status apply_step(const tk_pre *p, const lm_tokenizer *tok, tk_work *w, tk_strs **cur, tk_strs **spare) {
    if (p->kind == TK_PRE_SEQUENCE) {
        for (int i = 0; i < p->n_items; i++)
            LM_TRY(apply_step(&p->items[i], tok, w, cur, spare));
        return LM_OK;
    }
    tk_strs *in = *cur, *out = *spare;
    tk_strs_clear(out);
    for (size_t i = 0; i < in->n; i++) {
        const tk_piece *pc = &in->v[i];
        const char *s = in->buf.p + pc->off;
        if (pc->id >= 0 || pc->len == 0) {
            if (pc->id >= 0)
                LM_TRY(tk_strs_add(out, s, pc->len, pc->id, pc->first));
            continue;
        }
        switch (p->kind) {
        case TK_PRE_SPLIT:
            LM_TRY(tk_pattern_segments(&p->pat, w, s, pc->len));
            LM_TRY(emit_split(w, out, s, pc->first, p->behavior, p->invert));
            break;
        case TK_PRE_BYTELEVEL:
            LM_TRY(byte_level(p, tok, w, pc, s, out));
            break;
        case TK_PRE_METASPACE:
            LM_TRY(metaspace(p, w, pc, s, out));
            break;
        case TK_PRE_DIGITS:
            LM_TRY(char_segments(w, s, pc->len, PRED_NUMERIC, 0));
            LM_TRY(emit_split(w, out, s, pc->first, p->individual_digits ? TK_SPLIT_ISOLATED : TK_SPLIT_CONTIGUOUS,
                              0));
            break;
        case TK_PRE_WHITESPACE:
            LM_TRY(tk_pattern_segments(&p->pat, w, s, pc->len));
            LM_TRY(emit_split(w, out, s, pc->first, TK_SPLIT_REMOVED, 1));
            break;
        case TK_PRE_WHITESPACE_SPLIT:
            LM_TRY(char_segments(w, s, pc->len, PRED_SPACE, 0));
            LM_TRY(emit_split(w, out, s, pc->first, TK_SPLIT_REMOVED, 0));
            break;
        case TK_PRE_PUNCTUATION:
            LM_TRY(char_segments(w, s, pc->len, PRED_PUNCT, 0));
            LM_TRY(emit_split(w, out, s, pc->first, p->behavior, 0));
            break;
        default:
            return lm_err(LM_ERR_INTERNAL, "tokenizer: bad pre-tokenizer kind");
        }
    }
    *spare = in;
    *cur = out;
    return LM_OK;
}

lm_status tk_pre_apply(const tk_pre *p, const lm_tokenizer *tok, tk_work *w, tk_strs **words) {
    if (!p)
        return LM_OK;
    tk_strs *cur = *words, *spare = (cur == &w->s[2]) ? &w->s[3] : &w->s[2];
    LM_TRY(apply_step(p, tok, w, &cur, &spare));
    *words = cur;
    return LM_OK;
}
