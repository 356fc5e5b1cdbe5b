/* Stop-string hold-back. */
#include <stdlib.h>
#include <string.h>

#include "generate/stop.h"

void lm_stop_init(lm_stop *s, const char *const *stops, int n_stops) {
    memset(s, 0, sizeof *s);
    s->stops = stops;
    s->n_stops = n_stops;
}

void lm_stop_free(lm_stop *s) {
    free(s->pending);
    free(s->out);
    s->pending = s->out = NULL;
    s->n_pending = s->cap_pending = s->cap_out = 0;
}

static lm_status reserve(char **p, size_t *cap, size_t need) {
    if (need <= *cap)
        return LM_OK;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    char *np = realloc(*p, nc);
    if (!np)
        return lm_err(LM_ERR_NOMEM, "stop strings: out of memory");
    *p = np;
    *cap = nc;
    return LM_OK;
}

/* Move the first n pending bytes to out. */
static lm_status release(lm_stop *s, size_t n, const char **emit, size_t *emit_len) {
    LM_TRY(reserve(&s->out, &s->cap_out, n + 1));
    memcpy(s->out, s->pending, n);
    s->out[n] = 0;
    memmove(s->pending, s->pending + n, s->n_pending - n);
    s->n_pending -= n;
    *emit = s->out;
    *emit_len = n;
    return LM_OK;
}

/* Length of the longest suffix of text[0..n) that is a proper prefix of `stop`. */
static size_t partial_suffix(const char *text, size_t n, const char *stop) {
    size_t ls = strlen(stop);
    size_t k = ls - 1 < n ? ls - 1 : n;
    for (; k > 0; k--)
        if (memcmp(text + n - k, stop, k) == 0)
            return k;
    return 0;
}

lm_status lm_stop_push(lm_stop *s, const char *text, size_t len, const char **emit, size_t *emit_len, int *matched) {
    *matched = 0;
    LM_TRY(reserve(&s->pending, &s->cap_pending, s->n_pending + len + 1));
    memcpy(s->pending + s->n_pending, text, len);
    s->n_pending += len;
    /* any stop string must start in the pending text: earlier text was released only once it
     * could no longer begin one */
    size_t first = (size_t)-1;
    for (int i = 0; i < s->n_stops; i++) {
        size_t ls = strlen(s->stops[i]);
        for (size_t at = 0; ls && at + ls <= s->n_pending && at < first; at++)
            if (memcmp(s->pending + at, s->stops[i], ls) == 0) {
                first = at;
                break;
            }
    }
    if (first != (size_t)-1) {
        *matched = 1;
        lm_status st = release(s, first, emit, emit_len);
        s->n_pending = 0;
        return st;
    }
    size_t hold = 0;
    for (int i = 0; i < s->n_stops; i++) {
        size_t k = partial_suffix(s->pending, s->n_pending, s->stops[i]);
        if (k > hold)
            hold = k;
    }
    return release(s, s->n_pending - hold, emit, emit_len);
}

lm_status lm_stop_flush(lm_stop *s, const char **emit, size_t *emit_len) {
    return release(s, s->n_pending, emit, emit_len);
}
