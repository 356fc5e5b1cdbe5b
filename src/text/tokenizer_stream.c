/* Streaming detokenizer. Text for a window of recent ids is decoded twice: without and with
 * the newest ids; the difference is new text, released only when it does not end in an
 * incomplete UTF-8 character (U+FFFD). The window starts where earlier text was final, so
 * decoder rules that depend on position (Strip of the first space, Metaspace's first
 * token) apply exactly as in a full decode. (The same scheme as HF text-generation-
 * inference's decode_token and tokenizers' DecodeStream; mlx-lm's SPM/BPE streaming
 * detokenizers follow the same rules: never split a character, keep each token's space.) */
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_impl.h"

/* Held-back ids beyond which text is released anyway (a model emitting endless invalid
 * bytes); below it the streamed text always equals a full decode. */
#define DETOK_MAX_PENDING 1024

struct lm_detok {
    const lm_tokenizer *tok;
    int skip_special;
    tk_ids ids;   /* window: ids[0..read) already emitted (context), ids[read..n) pending */
    size_t read;
    tk_buf prefix, full, out;
    tk_work w;
};

lm_status lm_detok_new(const lm_tokenizer *tok, int skip_special, lm_detok **out) {
    if (!out)
        return lm_err(LM_ERR_INVALID_ARG, "lm_detok_new: out is NULL");
    *out = NULL;
    if (!tok)
        return lm_err(LM_ERR_INVALID_ARG, "lm_detok_new: tokenizer is NULL");
    lm_detok *d = calloc(1, sizeof *d);
    if (!d)
        return lm_err(LM_ERR_NOMEM, "lm_detok_new: out of memory");
    d->tok = tok;
    d->skip_special = skip_special;
    lm_status s = tk_work_init(&d->w);
    if (s == LM_OK)
        s = tk_buf_put(&d->out, "", 0);
    if (s != LM_OK) {
        lm_detok_free(d);
        return s;
    }
    *out = d;
    return LM_OK;
}

static int ends_incomplete(const tk_buf *b) {
    return b->n >= 3 && memcmp(b->p + b->n - 3, "\xEF\xBF\xBD", 3) == 0;
}

/* With a ByteFallback decoder a run of <0xXX> tokens is decoded as one group: if the whole
 * run is not valid UTF-8 every byte becomes U+FFFD, so a later byte can change the text of
 * earlier ones. Text is therefore held while the newest id is a byte token. */
static int ends_in_byte_token(const lm_detok *d) {
    if (!d->tok->dec_byte_fallback || d->ids.n == 0)
        return 0;
    size_t len;
    const char *s = tk_vocab_str(&d->tok->bpe.vocab, d->ids.v[d->ids.n - 1], &len);
    return s && d->tok->added_of_id[d->ids.v[d->ids.n - 1]] < 0 && len == 6 && memcmp(s, "<0x", 3) == 0 &&
           s[5] == '>';
}

/* Decode the window; emit its new text when final (or when forced). */
static lm_status step(lm_detok *d, int force, const char **text, size_t *len) {
    d->out.n = 0;
    d->out.p[0] = 0;
    d->prefix.n = d->full.n = 0;
    LM_TRY(tk_decode(d->tok, &d->w, d->ids.v, d->read, d->skip_special, &d->prefix));
    LM_TRY(tk_decode(d->tok, &d->w, d->ids.v, d->ids.n, d->skip_special, &d->full));
    int hold = !force && (ends_incomplete(&d->full) || ends_in_byte_token(d)) &&
               d->ids.n - d->read < DETOK_MAX_PENDING;
    if (!hold && d->full.n > d->prefix.n) {
        LM_TRY(tk_buf_put(&d->out, d->full.p + d->prefix.n, d->full.n - d->prefix.n));
        /* the emitted ids become the context of the next window */
        memmove(d->ids.v, d->ids.v + d->read, (d->ids.n - d->read) * sizeof *d->ids.v);
        d->ids.n -= d->read;
        d->read = d->ids.n;
    } else if (!hold && force) {
        d->ids.n = d->read = 0;
    }
    if (text)
        *text = d->out.p;
    if (len)
        *len = d->out.n;
    return LM_OK;
}

lm_status lm_detok_push(lm_detok *d, int32_t id, const char **text, size_t *len) {
    if (text)
        *text = "";
    if (len)
        *len = 0;
    if (!d)
        return lm_err(LM_ERR_INVALID_ARG, "lm_detok_push: detokenizer is NULL");
    LM_TRY(tk_ids_push(&d->ids, id));
    return step(d, 0, text, len);
}

lm_status lm_detok_flush(lm_detok *d, const char **text, size_t *len) {
    if (text)
        *text = "";
    if (len)
        *len = 0;
    if (!d)
        return lm_err(LM_ERR_INVALID_ARG, "lm_detok_flush: detokenizer is NULL");
    LM_TRY(step(d, 1, text, len));
    d->ids.n = d->read = 0;
    return LM_OK;
}

void lm_detok_reset(lm_detok *d) {
    if (d)
        d->ids.n = d->read = 0;
}

void lm_detok_free(lm_detok *d) {
    if (!d)
        return;
    tk_ids_free(&d->ids);
    tk_buf_free(&d->prefix);
    tk_buf_free(&d->full);
    tk_buf_free(&d->out);
    tk_work_free(&d->w);
    free(d);
}
