/* lm_ctx_eval_greedy on a backend without the argmax op (a copy of the CPU table with the slot
 * NULL): the decoder downloads the logits and picks on the host. Token and logprob must equal the
 * backend op's and the sampler's on the same logits, bit for bit (gemma3n_text: a final softcap;
 * llama: a plain head). */
#include "fixture_runner.h"
#include "models/model.h"

static void check_fallback(const char *name) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/%s", t_fixtures(), name);
    lm_model *m = NULL;
    if (lm_model_load(dir, NULL, &m) != LM_OK) {
        CHECKF(0, "%s: %s", name, lm_last_error());
        return;
    }
    const lm_backend_ops *ops = m->be->ops;
    lm_backend_ops plain = *ops;
    plain.argmax = NULL;
    int V = m->cfg.vocab;
    float *lg = malloc((size_t)V * sizeof *lg);
    lm_gen_params gp = lm_gen_default_params();
    lm_sampler s;
    lm_ctx *a = NULL, *b = NULL, *c = NULL;
    CHECK(lg && lm_sampler_init(&s, V, &gp, NULL, 0) == LM_OK);
    /* a: logits; b: the backend's argmax op; c: the host fallback (its buffers sized without the op) */
    CHECK(lm_ctx_new(m, NULL, &a) == LM_OK && lm_ctx_new(m, NULL, &b) == LM_OK);
    m->be->ops = &plain;
    CHECK(lm_ctx_new(m, NULL, &c) == LM_OK);
    m->be->ops = ops;
    int32_t ids[7] = {2, 10, 33, 7, 91, 5, 120}, feed = 0;
    const int32_t *in = ids;
    int n = 7, ok = 1;
    for (int step = 0; step < 4 && a && b && c; step++) {
        int32_t tb = -1, tc = -2;
        float lb = 0, lc = 1, want_lp;
        CHECK(lm_ctx_eval(a, in, n, lg, 0) == LM_OK && lm_ctx_eval_greedy(b, in, n, &tb, &lb) == LM_OK);
        m->be->ops = &plain;
        CHECK(lm_ctx_eval_greedy(c, in, n, &tc, &lc) == LM_OK);
        m->be->ops = ops;
        int32_t want = lm_sampler_sample(&s, lg, NULL, 0, &want_lp);
        ok &= tb == want && tc == want && memcmp(&lb, &want_lp, sizeof lb) == 0 &&
              memcmp(&lc, &want_lp, sizeof lc) == 0;
        feed = want;
        in = &feed;
        n = 1;
    }
    CHECKF(ok, "%s: the host fallback, the argmax op and the sampler disagree", name);
    CHECKF(c && c->logits_host && b && b->logits_host, "%s: no host logits buffer", name);
    lm_ctx_free(a);
    lm_ctx_free(b);
    lm_ctx_free(c);
    lm_sampler_free(&s);
    free(lg);
    lm_model_free(m);
}

int main(void) {
    check_fallback("gemma3n_text");
    check_fallback("llama");
    return test_done("greedy_fallback");
}
