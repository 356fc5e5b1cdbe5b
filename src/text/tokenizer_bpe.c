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

lm_status tk_bpe_add_merge(tk_bpe *bpe, tk_buf *tmp, const char *a, size_t na, const char *b, size_t nb,
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

#define META "\xE2\x96\x81" /* U+2581, SentencePiece's word boundary mark */

static void find_meta_split(tk_bpe *bpe) {
    bpe->meta_split = 0;
    if (bpe->prefix || bpe->suffix || tk_vocab_find(&bpe->vocab, META, 3) < 0)
        return;
    for (int32_t id = 0; id < bpe->vocab.n_ids; id++) {
        size_t n;
        const char *s = tk_vocab_str(&bpe->vocab, id, &n);
        for (size_t i = 1; s && i + 3 <= n; i++) {
            if (memcmp(s + i, META, 3) != 0)
                continue;
            size_t k = i - 1;
            while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
                k--;
            int32_t cp;
            tk_utf8_decode(s + k, i - k, &cp);
            if (cp == 0x2581)
                continue;
            int known = 0;
            for (int q = 0; q < bpe->n_meta_unsafe; q++)
                known |= bpe->meta_unsafe[q] == cp;
            if (known)
                continue;
            if (bpe->n_meta_unsafe == (int)(sizeof bpe->meta_unsafe / sizeof bpe->meta_unsafe[0]))
                return; /* too many: leave the optimisation off */
            bpe->meta_unsafe[bpe->n_meta_unsafe++] = cp;
        }
    }
    bpe->meta_split = 1;
}

lm_status tk_bpe_parse(const cJSON *model, const char *json, const tk_json_spans *sp, tk_bpe *bpe, const char *what) {
    bpe->unk_id = -1;
    for (int i = 0; i < 256; i++)
        bpe->byte_ids[i] = -1;
    const char *type = NULL, *unk = NULL;
    LM_TRY(lm_json_str(model, "type", &type, what));
    if (type && strcmp(type, "BPE") != 0)
        return lm_err(LM_ERR_UNSUPPORTED, "%s: model type \"%s\" is not supported (only BPE)", what, type);
    if (!type && !sp->merges[1])
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
    LM_TRY(tk_json_load_vocab(json, sp, what, bpe));
    LM_TRY(tk_json_load_merges(json, sp, what, bpe));
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
    find_meta_split(bpe);
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

/* Heap entries pack (rank << 32 | position) so that one integer comparison orders them by
 * rank, then leftmost position (HF's Merge ordering); a 4-ary heap keeps it shallow. */
typedef uint64_t tk_heap_ent;

static lm_status grow_work(tk_work *w, size_t n) {
    if (n > w->cap_syms) {
        size_t cap = n < 64 ? 64 : n * 2;
        tk_sym *s = realloc(w->syms, cap * sizeof *s);
        if (!s)
            return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory");
        w->syms = s;
        w->cap_syms = cap;
    }
    if (n * 2 > w->cap_heap) {
        size_t cap = n < 64 ? 128 : n * 4;
        tk_heap_ent *h = realloc(w->heap, cap * sizeof *h);
        if (!h)
            return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory");
        w->heap = h;
        w->cap_heap = cap;
    }
    return LM_OK;
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
        size_t p = (i - 1) / 4;
        if (e >= h[p])
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
    return LM_OK;
}

static tk_heap_ent heap_pop(tk_heap_ent *h, size_t *n) {
    tk_heap_ent top = h[0], last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 4 * i + 1;
        if (c >= m)
            break;
        size_t best = c, end = c + 4 < m ? c + 4 : m;
        for (size_t k = c + 1; k < end; k++)
            if (h[k] < h[best])
                best = k;
        if (h[best] >= last)
            break;
        h[i] = h[best];
        i = best;
    }
    if (m)
        h[i] = last;
    return top;
}

static inline tk_heap_ent heap_ent(int32_t rank, int32_t pos) {
    return ((uint64_t)(uint32_t)rank << 32) | (uint32_t)pos;
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

static lm_status encode_part(const tk_bpe *bpe, tk_work *w, const char *s, size_t n, tk_ids *out) {
    size_t k;
    LM_TRY(word_symbols(bpe, w, s, n, &k));
    tk_sym *sym = w->syms;
    for (size_t i = 0; i < k; i++) {
        sym[i].prev = (int32_t)i - 1;
        sym[i].next = i + 1 < k ? (int32_t)i + 1 : -1;
        sym[i].alive = 1;
    }
    size_t nh = 0;
    tk_heap_ent *heap = w->heap;
    for (size_t i = 0; i + 1 < k; i++) { /* k - 1 <= cap_heap: no growth, heapify in place */
        const tk_merge_entry *m = tk_merges_find(&bpe->merges, sym[i].id, sym[i + 1].id);
        if (m)
            heap[nh++] = heap_ent(m->rank, (int32_t)i);
    }
    for (size_t i = nh / 4 + 1; i-- > 0;) { /* sift down every internal node */
        size_t j = i;
        tk_heap_ent v = heap[j];
        for (;;) {
            size_t c = 4 * j + 1, best;
            if (c >= nh)
                break;
            best = c;
            for (size_t q = c + 1; q < c + 4 && q < nh; q++)
                if (heap[q] < heap[best])
                    best = q;
            if (heap[best] >= v)
                break;
            heap[j] = heap[best];
            j = best;
        }
        heap[j] = v;
    }
    while (nh) {
        tk_heap_ent top = heap_pop(w->heap, &nh);
        int32_t pos = (int32_t)(uint32_t)top, rank = (int32_t)(top >> 32);
        tk_sym *a = &sym[pos];
        if (!a->alive || a->next < 0)
            continue;
        tk_sym *b = &sym[a->next];
        const tk_merge_entry *m = tk_merges_find(&bpe->merges, a->id, b->id);
        if (!m || m->rank != rank)
            continue; /* stale entry: a rank names one pair, so this checks the pair */
        a->id = m->id;
        b->alive = 0;
        a->next = b->next;
        if (b->next >= 0)
            sym[b->next].prev = pos;
        if (a->prev >= 0) {
            const tk_merge_entry *mp = tk_merges_find(&bpe->merges, sym[a->prev].id, a->id);
            if (mp)
                LM_TRY(heap_push(w, &nh, heap_ent(mp->rank, a->prev)));
        }
        if (a->next >= 0) {
            const tk_merge_entry *mn = tk_merges_find(&bpe->merges, a->id, sym[a->next].id);
            if (mn)
                LM_TRY(heap_push(w, &nh, heap_ent(mn->rank, pos)));
        }
    }
    for (size_t i = 0; i < k; i++)
        if (sym[i].alive)
            LM_TRY(tk_ids_push(out, sym[i].id));
    return LM_OK;
}

/* Is s[i] (a U+2581 start) a point no merge crosses? */
static int meta_cut(const tk_bpe *bpe, const char *s, size_t i) {
    size_t k = i - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
        k--;
    int32_t cp;
    tk_utf8_decode(s + k, i - k, &cp);
    if (cp == 0x2581)
        return 0;
    for (int q = 0; q < bpe->n_meta_unsafe; q++)
        if (bpe->meta_unsafe[q] == cp)
            return 0;
    return 1;
}

lm_status tk_bpe_encode(const tk_bpe *bpe, tk_work *w, const char *s, size_t n, tk_ids *out) {
    if (n == 0)
        return LM_OK;
    if (bpe->ignore_merges) {
        int32_t id = tk_vocab_find(&bpe->vocab, s, n);
        if (id >= 0)
            return tk_ids_push(out, id);
    }
    if (!bpe->meta_split || n < 64)
        return encode_part(bpe, w, s, n, out);
    size_t start = 0;
    for (const char *p = s + 1; (p = memmem(p, n - (size_t)(p - s), META, 3)) != NULL; p += 3) {
        size_t i = (size_t)(p - s);
        if (meta_cut(bpe, s, i)) {
            LM_TRY(encode_part(bpe, w, s + start, i - start, out));
            start = i;
        }
        if (n - i < 4)
            break;
    }
    return encode_part(bpe, w, s + start, n - start, out);
}
