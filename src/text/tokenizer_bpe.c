/* The BPE model of tokenizer.json: vocab, merges (both JSON forms), byte fallback, unk
 * fusing, continuing-subword prefix / end-of-word suffix, ignore_merges.
 * A word is split into characters, then the pair with the lowest merge rank (leftmost on
 * ties) is merged repeatedly, using a binary heap of candidate pairs (HF word.rs order). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_impl.h"

typedef struct tk_sym {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
    int32_t alive;
} tk_sym;

typedef struct tk_heap_ent {
    int32_t rank, pos, id;
} tk_heap_ent;

/* --- loading ---------------------------------------------------------------------------- */

static lm_status dup_opt_str(const cJSON *model, const char *key, char **out, size_t *len, const char *what) {
    const char *s = NULL;
    LM_TRY(lm_json_str(model, key, &s, what));
    *out = NULL;
    *len = 0;
    if (s && *s) {
        *len = strlen(s);
        *out = malloc(*len + 1);
        if (!*out)
            return lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
        memcpy(*out, s, *len + 1);
    }
    return LM_OK;
}

static lm_status load_vocab(const cJSON *vocab, tk_bpe *bpe, const char *what) {
    if (!cJSON_IsObject(vocab))
        return lm_err(LM_ERR_FORMAT, "%s: model.vocab must be an object", what);
    long long max_id = -1;
    size_t bytes = 0;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 0x7ffffffe ||
            e->valuedouble != (double)(long long)e->valuedouble)
            return lm_err(LM_ERR_FORMAT, "%s: model.vocab[\"%.40s\"] is not a valid id", what,
                          e->string ? e->string : "");
        if ((long long)e->valuedouble > max_id)
            max_id = (long long)e->valuedouble;
        bytes += strlen(e->string) + 1;
    }
    LM_TRY(tk_vocab_init(&bpe->vocab, (int32_t)(max_id + 1), bytes));
    for (const cJSON *e = vocab->child; e; e = e->next)
        LM_TRY(lm_err_prefix(tk_vocab_set(&bpe->vocab, (int32_t)e->valuedouble, e->string, strlen(e->string)), "%s",
                             what));
    return LM_OK;
}

static lm_status add_merge(tk_bpe *bpe, tk_buf *tmp, const char *a, size_t na, const char *b, size_t nb,
                           int32_t rank, const char *what) {
    int32_t ia = tk_vocab_find(&bpe->vocab, a, na), ib = tk_vocab_find(&bpe->vocab, b, nb);
    if (ia < 0 || ib < 0)
        return lm_err(LM_ERR_FORMAT, "%s: merge %d uses \"%.*s\" which is not in the vocab", what, (int)rank,
                      (int)(ia < 0 ? (na > 40 ? 40 : na) : (nb > 40 ? 40 : nb)), ia < 0 ? a : b);
    /* the merged token is a + b without b's continuing-subword prefix */
    size_t skip = 0;
    if (bpe->prefix && nb >= bpe->prefix_len && memcmp(b, bpe->prefix, bpe->prefix_len) == 0)
        skip = bpe->prefix_len;
    tmp->n = 0;
    LM_TRY(tk_buf_put(tmp, a, na));
    LM_TRY(tk_buf_put(tmp, b + skip, nb - skip));
    int32_t id = tk_vocab_find(&bpe->vocab, tmp->p, tmp->n);
    if (id < 0)
        return lm_err(LM_ERR_FORMAT, "%s: merge %d result \"%.*s\" is not in the vocab", what, (int)rank,
                      (int)(tmp->n > 40 ? 40 : tmp->n), tmp->p);
    tk_merges_put(&bpe->merges, ia, ib, rank, id);
    return LM_OK;
}

static lm_status load_merges(const cJSON *merges, tk_bpe *bpe, const char *what) {
    if (!merges)
        return tk_merges_init(&bpe->merges, 0);
    if (!cJSON_IsArray(merges))
        return lm_err(LM_ERR_FORMAT, "%s: model.merges must be an array", what);
    int n = cJSON_GetArraySize(merges);
    LM_TRY(tk_merges_init(&bpe->merges, (size_t)n));
    tk_buf tmp = {0};
    lm_status st = LM_OK;
    int32_t rank = 0;
    for (const cJSON *e = merges->child; e && st == LM_OK; e = e->next, rank++) {
        if (cJSON_IsString(e)) {
            const char *s = e->valuestring, *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = lm_err(LM_ERR_FORMAT, "%s: merge %d \"%.40s\" is not two tokens separated by one space", what,
                            (int)rank, s);
                break;
            }
            st = add_merge(bpe, &tmp, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), rank, what);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            const char *a = e->child->valuestring, *b = e->child->next->valuestring;
            st = add_merge(bpe, &tmp, a, strlen(a), b, strlen(b), rank, what);
        } else {
            st = lm_err(LM_ERR_FORMAT, "%s: merge %d must be \"a b\" or [\"a\", \"b\"]", what, (int)rank);
        }
    }
    tk_buf_free(&tmp);
    return st;
}

lm_status tk_bpe_parse(const cJSON *model, tk_bpe *bpe, const char *what) {
    memset(bpe, 0, sizeof *bpe);
    bpe->unk_id = -1;
    for (int i = 0; i < 256; i++)
        bpe->byte_ids[i] = -1;
    const char *type = NULL, *unk = NULL;
    LM_TRY(lm_json_str(model, "type", &type, what));
    if (type && strcmp(type, "BPE") != 0)
        return lm_err(LM_ERR_UNSUPPORTED, "%s: model type \"%s\" is not supported (only BPE)", what, type);
    if (!type && !lm_json_get(model, "merges"))
        return lm_err(LM_ERR_UNSUPPORTED, "%s: model has no type and no merges (only BPE is supported)", what);
    const cJSON *dropout = lm_json_get(model, "dropout");
    if (dropout && (!cJSON_IsNumber(dropout) || dropout->valuedouble != 0.0))
        return lm_err(LM_ERR_UNSUPPORTED, "%s: BPE dropout is not supported", what);
    LM_TRY(lm_json_bool(model, "byte_fallback", 0, &bpe->byte_fallback, what));
    LM_TRY(lm_json_bool(model, "fuse_unk", 0, &bpe->fuse_unk, what));
    LM_TRY(lm_json_bool(model, "ignore_merges", 0, &bpe->ignore_merges, what));
    LM_TRY(dup_opt_str(model, "continuing_subword_prefix", &bpe->prefix, &bpe->prefix_len, what));
    LM_TRY(dup_opt_str(model, "end_of_word_suffix", &bpe->suffix, &bpe->suffix_len, what));
    LM_TRY(lm_json_str(model, "unk_token", &unk, what));
    const cJSON *vocab = lm_json_get(model, "vocab");
    if (!vocab)
        return lm_err(LM_ERR_MISSING, "%s: model.vocab is missing", what);
    LM_TRY(load_vocab(vocab, bpe, what));
    LM_TRY(load_merges(lm_json_get(model, "merges"), bpe, what));
    if (unk) {
        bpe->unk_id = tk_vocab_find(&bpe->vocab, unk, strlen(unk));
        if (bpe->unk_id < 0)
            return lm_err(LM_ERR_FORMAT, "%s: unk_token \"%.40s\" is not in the vocab", what, unk);
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        bpe->byte_ids[b] = tk_vocab_find(&bpe->vocab, name, 6);
    }
    if (!bpe->prefix && !bpe->suffix) {
        bpe->char_ids = malloc(TK_CHAR_CACHE * sizeof *bpe->char_ids);
        if (!bpe->char_ids)
            return lm_err(LM_ERR_NOMEM, "%s: out of memory", what);
        for (int32_t cp = 0; cp < TK_CHAR_CACHE; cp++) {
            char u[4];
            int k = tk_utf8_encode(cp, u);
            bpe->char_ids[cp] = tk_vocab_find(&bpe->vocab, u, (size_t)k);
        }
    }
    return LM_OK;
}

void tk_bpe_free(tk_bpe *bpe) {
    tk_vocab_free(&bpe->vocab);
    tk_merges_free(&bpe->merges);
    free(bpe->prefix);
    free(bpe->suffix);
    free(bpe->char_ids);
    memset(bpe, 0, sizeof *bpe);
}

/* --- encoding --------------------------------------------------------------------------- */

static lm_status grow_work(tk_work *w, size_t n) {
    if (n > w->cap_syms) {
        size_t cap = n < 64 ? 64 : n * 2;
        tk_sym *s = realloc(w->syms, cap * sizeof *s);
        if (!s)
            return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory");
        w->syms = s;
        tk_heap_ent *h = realloc(w->heap, cap * 2 * sizeof *h);
        if (!h)
            return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory");
        w->heap = h;
        w->cap_syms = cap;
        w->cap_heap = cap * 2;
    }
    return LM_OK;
}

static inline int heap_less(const tk_heap_ent *a, const tk_heap_ent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static lm_status heap_push(tk_work *w, size_t *n, tk_heap_ent e) {
    if (*n == w->cap_heap) {
        size_t cap = w->cap_heap * 2;
        tk_heap_ent *h = realloc(w->heap, cap * sizeof *h);
        if (!h)
            return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory");
        w->heap = h;
        w->cap_heap = cap;
    }
    tk_heap_ent *h = w->heap;
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
    return LM_OK;
}

static tk_heap_ent heap_pop(tk_heap_ent *h, size_t *n) {
    tk_heap_ent top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c]))
            c++;
        if (!heap_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = last;
    return top;
}

/* Symbols of one word: one per character (or per byte with byte fallback, or fused unk). */
static lm_status word_symbols(const tk_bpe *bpe, tk_work *w, const char *s, size_t n, size_t *n_syms) {
    size_t k = 0;
    int32_t unk_pending = -1;
    LM_TRY(grow_work(w, n + 1));
    for (size_t i = 0; i < n;) {
        int32_t cp;
        int cl = tk_utf8_decode(s + i, n - i, &cp);
        int32_t id;
        if (bpe->char_ids && cp < TK_CHAR_CACHE) {
            id = bpe->char_ids[cp];
        } else if (!bpe->prefix && !bpe->suffix) {
            id = tk_vocab_find(&bpe->vocab, s + i, (size_t)cl);
        } else {
            tk_buf *t = &w->tmp2;
            t->n = 0;
            if (i > 0 && bpe->prefix)
                LM_TRY(tk_buf_put(t, bpe->prefix, bpe->prefix_len));
            LM_TRY(tk_buf_put(t, s + i, (size_t)cl));
            if (i + (size_t)cl == n && bpe->suffix)
                LM_TRY(tk_buf_put(t, bpe->suffix, bpe->suffix_len));
            id = tk_vocab_find(&bpe->vocab, t->p, t->n);
        }
        if (id >= 0) {
            if (unk_pending >= 0) {
                w->syms[k++].id = unk_pending;
                unk_pending = -1;
            }
            w->syms[k++].id = id;
        } else {
            int ok = bpe->byte_fallback;
            for (int b = 0; ok && b < cl; b++)
                ok = bpe->byte_ids[(unsigned char)s[i + (size_t)b]] >= 0;
            if (ok) {
                /* HF adds the byte tokens without flushing a pending unk first */
                for (int b = 0; b < cl; b++)
                    w->syms[k++].id = bpe->byte_ids[(unsigned char)s[i + (size_t)b]];
            } else if (bpe->unk_id >= 0) {
                if (unk_pending >= 0 && !bpe->fuse_unk)
                    w->syms[k++].id = unk_pending;
                unk_pending = bpe->unk_id;
            }
        }
        i += (size_t)cl;
    }
    if (unk_pending >= 0)
        w->syms[k++].id = unk_pending;
    *n_syms = k;
    return LM_OK;
}

lm_status tk_bpe_encode(const tk_bpe *bpe, tk_work *w, const char *s, size_t n, tk_ids *out) {
    if (n == 0)
        return LM_OK;
    if (bpe->ignore_merges) {
        int32_t id = tk_vocab_find(&bpe->vocab, s, n);
        if (id >= 0)
            return tk_ids_push(out, id);
    }
    size_t k;
    LM_TRY(word_symbols(bpe, w, s, n, &k));
    tk_sym *sym = w->syms;
    for (size_t i = 0; i < k; i++) {
        sym[i].prev = (int32_t)i - 1;
        sym[i].next = i + 1 < k ? (int32_t)i + 1 : -1;
        sym[i].alive = 1;
    }
    size_t nh = 0;
    for (size_t i = 0; i + 1 < k; i++) {
        const tk_merge_entry *m = tk_merges_find(&bpe->merges, sym[i].id, sym[i + 1].id);
        if (m)
            LM_TRY(heap_push(w, &nh, (tk_heap_ent){m->rank, (int32_t)i, m->id}));
    }
    while (nh) {
        tk_heap_ent top = heap_pop(w->heap, &nh);
        tk_sym *a = &sym[top.pos];
        if (!a->alive || a->next < 0)
            continue;
        tk_sym *b = &sym[a->next];
        const tk_merge_entry *m = tk_merges_find(&bpe->merges, a->id, b->id);
        if (!m || m->id != top.id)
            continue; /* stale entry */
        a->id = top.id;
        b->alive = 0;
        a->next = b->next;
        if (b->next >= 0)
            sym[b->next].prev = top.pos;
        if (a->prev >= 0) {
            const tk_merge_entry *mp = tk_merges_find(&bpe->merges, sym[a->prev].id, a->id);
            if (mp)
                LM_TRY(heap_push(w, &nh, (tk_heap_ent){mp->rank, a->prev, mp->id}));
        }
        if (a->next >= 0) {
            const tk_merge_entry *mn = tk_merges_find(&bpe->merges, a->id, sym[a->next].id);
            if (mn)
                LM_TRY(heap_push(w, &nh, (tk_heap_ent){mn->rank, top.pos, mn->id}));
        }
    }
    for (size_t i = 0; i < k; i++)
        if (sym[i].alive)
            LM_TRY(tk_ids_push(out, sym[i].id));
    return LM_OK;
}
