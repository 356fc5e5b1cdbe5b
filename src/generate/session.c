/* Sessions and the generation loop (mlx-lm generate_step + stream_generate). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "generate/llm.h"
#include "generate/sampler.h"
#include "generate/stop.h"
#include "models/model.h"

struct lm_session {
    lm_llm *llm;
    lm_ctx *ctx;
    int n_ctx;
    int32_t *hist;   /* [hist_cap] the tokens in the cache */
    int n_hist, hist_cap;
    int rotating;    /* max_kv_size: the sequence may outgrow n_ctx */
    float *logits;   /* [vocab] */
    lm_detok *detok;
};

lm_session_params lm_session_default_params(void) {
    lm_session_params p = {0};
    p.size = sizeof p;
    p.kv_group_size = 64;
    p.quantized_kv_start = 5000;
    return p;
}

lm_gen_params lm_gen_default_params(void) {
    lm_gen_params p = {0};
    p.size = sizeof p;
    p.max_tokens = 256;
    p.temp = 0.0f;
    p.top_p = 1.0f;
    p.min_tokens_to_keep = 1;
    p.xtc_threshold = 0.1f;
    p.repetition_context_size = 20;
    p.presence_context_size = 20;
    p.frequency_context_size = 20;
    p.seed = -1;
    p.prefill_step_size = 2048;
    return p;
}

const char *lm_finish_reason_str(lm_finish_reason r) {
    static const char *const names[LM_FINISH_COUNT_] = {
        [LM_FINISH_NONE] = "none", [LM_FINISH_STOP] = "stop", [LM_FINISH_LENGTH] = "length",
        [LM_FINISH_CANCELLED] = "cancelled"};
    return (unsigned)r < LM_FINISH_COUNT_ ? names[r] : "unknown";
}

lm_status lm_session_new(lm_llm *llm, const lm_session_params *params, lm_session **out) {
    if (!out)
        return lm_err(LM_ERR_INVALID_ARG, "lm_session_new: out is NULL");
    *out = NULL;
    if (!llm)
        return lm_err(LM_ERR_INVALID_ARG, "lm_session_new: llm is NULL");
    lm_session_params p = lm_session_default_params();
    if (params)
        memcpy(&p, params, params->size < sizeof p ? params->size : sizeof p);
    if (p.n_ctx < 0)
        return lm_err(LM_ERR_INVALID_ARG, "n_ctx must be >= 0 (0: the model's context of %d)", llm->ctx_len);
    if (p.max_kv_size < 0)
        return lm_err(LM_ERR_INVALID_ARG, "max_kv_size must be >= 0 (0: no limit)");
    lm_session *s = calloc(1, sizeof *s);
    if (!s)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    s->llm = llm;
    s->n_ctx = p.n_ctx ? p.n_ctx : llm->ctx_len;
    s->rotating = p.max_kv_size > 0;
    lm_ctx_params cp = lm_ctx_default_params();
    cp.max_tokens = s->n_ctx;
    cp.max_kv_size = p.max_kv_size; /* keeps mlx-lm's 4 first tokens */
    cp.kv_bits = p.kv_bits;
    cp.kv_group_size = p.kv_group_size;
    cp.quantized_kv_start = p.quantized_kv_start;
    cp.kv_f16 = p.kv_f16;
    lm_status st = lm_ctx_new(llm->model, &cp, &s->ctx);
    if (st == LM_OK)
        st = lm_detok_new(llm->tok, 0, &s->detok);
    if (st == LM_OK) {
        s->hist_cap = s->n_ctx;
        s->hist = malloc((size_t)s->hist_cap * sizeof *s->hist);
        s->logits = malloc((size_t)llm->vocab * sizeof *s->logits);
        if (!s->hist || !s->logits)
            st = lm_err(LM_ERR_NOMEM, "out of memory (a session of %d tokens)", s->n_ctx);
    }
    if (st != LM_OK) {
        lm_session_free(s);
        return st;
    }
    *out = s;
    return LM_OK;
}

void lm_session_free(lm_session *s) {
    if (!s)
        return;
    lm_detok_free(s->detok);
    lm_ctx_free(s->ctx);
    free(s->hist);
    free(s->logits);
    free(s);
}

void lm_session_reset(lm_session *s) {
    if (!s)
        return;
    lm_ctx_reset(s->ctx);
    s->n_hist = 0;
}

const int32_t *lm_session_tokens(const lm_session *s, int *n) {
    if (n)
        *n = s ? s->n_hist : 0;
    return s ? s->hist : NULL;
}

/* --- the loop ---------------------------------------------------------------------------------
 * Penalty processors see the history in the cache, prompt included, as transformers'
 * RepetitionPenaltyLogitsProcessor sees input_ids. (mlx-lm's generate_step passes its
 * processors only the tokens of its final _step, which after chunked prefill is the last
 * prompt token, plus the generated ones; transformers wins where they differ.) */

static double peak_rss_gb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = strtod(line + 6, NULL);
            break;
        }
    fclose(f);
    return kb * 1024.0 / 1e9;
}

static lm_status hist_reserve(lm_session *s, int n) {
    if (n <= s->hist_cap)
        return LM_OK;
    int cap = s->hist_cap * 2 > n ? s->hist_cap * 2 : n;
    int32_t *h = realloc(s->hist, (size_t)cap * sizeof *h);
    if (!h)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    s->hist = h;
    s->hist_cap = cap;
    return LM_OK;
}

/* Evaluate ids, appending them to the history; logits of the last one when `logits`. */
static lm_status eval(lm_session *s, const int32_t *ids, int n, float *logits) {
    LM_TRY(hist_reserve(s, s->n_hist + n));
    LM_TRY(lm_ctx_eval(s->ctx, ids, n, logits, 0));
    memcpy(s->hist + s->n_hist, ids, (size_t)n * sizeof *ids);
    s->n_hist += n;
    return LM_OK;
}

static lm_status validate(const lm_session *s, const lm_gen_params *p, int n_prompt) {
    if (p->max_tokens < -1)
        return lm_err(LM_ERR_INVALID_ARG, "max_tokens must be >= -1 (-1: no limit; got %d)", p->max_tokens);
    if (p->prefill_step_size < 1)
        return lm_err(LM_ERR_INVALID_ARG, "prefill_step_size must be >= 1 (got %d)", p->prefill_step_size);
    if (p->n_stop_strings < 0 || (p->n_stop_strings && !p->stop_strings))
        return lm_err(LM_ERR_INVALID_ARG, "stop_strings: %d entries but no array", p->n_stop_strings);
    for (int i = 0; i < p->n_stop_strings; i++)
        if (!p->stop_strings[i] || !p->stop_strings[i][0])
            return lm_err(LM_ERR_INVALID_ARG, "stop_strings[%d] is empty", i);
    if (n_prompt < 1)
        return lm_err(LM_ERR_INVALID_ARG, "the prompt has no tokens");
    if (n_prompt > s->n_ctx && !s->rotating)
        return lm_err(LM_ERR_CONTEXT,
                      "the prompt has %d tokens but the context holds %d (the model's max_position_embeddings "
                      "is %d; a rotating cache, --max-kv-size N, keeps only the last N tokens)",
                      n_prompt, s->n_ctx, s->llm->ctx_len);
    return LM_OK;
}

/* Prefill all of prompt[from..n) but its last token in chunks (that token picks the first one). */
static lm_status prefill(lm_session *s, const int32_t *prompt, int from, int n, const lm_gen_params *p,
                         int *cancelled) {
    int total = n - from, done = 0;
    if (p->on_progress && p->on_progress(p->progress_user, 0, total))
        return *cancelled = 1, LM_OK;
    while (total - done > 1) {
        int step = total - done - 1;
        if (step > p->prefill_step_size)
            step = p->prefill_step_size;
        LM_TRY(eval(s, prompt + from + done, step, NULL));
        done += step;
        if (p->on_progress && p->on_progress(p->progress_user, done, total))
            return *cancelled = 1, LM_OK;
    }
    return LM_OK;
}

static int is_eos(const lm_llm *llm, int32_t t) {
    for (int i = 0; i < llm->n_eos; i++)
        if (llm->eos[i] == t)
            return 1;
    return 0;
}

typedef struct gen_state {
    lm_session *s;
    const lm_gen_params *p;
    lm_sampler samp;
    lm_stop stop;
    lm_finish_reason finish;
    int stop_string; /* finished on a stop string: nothing more is released */
    int n_gen;
    int in_place;    /* the backend picks the token, the logits stay there (pick_mode) */
    int edits;       /* ... after the processors (lm_sampler_logit_ops) */
    int sampled;     /* ... with the sampler chain (temp > 0) */
    lm_sample_args chain;
} gen_state;

/* Where the token is picked: on the backend, where the logits are, when the step is greedy or the
 * sampler chain without XTC, after processors only on a backend that applies them (the same
 * token, logprob and draws as lm_sampler_sample); else through the sampler on the host. */
static void pick_mode(gen_state *g) {
    lm_ctx *ctx = g->s->ctx;
    g->sampled = lm_sampler_chain_args(&g->samp, &g->chain);
    g->edits = lm_sampler_has_processors(&g->samp);
    g->in_place = (g->p->temp == 0 || (g->sampled && lm_ctx_samples_in_place(ctx))) &&
                  (!g->edits || lm_ctx_edits_in_place(ctx));
}

/* Evaluate ids (appended to the history) and pick the next token (pick_mode). */
static lm_status eval_pick(gen_state *g, const int32_t *ids, int n, int32_t *tok, float *lp) {
    lm_session *s = g->s;
    if (!g->in_place) {
        LM_TRY(eval(s, ids, n, s->logits));
        *tok = lm_sampler_sample(&g->samp, s->logits, s->hist, s->n_hist, lp);
        return *tok < 0 ? LM_ERR_NOMEM : LM_OK; /* (the sampler set the message) */
    }
    int32_t t;
    float l;
    LM_TRY(hist_reserve(s, s->n_hist + n));
    memmove(s->hist + s->n_hist, ids, (size_t)n * sizeof *ids); /* ids may be tok; counted on success */
    const lm_logit_op *ops = NULL;
    int n_ops = g->edits ? lm_sampler_logit_ops(&g->samp, s->hist, s->n_hist + n, &ops) : 0;
    if (n_ops < 0)
        return LM_ERR_NOMEM; /* (the sampler set the message) */
    if (g->sampled)
        g->chain.u = lm_rng_uniform(&g->samp.rng);
    LM_TRY(lm_ctx_eval_pick(s->ctx, s->hist + s->n_hist, n, g->sampled ? &g->chain : NULL, ops, n_ops, &t, &l));
    s->n_hist += n;
    *tok = t;
    *lp = l;
    return LM_OK;
}

/* Deliver text for a token; returns 1 when the callback cancels. */
static int deliver(gen_state *g, const char *text, size_t len, int32_t tok, float lp) {
    if (!g->p->on_token)
        return 0;
    return g->p->on_token(g->p->user, text ? text : "", len, tok, g->p->logprobs ? lp : NAN) != 0;
}

/* One sampled token: stop rules, text, callback. Returns LM_OK; g->finish is set when done. */
static lm_status take_token(gen_state *g, int32_t tok, float lp) {
    lm_session *s = g->s;
    g->n_gen++;
    if (is_eos(s->llm, tok)) {
        g->finish = LM_FINISH_STOP;
        return LM_OK;
    }
    const char *seg, *emit = "";
    size_t seg_len, emit_len = 0;
    int matched = 0;
    LM_TRY(lm_detok_push(s->detok, tok, &seg, &seg_len));
    LM_TRY(lm_stop_push(&g->stop, seg, seg_len, &emit, &emit_len, &matched));
    if (deliver(g, emit, emit_len, tok, lp))
        g->finish = LM_FINISH_CANCELLED;
    else if (matched)
        g->finish = LM_FINISH_STOP;
    else if (g->p->max_tokens >= 0 && g->n_gen >= g->p->max_tokens)
        g->finish = LM_FINISH_LENGTH;
    else if (!s->rotating && lm_ctx_n_past(s->ctx) >= s->n_ctx)
        g->finish = LM_FINISH_LENGTH;
    g->stop_string = matched;
    return LM_OK;
}

/* At the end of a stream that did not stop on a stop string: release held-back text. */
static lm_status finish_text(gen_state *g) {
    const char *t, *emit;
    size_t len, emit_len;
    int matched = 0;
    LM_TRY(lm_detok_flush(g->s->detok, &t, &len));
    LM_TRY(lm_stop_push(&g->stop, t, len, &emit, &emit_len, &matched));
    if (matched) {
        if (emit_len)
            deliver(g, emit, emit_len, -1, NAN);
        return LM_OK;
    }
    size_t n1 = emit_len;
    char *first = NULL;
    if (n1) {
        first = malloc(n1);
        if (!first)
            return lm_err(LM_ERR_NOMEM, "out of memory");
        memcpy(first, emit, n1);
    }
    lm_status st = lm_stop_flush(&g->stop, &emit, &emit_len);
    if (st == LM_OK && n1)
        deliver(g, first, n1, -1, NAN);
    if (st == LM_OK && emit_len)
        deliver(g, emit, emit_len, -1, NAN);
    free(first);
    return st;
}

lm_status lm_session_generate(lm_session *s, const int32_t *prompt, int n_prompt, const lm_gen_params *params,
                              lm_gen_result *result) {
    if (!s || (!prompt && n_prompt))
        return lm_err(LM_ERR_INVALID_ARG, "lm_session_generate: NULL argument");
    lm_gen_params p = lm_gen_default_params();
    if (params)
        memcpy(&p, params, params->size < sizeof p ? params->size : sizeof p);
    p.size = sizeof p;
    if (result) {
        size_t rs = result->size ? result->size : sizeof *result;
        memset(result, 0, rs < sizeof *result ? rs : sizeof *result);
        result->size = rs;
    }
    LM_TRY(validate(s, &p, n_prompt));
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= s->llm->vocab)
            return lm_err(LM_ERR_INVALID_ARG, "prompt token %d (at %d) is outside the vocabulary [0, %d)",
                          (int)prompt[i], i, s->llm->vocab);

    gen_state g = {.s = s, .p = &p};
    LM_TRY(lm_sampler_init(&g.samp, s->llm->vocab, &p, s->llm->xtc_special, s->llm->n_xtc_special));
    pick_mode(&g);
    lm_stop_init(&g.stop, p.stop_strings, p.n_stop_strings);
    lm_detok_reset(s->detok);

    /* reuse the cached tokens the prompt starts with (at least one token must be new); the cache
     * is cut back to them, which a rotating cache that has dropped tokens cannot do */
    int reuse = 0;
    while (reuse < s->n_hist && reuse < n_prompt - 1 && s->hist[reuse] == prompt[reuse])
        reuse++;
    if (reuse < s->n_hist && lm_ctx_truncate(s->ctx, reuse) != LM_OK)
        reuse = 0;
    if (reuse == 0)
        lm_session_reset(s);
    s->n_hist = reuse;

    double t0 = lm_time_s(), t1 = t0;
    int cancelled = 0;
    lm_status st = prefill(s, prompt, reuse, n_prompt, &p, &cancelled);
    int32_t tok = 0;
    float lp = NAN;
    if (st == LM_OK && !cancelled) /* the last prompt token, and the first token from it */
        st = eval_pick(&g, prompt + n_prompt - 1, 1, &tok, &lp);
    if (st == LM_OK && cancelled)
        g.finish = LM_FINISH_CANCELLED;
    if (st == LM_OK && !cancelled) {
        t1 = lm_time_s();
        if (p.on_progress && p.on_progress(p.progress_user, n_prompt - reuse, n_prompt - reuse))
            g.finish = LM_FINISH_CANCELLED;
        if (p.max_tokens == 0 && g.finish == LM_FINISH_NONE)
            g.finish = LM_FINISH_LENGTH;
        if (g.finish == LM_FINISH_NONE)
            st = take_token(&g, tok, lp);
        while (st == LM_OK && g.finish == LM_FINISH_NONE) {
            st = eval_pick(&g, &tok, 1, &tok, &lp);
            if (st == LM_OK)
                st = take_token(&g, tok, lp);
        }
        if (st == LM_OK && !g.stop_string && (g.finish == LM_FINISH_LENGTH || g.finish == LM_FINISH_STOP))
            st = finish_text(&g);
    }
    double t2 = lm_time_s();
    if (result) {
        lm_gen_result r = {0};
        r.size = result->size;
        r.finish_reason = g.finish;
        r.prompt_tokens = n_prompt;
        r.prompt_tokens_reused = reuse;
        r.prompt_tps = t1 > t0 ? (n_prompt - reuse) / (t1 - t0) : 0;
        r.generation_tokens = g.n_gen;
        r.generation_tps = t2 > t1 && g.n_gen ? g.n_gen / (t2 - t1) : 0;
        r.peak_memory_gb = peak_rss_gb();
        size_t rs = result->size ? result->size : sizeof r;
        memcpy(result, &r, rs < sizeof r ? rs : sizeof r);
    }
    lm_stop_free(&g.stop);
    lm_sampler_free(&g.samp);
    return st;
}

/* --- prompt caches --------------------------------------------------------------------------------- */

lm_status lm_session_save(const lm_session *s, const char *path) {
    if (!s || !path)
        return lm_err(LM_ERR_INVALID_ARG, "lm_session_save: NULL argument");
    return lm_ctx_save(s->ctx, path, s->hist, s->n_hist);
}

lm_status lm_session_load(lm_session *s, const char *path) {
    if (!s || !path)
        return lm_err(LM_ERR_INVALID_ARG, "lm_session_load: NULL argument");
    int32_t *tok = NULL;
    int n = 0;
    lm_status st = lm_ctx_load(s->ctx, path, &tok, &n);
    if (st == LM_OK)
        st = hist_reserve(s, n);
    if (st == LM_OK) {
        memcpy(s->hist, tok, (size_t)n * sizeof *tok);
        s->n_hist = n;
    } else {
        lm_session_reset(s);
    }
    lm_free_tokens(tok);
    return st;
}
