/* Tokenizer support: buffers, UTF-8, character classes, hash tables, split patterns. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/tokenizer_impl.h"

/* --- buffers ---------------------------------------------------------------------------- */

lm_status tk_buf_reserve(tk_buf *b, size_t extra) {
    if (extra > SIZE_MAX / 2 - b->n)
        return lm_err(LM_ERR_NOMEM, "tokenizer: buffer too large");
    if (b->n + extra + 1 <= b->cap)
        return LM_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", cap);
    b->p = p;
    b->cap = cap;
    return LM_OK;
}

lm_status tk_buf_put(tk_buf *b, const void *s, size_t n) {
    LM_TRY(tk_buf_reserve(b, n));
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return LM_OK;
}

void tk_buf_free(tk_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

lm_status tk_ids_push(tk_ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v)
            return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory");
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return LM_OK;
}

void tk_ids_free(tk_ids *a) {
    free(a->v);
    memset(a, 0, sizeof *a);
}

lm_status tk_strs_add_tail(tk_strs *s, size_t off, int32_t id, int first) {
    LM_TRY(tk_buf_reserve(&s->buf, 0)); /* pieces always point into an allocated buffer */
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        tk_piece *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory");
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (tk_piece){.off = off, .len = s->buf.n - off, .id = id, .first = (uint8_t)first};
    return LM_OK;
}

lm_status tk_strs_add(tk_strs *s, const char *p, size_t len, int32_t id, int first) {
    size_t off = s->buf.n;
    LM_TRY(tk_buf_put(&s->buf, p, len));
    return tk_strs_add_tail(s, off, id, first);
}

void tk_strs_clear(tk_strs *s) {
    s->buf.n = 0;
    s->n = 0;
}

void tk_strs_free(tk_strs *s) {
    tk_buf_free(&s->buf);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* --- UTF-8 ------------------------------------------------------------------------------ */

/* Length of the well-formed sequence at s (1..4), or -(bytes of the maximal invalid subpart). */
static int utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else {
        return -1;
    }
    size_t i = 1;
    for (; i <= (size_t)need; i++) {
        if (i >= n)
            return -(int)i;
        unsigned b = s[i];
        unsigned l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (b < l || b > h)
            return -(int)i;
    }
    return need + 1;
}

size_t tk_utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int k = utf8_seq(u + i, n - i);
        if (k < 0)
            return i;
        i += (size_t)k;
    }
    return n;
}

int tk_utf8_decode(const char *s, size_t n, int32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned c = u[0];
    if (c < 0x80 || n < 2) {
        *cp = (int32_t)c;
        return 1;
    }
    if (c < 0xE0) {
        *cp = (int32_t)(((c & 0x1F) << 6) | (u[1] & 0x3F));
        return 2;
    }
    if (c < 0xF0 || n < 4) {
        if (n < 3) {
            *cp = 0xFFFD;
            return (int)n;
        }
        *cp = (int32_t)(((c & 0x0F) << 12) | ((u[1] & 0x3Fu) << 6) | (u[2] & 0x3F));
        return 3;
    }
    *cp = (int32_t)(((c & 0x07) << 18) | ((u[1] & 0x3Fu) << 12) | ((u[2] & 0x3Fu) << 6) | (u[3] & 0x3F));
    return 4;
}

int tk_utf8_encode(int32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

lm_status tk_utf8_lossy(tk_buf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    LM_TRY(tk_buf_reserve(b, n));
    while (i < n) {
        int k = u[i] < 0x80 ? 1 : utf8_seq(u + i, n - i);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        LM_TRY(tk_buf_put(b, s + run, i - run));
        LM_TRY(tk_buf_put(b, "\xEF\xBF\xBD", 3));
        i += (size_t)(-k);
        run = i;
    }
    return tk_buf_put(b, s + run, n - run);
}

int tk_is_space(int32_t c) {
    if (c < 0x80)
        return c == ' ' || (c >= 0x09 && c <= 0x0D);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

int tk_is_word(int32_t c) {
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
        return 1;
    default:
        return c == 0x200C || c == 0x200D;
    }
}

int tk_is_numeric(int32_t c) {
    if (c < 0x80)
        return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

int tk_is_punct(int32_t c) {
    if (c < 0x80)
        return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
               (c >= 0x7B && c <= 0x7E);
    utf8proc_category_t k = utf8proc_category(c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

/* --- hash tables ------------------------------------------------------------------------ */

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    return x;
}

uint64_t tk_hash(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0x100000001b3ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, s, n);
    h = (h ^ v) * 0x100000001b3ull;
    return mix64(h);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n)
        c *= 2;
    return c;
}

lm_status tk_vocab_init(tk_vocab *v, int32_t n_ids, size_t arena_hint) {
    memset(v, 0, sizeof *v);
    if (n_ids < 0)
        return lm_err(LM_ERR_FORMAT, "tokenizer: negative vocabulary size");
    size_t slots = pow2_at_least((size_t)n_ids + (size_t)n_ids / 2 + 2);
    v->n_ids = n_ids;
    v->mask = slots - 1;
    v->slots = malloc(slots * sizeof *v->slots);
    v->str_off = calloc((size_t)n_ids + 1, 2 * sizeof *v->str_off);
    v->present = calloc((size_t)n_ids + 1, 1);
    v->arena_cap = arena_hint + 16;
    v->arena = malloc(v->arena_cap);
    if (!v->slots || !v->str_off || !v->present || !v->arena) {
        tk_vocab_free(v);
        return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory for %d tokens", (int)n_ids);
    }
    for (size_t i = 0; i < slots; i++)
        v->slots[i].id = -1;
    return LM_OK;
}

/* str_off holds (offset, length) pairs: [2*id], [2*id+1]. */
lm_status tk_vocab_set(tk_vocab *v, int32_t id, const char *s, size_t n) {
    if (id < 0 || id >= v->n_ids)
        return lm_err(LM_ERR_FORMAT, "tokenizer: token id %d out of range", (int)id);
    if (v->present[id])
        return lm_err(LM_ERR_FORMAT, "tokenizer: token id %d appears twice", (int)id);
    if (tk_vocab_find(v, s, n) >= 0)
        return lm_err(LM_ERR_FORMAT, "tokenizer: token \"%.*s\" appears twice", (int)(n > 64 ? 64 : n), s);
    if (v->arena_n + n + 1 > v->arena_cap) {
        size_t cap = v->arena_cap * 2 + n + 1;
        char *a = realloc(v->arena, cap);
        if (!a)
            return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory");
        v->arena = a;
        v->arena_cap = cap;
    }
    if (v->arena_n + n + 1 > UINT32_MAX)
        return lm_err(LM_ERR_FORMAT, "tokenizer: vocabulary strings exceed 4 GB");
    uint64_t hv = tk_hash(s, n);
    size_t h = (size_t)hv & v->mask;
    while (v->slots[h].id >= 0)
        h = (h + 1) & v->mask;
    memcpy(v->arena + v->arena_n, s, n);
    v->arena[v->arena_n + n] = 0;
    v->str_off[2 * id] = v->arena_n;
    v->str_off[2 * id + 1] = n;
    v->slots[h] = (tk_vslot){.hash = (uint32_t)(hv >> 32), .off = (uint32_t)v->arena_n, .len = (uint32_t)n, .id = id};
    v->arena_n += n + 1;
    v->present[id] = 1;
    return LM_OK;
}

int32_t tk_vocab_find(const tk_vocab *v, const char *s, size_t n) {
    if (!v->slots)
        return -1;
    uint64_t hv = tk_hash(s, n);
    uint32_t tag = (uint32_t)(hv >> 32);
    size_t h = (size_t)hv & v->mask;
    for (;; h = (h + 1) & v->mask) {
        const tk_vslot *e = &v->slots[h];
        if (e->id < 0)
            return -1;
        if (e->hash == tag && e->len == n && memcmp(v->arena + e->off, s, n) == 0)
            return e->id;
    }
}

const char *tk_vocab_str(const tk_vocab *v, int32_t id, size_t *len) {
    if (id < 0 || id >= v->n_ids || !v->present[id])
        return NULL;
    if (len)
        *len = v->str_off[2 * id + 1];
    return v->arena + v->str_off[2 * id];
}

void tk_vocab_free(tk_vocab *v) {
    free(v->arena);
    free(v->str_off);
    free(v->slots);
    free(v->present);
    memset(v, 0, sizeof *v);
}

lm_status tk_merges_init(tk_merges *m, size_t n) {
    size_t slots = pow2_at_least(n * 2 + 2);
    m->slots = calloc(slots, sizeof *m->slots);
    if (!m->slots)
        return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory for %zu merges", n);
    m->mask = slots - 1;
    m->n = 0;
    return LM_OK;
}

static inline uint64_t merge_key(int32_t a, int32_t b) {
    return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
}

/* A later duplicate of a pair replaces the earlier one, as HF's map collection does. */
void tk_merges_put(tk_merges *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
    uint64_t k = merge_key(a, b);
    size_t h = (size_t)mix64(k) & m->mask;
    while (m->slots[h].key && m->slots[h].key != k)
        h = (h + 1) & m->mask;
    if (!m->slots[h].key)
        m->n++;
    m->slots[h] = (tk_merge_entry){.key = k, .rank = rank, .id = id};
}

const tk_merge_entry *tk_merges_find(const tk_merges *m, int32_t a, int32_t b) {
    uint64_t k = merge_key(a, b);
    size_t h = (size_t)mix64(k) & m->mask;
    for (;; h = (h + 1) & m->mask) {
        const tk_merge_entry *e = &m->slots[h];
        if (e->key == k)
            return e;
        if (!e->key)
            return NULL;
    }
}

void tk_merges_free(tk_merges *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* --- patterns --------------------------------------------------------------------------- */

lm_status tk_pattern_regex(const char *re, size_t len, tk_pattern *p, const char *what) {
    int err = 0;
    PCRE2_SIZE off = 0;
    memset(p, 0, sizeof *p);
    p->re = pcre2_compile((PCRE2_SPTR)re, len, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    if (!p->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return lm_err(LM_ERR_FORMAT, "%s: bad regex at offset %zu: %s", what, (size_t)off, (char *)msg);
    }
    pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE); /* best effort: falls back to the interpreter */
    return LM_OK;
}

lm_status tk_pattern_parse(const cJSON *j, tk_pattern *p, const char *what) {
    memset(p, 0, sizeof *p);
    const cJSON *s = lm_json_get(j, "String"), *r = lm_json_get(j, "Regex");
    if (s && cJSON_IsString(s)) {
        p->lit_len = strlen(s->valuestring);
        p->lit = malloc(p->lit_len + 1);
        if (!p->lit)
            return lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
        memcpy(p->lit, s->valuestring, p->lit_len + 1);
        return LM_OK;
    }
    if (r && cJSON_IsString(r))
        return tk_pattern_regex(r->valuestring, strlen(r->valuestring), p, what);
    return lm_err(LM_ERR_FORMAT, "%s: pattern must be {\"String\": ...} or {\"Regex\": ...}", what);
}

void tk_pattern_free(tk_pattern *p) {
    free(p->lit);
    if (p->re)
        pcre2_code_free(p->re);
    memset(p, 0, sizeof *p);
}

static lm_status seg_push(tk_work *w, size_t a, size_t b, int m) {
    if (w->n_segs == w->cap_segs) {
        size_t cap = w->cap_segs ? w->cap_segs * 2 : 64;
        tk_seg *v = realloc(w->segs, cap * sizeof *v);
        if (!v)
            return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory");
        w->segs = v;
        w->cap_segs = cap;
    }
    w->segs[w->n_segs++] = (tk_seg){a, b, m};
    return LM_OK;
}

/* Find the next match at or after `from`; returns 1 with [*a, *b), 0 when none, <0 on error. */
static int pattern_next(const tk_pattern *p, tk_work *w, const char *s, size_t n, size_t from,
                        size_t *a, size_t *b) {
    if (!p->re) {
        if (!p->lit_len || from >= n)
            return 0;
        const char *f = memmem(s + from, n - from, p->lit, p->lit_len);
        if (!f)
            return 0;
        *a = (size_t)(f - s);
        *b = *a + p->lit_len;
        return 1;
    }
    int rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, w->md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc < 0 && rc != 0)
        return -1;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
    *a = ov[0];
    *b = ov[1];
    return 1;
}

/* Matches and gaps covering s, like HF's Pattern::find_matches. */
lm_status tk_pattern_segments(const tk_pattern *p, tk_work *w, const char *s, size_t n) {
    w->n_segs = 0;
    if (n == 0)
        return seg_push(w, 0, 0, 0);
    size_t prev = 0, from = 0;
    while (from <= n) {
        size_t a, b;
        int r = pattern_next(p, w, s, n, from, &a, &b);
        if (r < 0)
            return lm_err(LM_ERR_INVALID_ARG, "tokenizer: regex match failed (resource limit)");
        if (r == 0)
            break;
        if (prev != a)
            LM_TRY(seg_push(w, prev, a, 0));
        LM_TRY(seg_push(w, a, b, 1));
        prev = b;
        if (b == a) { /* empty match: step over one character */
            if (a >= n)
                break;
            int32_t cp;
            from = a + (size_t)tk_utf8_decode(s + a, n - a, &cp);
        } else {
            from = b;
        }
    }
    if (prev != n)
        LM_TRY(seg_push(w, prev, n, 0));
    return LM_OK;
}

lm_status tk_work_init(tk_work *w) {
    memset(w, 0, sizeof *w);
    w->md = pcre2_match_data_create(1, NULL);
    if (!w->md)
        return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory");
    return LM_OK;
}

void tk_work_free(tk_work *w) {
    if (w->md)
        pcre2_match_data_free(w->md);
    free(w->segs);
    for (int i = 0; i < 4; i++)
        tk_strs_free(&w->s[i]);
    tk_buf_free(&w->tmp);
    tk_buf_free(&w->tmp2);
    tk_buf_free(&w->nbuf);
    free(w->syms);
    free(w->heap);
    memset(w, 0, sizeof *w);
}
