/* Added tokens: a byte trie for leftmost-longest matching, and the split of text around
 * matches with HF's lstrip / rstrip / single_word rules (added_vocabulary.rs find_matches). */
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_impl.h"

/* --- trie --------------------------------------------------------------------------------- */

static inline size_t edge_hash(uint64_t k, size_t mask) {
    k *= 0x9E3779B97F4A7C15ull;
    return (size_t)(k >> 29) & mask;
}

static lm_status edges_grow(tk_trie *t) {
    size_t cap = t->edge_mask ? (t->edge_mask + 1) * 2 : 1024;
    uint64_t *keys = calloc(cap, sizeof *keys);
    int32_t *child = malloc(cap * sizeof *child);
    if (!keys || !child) {
        free(keys);
        free(child);
        return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory");
    }
    if (t->edge_keys) {
        for (size_t i = 0; i <= t->edge_mask; i++) {
            if (!t->edge_keys[i])
                continue;
            size_t h = edge_hash(t->edge_keys[i], cap - 1);
            while (keys[h])
                h = (h + 1) & (cap - 1);
            keys[h] = t->edge_keys[i];
            child[h] = t->edge_child[i];
        }
    }
    free(t->edge_keys);
    free(t->edge_child);
    t->edge_keys = keys;
    t->edge_child = child;
    t->edge_mask = cap - 1;
    return LM_OK;
}

static inline int32_t edge_find(const tk_trie *t, int32_t node, unsigned char c) {
    uint64_t k = (((uint64_t)node << 8) | c) + 1;
    size_t h = edge_hash(k, t->edge_mask);
    for (;; h = (h + 1) & t->edge_mask) {
        if (t->edge_keys[h] == k)
            return t->edge_child[h];
        if (!t->edge_keys[h])
            return -1;
    }
}

static lm_status new_node(tk_trie *t, int32_t *out) {
    if (t->n_nodes == t->cap_nodes) {
        int32_t cap = t->cap_nodes ? t->cap_nodes * 2 : 256;
        int32_t *term = realloc(t->term, (size_t)cap * sizeof *term);
        if (!term)
            return lm_err(LM_ERR_NOMEM, "tokenizer: out of memory");
        t->term = term;
        t->cap_nodes = cap;
    }
    t->term[t->n_nodes] = -1;
    *out = t->n_nodes++;
    return LM_OK;
}

lm_status tk_trie_add(tk_trie *t, const char *s, size_t n, int32_t value) {
    if (n == 0)
        return LM_OK;
    if (t->n_nodes == 0) {
        int32_t root;
        LM_TRY(new_node(t, &root));
        LM_TRY(edges_grow(t));
    }
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int32_t next = edge_find(t, node, c);
        if (next < 0) {
            if ((t->n_edges + 1) * 2 > t->edge_mask + 1)
                LM_TRY(edges_grow(t));
            LM_TRY(new_node(t, &next));
            uint64_t k = (((uint64_t)node << 8) | c) + 1;
            size_t h = edge_hash(k, t->edge_mask);
            while (t->edge_keys[h])
                h = (h + 1) & t->edge_mask;
            t->edge_keys[h] = k;
            t->edge_child[h] = next;
            t->n_edges++;
        }
        node = next;
    }
    t->term[node] = value; /* a later token with the same content wins */
    t->first[(unsigned char)s[0]] = 1;
    return LM_OK;
}

void tk_trie_free(tk_trie *t) {
    free(t->edge_keys);
    free(t->edge_child);
    free(t->term);
    memset(t, 0, sizeof *t);
}

/* Leftmost-longest match at or after `pos`: returns the added index, -1 when none. */
static int32_t trie_find(const tk_trie *t, const char *s, size_t n, size_t pos, size_t *ms, size_t *me) {
    if (t->n_nodes == 0)
        return -1;
    for (size_t i = pos; i < n; i++) {
        if (!t->first[(unsigned char)s[i]])
            continue;
        int32_t node = 0, best = -1;
        size_t best_end = 0;
        for (size_t j = i; j < n; j++) {
            node = edge_find(t, node, (unsigned char)s[j]);
            if (node < 0)
                break;
            if (t->term[node] >= 0) {
                best = t->term[node];
                best_end = j + 1;
            }
        }
        if (best >= 0) {
            *ms = i;
            *me = best_end;
            return best;
        }
    }
    return -1;
}

/* --- splitting ------------------------------------------------------------------------------ */

static int32_t last_cp(const char *s, size_t n) {
    size_t i = n - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80)
        i--;
    int32_t cp;
    tk_utf8_decode(s + i, n - i, &cp);
    return cp;
}

/* Start of the run of whitespace that ends s[0..n). */
static size_t space_run_start(const char *s, size_t n) {
    while (n > 0) {
        size_t i = n - 1;
        while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80)
            i--;
        int32_t cp;
        tk_utf8_decode(s + i, n - i, &cp);
        if (!tk_is_space(cp))
            break;
        n = i;
    }
    return n;
}

static size_t space_run_len(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int32_t cp;
        int k = tk_utf8_decode(s + i, n - i, &cp);
        if (!tk_is_space(cp))
            break;
        i += (size_t)k;
    }
    return i;
}

lm_status tk_added_split(const lm_tokenizer *tok, const tk_trie *t, const char *s, size_t n, int first_at_start,
                         tk_strs *out) {
    size_t start_off = 0, pos = 0;
    while (pos < n) {
        size_t start, stop;
        int32_t idx = trie_find(t, s, n, pos, &start, &stop);
        if (idx < 0)
            break;
        pos = stop;
        const tk_added *a = &tok->added[idx];
        if (start < start_off)
            continue; /* inside whitespace an earlier rstrip token consumed */
        if (a->single_word) {
            int32_t cp;
            int left_ok = start == 0 || !tk_is_word(last_cp(s, start));
            int right_ok = stop == n || (tk_utf8_decode(s + stop, n - stop, &cp), !tk_is_word(cp));
            if (!left_ok || !right_ok)
                continue;
        }
        if (a->lstrip) {
            size_t ns = space_run_start(s, start);
            start = ns > start_off ? ns : start_off;
        }
        if (a->rstrip)
            stop += space_run_len(s + stop, n - stop);
        if (start_off < start)
            LM_TRY(tk_strs_add(out, s + start_off, start - start_off, -1, first_at_start && start_off == 0));
        LM_TRY(tk_strs_add(out, s + start, stop - start, a->id, first_at_start && start == 0));
        start_off = stop;
        if (pos < stop)
            pos = stop;
    }
    if (start_off < n)
        LM_TRY(tk_strs_add(out, s + start_off, n - start_off, -1, first_at_start && start_off == 0));
    return LM_OK;
}
