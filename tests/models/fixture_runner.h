/* Runs one reference checkpoint from ../shared/fixtures/models through the C API and compares
 * prefill logits, greedy ids and decode logits with transformers' expected.safetensors, and
 * lm_ctx_eval_greedy with the host sampler on the same forward passes. */
#ifndef LM_TEST_FIXTURE_RUNNER_H
#define LM_TEST_FIXTURE_RUNNER_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "generate/sampler.h"
#include "io/safetensors.h"
#include "lmcore.h"
#include "test_util.h"

#define FIXTURE_TOL 2e-3

static inline double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) /* NaN counts as a failure */
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

static inline int argmax_f(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

/* lm_ctx_eval_greedy against lm_sampler_sample (temp 0) on the logits of the same computation:
 * the prompt, then two one-token steps fed with the picked tokens, on two contexts (one returns
 * logits, one picks where they are). The logprob is bit-identical, or within 1e-6 * max(1, |lp|)
 * when `exact` is 0 (a device sums in another order). */
static inline void check_greedy(const char *name, lm_model *m, const int32_t *ids, int T, int V, int exact) {
    lm_ctx *a = NULL, *b = NULL;
    float *lg = malloc((size_t)V * sizeof *lg);
    lm_sampler s;
    lm_gen_params p = lm_gen_default_params();
    if (!lg || lm_sampler_init(&s, V, &p, NULL, 0) != LM_OK) {
        CHECKF(0, "%s: greedy check: %s", name, lm_last_error());
        free(lg);
        return;
    }
    if (lm_ctx_new(m, NULL, &a) != LM_OK || lm_ctx_new(m, NULL, &b) != LM_OK) {
        CHECKF(0, "%s: greedy check: %s", name, lm_last_error());
        goto done;
    }
    const int32_t *in = ids;
    int n = T;
    int32_t feed;
    for (int step = 0; step < 3; step++) {
        int32_t tok = -1;
        float lp = 0, want_lp;
        if (lm_ctx_eval(a, in, n, lg, 0) != LM_OK || lm_ctx_eval_greedy(b, in, n, &tok, &lp) != LM_OK) {
            CHECKF(0, "%s: greedy step %d: %s", name, step, lm_last_error());
            break;
        }
        int32_t want = lm_sampler_sample(&s, lg, NULL, 0, &want_lp);
        int lp_ok = lp == want_lp || (!exact && fabs((double)lp - want_lp) <= 1e-6 * fmax(1.0, fabs(want_lp)));
        CHECKF(tok == want && lp_ok, "%s: greedy step %d: token %d logprob %.9g, the sampler's %d %.9g", name, step,
               tok, lp, want, want_lp);
        feed = want;
        in = &feed;
        n = 1;
    }
done:
    lm_sampler_free(&s);
    free(lg);
    lm_ctx_free(a);
    lm_ctx_free(b);
}

/* Returns 0 when the fixture matches within tol_prefill (logits) and tol_decode (decode_logits),
 * with greedy ids identical. `params` and `cparams` (the context's) may be NULL. */
static inline int run_fixture_ctx(const char *name, const lm_model_params *params, const lm_ctx_params *cparams,
                                  double tol_prefill, double tol_decode) {
    char dir[1024], exp_path[1200];
    snprintf(dir, sizeof dir, "%s/models/%s", t_fixtures(), name);
    snprintf(exp_path, sizeof exp_path, "%s/expected.safetensors", dir);
    lm_st_set *exp = NULL;
    lm_model *m = NULL;
    lm_ctx *ctx = NULL;
    float *logits = NULL, *step = NULL;
    int32_t *ids = NULL;
    int fails_before = t_fail;
    if (lm_st_open_file(exp_path, &exp) != LM_OK) {
        CHECKF(0, "%s: %s", name, lm_last_error());
        return 1;
    }
    const lm_st_tensor *ti = lm_st_find(exp, "input_ids"), *tl = lm_st_find(exp, "logits");
    const lm_st_tensor *tg = lm_st_find(exp, "greedy_ids"), *td = lm_st_find(exp, "decode_logits");
    CHECKF(ti && tl && tg && td, "%s: expected.safetensors lacks a tensor", name);
    if (!(ti && tl && tg && td))
        goto done;
    int T = (int)ti->numel, V = (int)tl->shape[1], N = (int)tg->numel;
    if (lm_model_load(dir, params, &m) != LM_OK || lm_ctx_new(m, cparams, &ctx) != LM_OK) {
        CHECKF(0, "%s: load failed: %s", name, lm_last_error());
        goto done;
    }
    lm_model_info info;
    lm_model_get_info(m, &info);
    CHECKF(info.vocab_size == V, "%s: vocab %d vs expected %d", name, info.vocab_size, V);
    ids = malloc((size_t)T * sizeof *ids);
    logits = malloc((size_t)T * V * sizeof *logits);
    step = malloc((size_t)V * sizeof *step);
    const int64_t *in = ti->data;
    for (int t = 0; t < T; t++)
        ids[t] = (int32_t)in[t];
    if (lm_ctx_eval(ctx, ids, T, logits, 1) != LM_OK) {
        CHECKF(0, "%s: prefill failed: %s", name, lm_last_error());
        goto done;
    }
    double dp = max_abs_diff(logits, tl->data, (size_t)T * V), dd = 0;
    CHECKF(dp <= tol_prefill, "%s: prefill logits max |diff| %.3g > %.0e", name, dp, tol_prefill);
    /* greedy decode through the KV cache */
    const int64_t *greedy = tg->data;
    const float *dl = td->data;
    int32_t next = argmax_f(logits + (size_t)(T - 1) * V, V), same = 1;
    for (int i = 0; i < N; i++) {
        if (next != greedy[i])
            same = 0;
        int32_t feed = (int32_t)greedy[i]; /* follow the reference so later steps stay comparable */
        if (lm_ctx_eval(ctx, &feed, 1, step, 0) != LM_OK) {
            CHECKF(0, "%s: decode step %d failed: %s", name, i, lm_last_error());
            goto done;
        }
        double d = max_abs_diff(step, dl + (size_t)i * V, (size_t)V);
        if (d > dd)
            dd = d;
        next = argmax_f(step, V);
    }
    CHECKF(same, "%s: greedy ids differ from the reference", name);
    CHECKF(dd <= tol_decode, "%s: decode logits max |diff| %.3g > %.0e", name, dd, tol_decode);
    check_greedy(name, m, ids, T, V, !params || params->device == LM_DEVICE_CPU);
    printf("  %-22s T=%-4d N=%-3d prefill max|d| %.2e  decode max|d| %.2e  greedy %s%s\n", name, T, N, dp, dd,
           same ? "identical" : "DIFFERENT", cparams && cparams->kv_f16 ? "  (f16 KV)" : "");
done:
    free(ids);
    free(logits);
    free(step);
    lm_ctx_free(ctx);
    lm_model_free(m);
    lm_st_close(exp);
    return t_fail != fails_before;
}

static inline int run_fixture_tol(const char *name, const lm_model_params *params, double tol_prefill,
                                  double tol_decode) {
    return run_fixture_ctx(name, params, NULL, tol_prefill, tol_decode);
}

static inline int run_fixture(const char *name, const lm_model_params *params) {
    return run_fixture_tol(name, params, FIXTURE_TOL, FIXTURE_TOL);
}

#endif
