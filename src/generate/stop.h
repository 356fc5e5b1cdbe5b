/* Stop strings over streamed text: text that may still be the start of a stop string is held
 * back until it can be ruled out; a stop string (and what follows it) is never released. */
#ifndef LM_GENERATE_STOP_H
#define LM_GENERATE_STOP_H
#include <stddef.h>

#include "core/status.h"

typedef struct lm_stop {
    const char *const *stops; /* borrowed, non-empty strings */
    int n_stops;
    char *pending;            /* held-back text */
    size_t n_pending, cap_pending;
    char *out;                /* the text released by the last call */
    size_t cap_out;
} lm_stop;

void lm_stop_init(lm_stop *s, const char *const *stops, int n_stops);
void lm_stop_free(lm_stop *s);
/* Append text. *emit and *emit_len receive the text that is now final (valid until the next call);
 * *matched is 1 when a stop string appeared: *emit is then the text before it, and the
 * matcher keeps nothing. */
lm_status lm_stop_push(lm_stop *s, const char *text, size_t len, const char **emit, size_t *emit_len, int *matched);
/* Release everything held back (the stream ended without a stop string). */
lm_status lm_stop_flush(lm_stop *s, const char **emit, size_t *emit_len);

#endif
