/* Generation on the bundled model: greedy equals token-by-token argmax through lm_ctx_eval and
 * lm_ctx_eval_greedy, the greedy path (the backend picks) equals the host sampler's path, streamed
 * text equals a one-shot decode, finish reasons, cancel, stop strings, seeds, chunked prefill and
 * its progress, prefix reuse, context errors. */
#include <math.h>

#include "test_util.h"
#include "lmcore.h"

#define MAXT 512

typedef struct rec {
    int32_t ids[MAXT];
    float lps[MAXT];
    int n;          /* token callbacks (token >= 0) */
    char text[8192];
    size_t len;
    int flushes;    /* calls with token -1 */
    int cancel_at;  /* return 1 at this callback (0: never) */
} rec;

static int on_token(void *user, const char *t, size_t len, int32_t tok, float lp) {
    rec *r = user;
    if (r->len + len < sizeof r->text) {
        memcpy(r->text + r->len, t, len);
        r->len += len;
        r->text[r->len] = 0;
    }
    if (tok < 0) {
        r->flushes++;
        return 0;
    }
    if (r->n < MAXT) {
        r->ids[r->n] = tok;
        r->lps[r->n] = lp;
    }
    r->n++;
    return r->cancel_at && r->n == r->cancel_at;
}

typedef struct prog {
    int done[64], total[64], n;
} prog;

static int on_progress(void *user, int done, int total) {
    prog *p = user;
    if (p->n < 64) {
        p->done[p->n] = done;
        p->total[p->n] = total;
    }
    p->n++;
    return 0;
}

static lm_status run(lm_session *s, const int32_t *ids, int n, lm_gen_params *p, rec *r, lm_gen_result *res) {
    memset(r, 0, sizeof *r);
    p->on_token = on_token;
    p->user = r;
    res->size = sizeof *res;
    return lm_session_generate(s, ids, n, p, res);
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

int main(void) {
    char dir[1024];
    const char *src = getenv("LMCORE_SRC");
    snprintf(dir, sizeof dir, "%s/models/default", src ? src : ".");
    lm_llm *llm;
    if (lm_llm_load(dir, NULL, &llm) != LM_OK) {
        CHECKF(0, "%s", lm_last_error());
        return test_done("generate");
    }
    const lm_tokenizer *tok = lm_llm_tokenizer(llm);
    const int32_t *eos;
    CHECK(lm_llm_eos_ids(llm, &eos) == 1 && eos[0] == 0); /* <|endoftext|> */
    CHECK(lm_llm_chat_template(llm) == NULL);             /* a base model */
    CHECK(lm_llm_context_length(llm) == 1024);

    /* raw prompt: BOS + text (the tokenizer's post-processor) */
    const char *prompt = "Once upon a time";
    int32_t *ids;
    int n_ids;
    CHECK(lm_llm_encode_raw(llm, prompt, strlen(prompt), &ids, &n_ids) == LM_OK);
    CHECK(n_ids >= 2 && ids[0] == 0);
    lm_chat_message msg = {"user", prompt};
    int32_t *ids2;
    int n2;
    CHECK(lm_llm_encode_chat(llm, &msg, 1, 1, NULL, &ids2, &n2) == LM_OK);
    CHECK(n2 == n_ids && memcmp(ids, ids2, (size_t)n2 * sizeof *ids) == 0); /* no template: raw */
    lm_free_tokens(ids2);

    /* reference: greedy, one token at a time through lm_ctx_eval */
    const int N = 40;
    lm_model_info info;
    lm_model_get_info(lm_llm_model(llm), &info);
    int V = info.vocab_size;
    float *logits = malloc((size_t)V * sizeof *logits);
    int32_t ref[64];
    double ref_lp0 = 0;
    lm_ctx *ctx;
    CHECK(lm_ctx_new(lm_llm_model(llm), NULL, &ctx) == LM_OK);
    CHECK(lm_ctx_eval(ctx, ids, n_ids, logits, 0) == LM_OK);
    for (int i = 0; i < N; i++) {
        ref[i] = argmax(logits, V);
        if (i == 0) {
            double mx = logits[ref[0]], sum = 0;
            for (int k = 0; k < V; k++)
                sum += exp((double)logits[k] - mx);
            ref_lp0 = -log(sum);
        }
        if (i + 1 < N)
            CHECK(lm_ctx_eval(ctx, &ref[i], 1, logits, 0) == LM_OK);
    }
    lm_ctx_free(ctx);
    int ref_eos = 0;
    for (int i = 0; i < N; i++)
        ref_eos |= ref[i] == 0;
    CHECKF(!ref_eos, "the greedy reference hit EOS; pick another prompt");

    lm_session *s;
    CHECK(lm_session_new(llm, NULL, &s) == LM_OK);
    static rec r;
    lm_gen_result res;
    lm_gen_params p = lm_gen_default_params();
    p.max_tokens = N;
    p.logprobs = 1;
    CHECK(run(s, ids, n_ids, &p, &r, &res) == LM_OK);
    CHECKF(r.n == N && memcmp(r.ids, ref, (size_t)N * sizeof *ref) == 0, "greedy differs from the reference");
    CHECK(res.finish_reason == LM_FINISH_LENGTH && res.generation_tokens == N && res.prompt_tokens == n_ids);
    CHECK(res.prompt_tps > 0 && res.generation_tps > 0 && res.peak_memory_gb > 0.01);
    CHECKF(fabs(r.lps[0] - ref_lp0) < 1e-5, "logprob %g vs %g", r.lps[0], ref_lp0);
    /* streamed text == one-shot decode; readable: mostly letters and spaces */
    char one[8192];
    size_t one_len;
    CHECK(lm_tokenizer_decode(tok, ref, (size_t)N, 0, one, sizeof one, &one_len) == LM_OK);
    CHECKF(r.len == one_len && strcmp(r.text, one) == 0, "stream '%s' vs decode '%s'", r.text, one);
    int letters = 0;
    for (size_t i = 0; i < r.len; i++)
        letters += (r.text[i] >= 'a' && r.text[i] <= 'z') || r.text[i] == ' ';
    CHECKF(letters * 10 >= (int)r.len * 7, "unreadable: %s", r.text);
    printf("greedy: %s%s\n", prompt, r.text);

    /* lm_ctx_eval_greedy token by token after the prompt's prefill as the session runs it (all but
     * the last token, then that one): the reference ids, the session's logprobs bit for bit */
    CHECK(lm_ctx_new(lm_llm_model(llm), NULL, &ctx) == LM_OK);
    CHECK(lm_ctx_eval(ctx, ids, n_ids - 1, NULL, 0) == LM_OK);
    int32_t gt = ids[n_ids - 1], same_ids = 1, same_lps = 1;
    for (int i = 0; i < N; i++) {
        int32_t in = gt;
        float glp = NAN, *want_lp = i % 3 == 2 ? NULL : &glp; /* logprob may be NULL */
        CHECK(lm_ctx_eval_greedy(ctx, &in, 1, &gt, want_lp) == LM_OK);
        same_ids &= gt == ref[i];
        if (want_lp)
            same_lps &= memcmp(&glp, &r.lps[i], sizeof glp) == 0;
    }
    CHECKF(same_ids && same_lps, "lm_ctx_eval_greedy: ids %s, logprobs %s", same_ids ? "equal" : "differ",
           same_lps ? "equal" : "differ");
    CHECK(lm_ctx_eval_greedy(ctx, NULL, 1, &gt, NULL) == LM_ERR_INVALID_ARG);
    CHECK(lm_ctx_eval_greedy(ctx, ids, 1, NULL, NULL) == LM_ERR_INVALID_ARG);
    int32_t bad_tok = V;
    CHECK(lm_ctx_eval_greedy(ctx, &bad_tok, 1, &gt, NULL) == LM_ERR_INVALID_ARG);
    lm_ctx_free(ctx);

    /* the greedy path against the host sampler's: a logit bias of 0 changes no logit but turns the
     * backend's pick off; tokens, logprobs (bit for bit), text, finish and counts agree */
    static rec rh;
    lm_gen_result res_h;
    lm_logit_bias nop = {1, 0.0f};
    lm_gen_params ph = p;
    ph.logit_bias = &nop;
    ph.n_logit_bias = 1;
    CHECK(run(s, ids, n_ids, &ph, &rh, &res_h) == LM_OK);
    CHECKF(rh.n == r.n && memcmp(rh.ids, r.ids, (size_t)r.n * sizeof *r.ids) == 0 &&
               memcmp(rh.lps, r.lps, (size_t)r.n * sizeof *r.lps) == 0,
           "greedy path and host path differ");
    CHECK(rh.len == r.len && strcmp(rh.text, r.text) == 0 && res_h.finish_reason == res.finish_reason &&
          res_h.generation_tokens == res.generation_tokens && res_h.prompt_tokens == res.prompt_tokens);
    /* ... and through a stop on a small cache (finish "length" with the cache full) */
    lm_session_params sp1 = lm_session_default_params();
    sp1.n_ctx = n_ids + 6;
    lm_session *s1;
    CHECK(lm_session_new(llm, &sp1, &s1) == LM_OK);
    ph.max_tokens = p.max_tokens = 100;
    CHECK(run(s1, ids, n_ids, &p, &r, &res) == LM_OK);
    CHECK(run(s1, ids, n_ids, &ph, &rh, &res_h) == LM_OK);
    CHECKF(res.finish_reason == LM_FINISH_LENGTH && r.n == 7 && rh.n == r.n &&
               memcmp(rh.ids, r.ids, (size_t)r.n * sizeof *r.ids) == 0 &&
               memcmp(rh.lps, r.lps, (size_t)r.n * sizeof *r.lps) == 0 && res_h.finish_reason == res.finish_reason,
           "full cache: %d and %d tokens", r.n, rh.n);
    lm_session_free(s1);

    /* sampling: streamed == one-shot decode; the same seed gives the same tokens */
    static rec r2;
    p = lm_gen_default_params();
    p.max_tokens = 60;
    p.temp = 0.9f;
    p.top_p = 0.95f;
    p.seed = 1234;
    CHECK(run(s, ids, n_ids, &p, &r, &res) == LM_OK);
    CHECK(run(s, ids, n_ids, &p, &r2, &res) == LM_OK);
    CHECK(r.n > 0 && r.n == r2.n && memcmp(r.ids, r2.ids, (size_t)r.n * sizeof *r.ids) == 0);
    int n_text = r.n;
    if (res.finish_reason == LM_FINISH_STOP)
        n_text--; /* the EOS is not text */
    CHECK(lm_tokenizer_decode(tok, r.ids, (size_t)n_text, 0, one, sizeof one, &one_len) == LM_OK);
    CHECKF(strcmp(r.text, one) == 0, "sampled stream '%s' vs decode '%s'", r.text, one);
    p.seed = 1235;
    CHECK(run(s, ids, n_ids, &p, &r2, &res) == LM_OK);
    CHECK(r.n != r2.n || memcmp(r.ids, r2.ids, (size_t)r.n * sizeof *r.ids) != 0);

    /* finish: max_tokens 0 and 5 */
    p = lm_gen_default_params();
    p.max_tokens = 0;
    CHECK(run(s, ids, n_ids, &p, &r, &res) == LM_OK && res.finish_reason == LM_FINISH_LENGTH && r.n == 0 &&
          res.generation_tokens == 0);
    p.max_tokens = 5;
    CHECK(run(s, ids, n_ids, &p, &r, &res) == LM_OK && res.finish_reason == LM_FINISH_LENGTH && r.n == 5 &&
          memcmp(r.ids, ref, 5 * sizeof *ref) == 0);
    /* finish: EOS (forced by a logit bias) stops at once, the EOS is neither text nor a callback */
    lm_logit_bias force_eos = {0, 100.0f};
    p.logit_bias = &force_eos;
    p.n_logit_bias = 1;
    CHECK(run(s, ids, n_ids, &p, &r, &res) == LM_OK && res.finish_reason == LM_FINISH_STOP && r.n == 0 &&
          r.len == 0 && res.generation_tokens == 1);
    /* cancel from the callback at the 3rd token */
    p = lm_gen_default_params();
    p.max_tokens = N;
    memset(&r, 0, sizeof r);
    r.cancel_at = 3;
    p.on_token = on_token;
    p.user = &r;
    res.size = sizeof res;
    CHECK(lm_session_generate(s, ids, n_ids, &p, &res) == LM_OK);
    CHECK(res.finish_reason == LM_FINISH_CANCELLED && r.n == 3 && res.generation_tokens == 3 && r.flushes == 0);

    /* a stop string taken from the greedy text: output is the text before it */
    char greedy_text[8192];
    CHECK(lm_tokenizer_decode(tok, ref, (size_t)N, 0, greedy_text, sizeof greedy_text, &one_len) == LM_OK);
    size_t at = strlen(greedy_text) / 2;
    char stop[8];
    memcpy(stop, greedy_text + at, 4);
    stop[4] = 0;
    const char *stops[1] = {stop};
    size_t first = (size_t)(strstr(greedy_text, stop) - greedy_text);
    p = lm_gen_default_params();
    p.max_tokens = N;
    p.stop_strings = stops;
    p.n_stop_strings = 1;
    CHECK(run(s, ids, n_ids, &p, &r, &res) == LM_OK);
    CHECKF(res.finish_reason == LM_FINISH_STOP && r.len == first && memcmp(r.text, greedy_text, first) == 0,
           "stop '%s': got '%s'", stop, r.text);
    CHECK(strstr(r.text, stop) == NULL);

    /* penalties see the prompt: a logit bias makes the last prompt token the greedy choice;
     * repetition 1.5 + presence 2.0 on the prompt tokens must then pick what the reference
     * logits processed by hand pick */
    CHECK(lm_ctx_new(lm_llm_model(llm), NULL, &ctx) == LM_OK);
    CHECK(lm_ctx_eval(ctx, ids, n_ids, logits, 0) == LM_OK);
    lm_ctx_free(ctx);
    int32_t tk = ids[n_ids - 1];
    lm_logit_bias pb = {tk, logits[ref[0]] - logits[tk] + 0.5f};
    logits[tk] += pb.bias;
    CHECK(argmax(logits, V) == tk);
    for (int t = 0; t < V; t++) {
        int in_prompt = 0;
        for (int i = 0; i < n_ids; i++)
            in_prompt |= ids[i] == t;
        if (in_prompt) {
            logits[t] = logits[t] < 0 ? logits[t] * 1.5f : logits[t] / 1.5f;
            logits[t] -= 2.0f;
        }
    }
    int32_t want_pen = argmax(logits, V);
    p = lm_gen_default_params();
    p.max_tokens = 1;
    p.logit_bias = &pb;
    p.n_logit_bias = 1;
    CHECK(run(s, ids, n_ids, &p, &r, &res) == LM_OK && r.n == 1 && r.ids[0] == tk);
    p.repetition_penalty = 1.5f;
    p.presence_penalty = 2.0f;
    CHECK(run(s, ids, n_ids, &p, &r, &res) == LM_OK && r.n == 1);
    CHECKF(r.ids[0] == want_pen && want_pen != tk, "penalised first token %d, expected %d (biased %d)", r.ids[0],
           want_pen, tk);

    /* chunked prefill (2 tokens per forward) gives the same tokens, with progress per chunk */
    const char *longp = "The function returns a list of the values in the dictionary";
    int32_t *lids;
    int n_l;
    CHECK(lm_llm_encode_raw(llm, longp, strlen(longp), &lids, &n_l) == LM_OK);
    static rec a, b;
    prog pr = {0};
    p = lm_gen_default_params();
    p.max_tokens = 12;
    CHECK(run(s, lids, n_l, &p, &a, &res) == LM_OK);
    lm_session_reset(s);
    p.prefill_step_size = 2;
    p.on_progress = on_progress;
    p.progress_user = &pr;
    CHECK(run(s, lids, n_l, &p, &b, &res) == LM_OK);
    CHECK(a.n == b.n && memcmp(a.ids, b.ids, (size_t)a.n * sizeof *a.ids) == 0);
    /* (0, T), (2, T), ..., every chunk leaving the last token, then (T, T) */
    int expect_calls = 1 + (n_l - 1 + 1) / 2 + 1;
    CHECKF(pr.n == expect_calls, "%d progress calls, expected %d", pr.n, expect_calls);
    CHECK(pr.done[0] == 0 && pr.done[1] == 2 && pr.total[0] == n_l && pr.done[pr.n - 1] == n_l);

    /* prefix reuse: the session holds prompt + generated tokens; extending them reuses the cache */
    int n_hist;
    const int32_t *hist = lm_session_tokens(s, &n_hist);
    CHECK(n_hist == n_l + 12 - 1 && memcmp(hist, lids, (size_t)n_l * sizeof *lids) == 0);
    int32_t *ext = malloc((size_t)(n_hist + 3) * sizeof *ext);
    memcpy(ext, hist, (size_t)n_hist * sizeof *ext);
    ext[n_hist] = b.ids[11];
    ext[n_hist + 1] = ref[0];
    ext[n_hist + 2] = ref[1];
    p = lm_gen_default_params();
    p.max_tokens = 3;
    CHECK(run(s, ext, n_hist + 3, &p, &a, &res) == LM_OK && res.prompt_tokens_reused == n_hist);
    /* the same tokens from an empty cache */
    lm_session_reset(s);
    CHECK(run(s, ext, n_hist + 3, &p, &b, &res) == LM_OK && res.prompt_tokens_reused == 0);
    CHECK(a.n == 3 && b.n == 3 && memcmp(a.ids, b.ids, 3 * sizeof *a.ids) == 0);
    free(ext);
    lm_free_tokens(lids);

    /* errors: a prompt longer than the context, bad parameters, unsupported cache options */
    int32_t *big = calloc(1100, sizeof *big);
    p = lm_gen_default_params();
    CHECK(lm_session_generate(s, big, 1100, &p, NULL) == LM_ERR_CONTEXT && strstr(lm_last_error(), "1100") &&
          strstr(lm_last_error(), "1024"));
    free(big);
    p.top_k = V;
    CHECK(lm_session_generate(s, ids, n_ids, &p, NULL) == LM_ERR_INVALID_ARG && strstr(lm_last_error(), "top_k"));
    p = lm_gen_default_params();
    p.prefill_step_size = 0;
    CHECK(lm_session_generate(s, ids, n_ids, &p, NULL) == LM_ERR_INVALID_ARG &&
          strstr(lm_last_error(), "prefill_step_size"));
    const char *empty[1] = {""};
    p = lm_gen_default_params();
    p.stop_strings = empty;
    p.n_stop_strings = 1;
    CHECK(lm_session_generate(s, ids, n_ids, &p, NULL) == LM_ERR_INVALID_ARG);
    int32_t bad_id = V + 5;
    p = lm_gen_default_params();
    CHECK(lm_session_generate(s, &bad_id, 1, &p, NULL) == LM_ERR_INVALID_ARG);
    lm_session_params sp = lm_session_default_params();
    sp.max_kv_size = 1; /* must exceed the 4 kept tokens + 1 */
    lm_session *s2;
    CHECK(lm_session_new(llm, &sp, &s2) == LM_ERR_INVALID_ARG && s2 == NULL && strstr(lm_last_error(), "max_kv_size"));
    sp = lm_session_default_params();
    sp.kv_bits = 8; /* the default group of 64 does not divide the head size 32 */
    CHECK(lm_session_new(llm, &sp, &s2) == LM_ERR_INVALID_ARG && s2 == NULL && strstr(lm_last_error(), "kv_group_size"));
    CHECK(strcmp(lm_finish_reason_str(LM_FINISH_STOP), "stop") == 0 &&
          strcmp(lm_finish_reason_str(LM_FINISH_CANCELLED), "cancelled") == 0);

    /* a small context: generation stops with "length" when the cache is full */
    sp = lm_session_default_params();
    sp.n_ctx = n_ids + 4;
    CHECK(lm_session_new(llm, &sp, &s2) == LM_OK);
    p = lm_gen_default_params();
    p.max_tokens = 100;
    CHECK(run(s2, ids, n_ids, &p, &r, &res) == LM_OK && res.finish_reason == LM_FINISH_LENGTH && r.n == 5);
    lm_session_free(s2);

    /* perplexity through the API on the first two windows (the full file is checked by the CLI test) */
    lm_perplexity_params pp = lm_perplexity_default_params();
    pp.context = 0;
    lm_perplexity_result pr2;
    CHECK(lm_llm_perplexity(llm, "abc", 3, &pp, &pr2) == LM_ERR_INVALID_ARG && strstr(lm_last_error(), "context"));
    pp = lm_perplexity_default_params();
    pp.context = 8;
    /* by hand: BOS + the tokens, NLL of tokens 1..n-1 from one forward */
    CHECK(lm_llm_perplexity(llm, prompt, strlen(prompt), &pp, &pr2) == LM_OK);
    CHECK(pr2.windows == 1 && pr2.predicted_tokens == n_ids - 1 && pr2.total_tokens == n_ids);
    float *all = malloc((size_t)n_ids * V * sizeof *all);
    CHECK(lm_ctx_new(lm_llm_model(llm), NULL, &ctx) == LM_OK);
    CHECK(lm_ctx_eval(ctx, ids, n_ids, all, 1) == LM_OK);
    double nll = 0;
    for (int t = 0; t + 1 < n_ids; t++) {
        const float *row = all + (size_t)t * V;
        double mx = row[argmax(row, V)], sum = 0;
        for (int k = 0; k < V; k++)
            sum += exp(row[k] - mx);
        nll += mx + log(sum) - row[ids[t + 1]];
    }
    CHECKF(fabs(pr2.total_nll - nll) < 1e-6 * fabs(nll) + 1e-9 && fabs(pr2.perplexity - exp(nll / (n_ids - 1))) < 1e-6,
           "%g vs %g", pr2.total_nll, nll);
    lm_ctx_free(ctx);
    free(all);

    free(logits);
    lm_free_tokens(ids);
    lm_session_free(s);
    lm_llm_free(llm);
    return test_done("generate");
}
