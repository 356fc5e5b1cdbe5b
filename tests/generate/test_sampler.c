/* Samplers and logits processors against hand-computed distributions (mlx-lm semantics); the
 * greedy pick (core/softmax.h, the CPU backend's argmax op) against the sampler at temp 0. */
#include <math.h>
#include <string.h>

#include "backend/backend.h"
#include "core/softmax.h"
#include "generate/sampler.h"
#include "test_util.h"

#define NEAR(a, b) (fabs((double)(a) - (double)(b)) < 1e-6)

/* --- the processors with mlx-lm's semantics, one at a time (the reference for the engine's
 * lm_sampler_logit_ops): logits [V] in place, hist[0..n_hist) oldest first; `seen` is V bytes of
 * scratch, zero on entry and on return --- */

static void ref_logit_bias(float *logits, int V, const lm_logit_bias *bias, int n_bias) {
    for (int i = 0; i < n_bias; i++)
        if (bias[i].token >= 0 && bias[i].token < V)
            logits[bias[i].token] += bias[i].bias;
}

/* Once per distinct token of the last `ctx`: rep, logit < 0 ? logit * penalty : logit / penalty
 * (mlx-lm writes logits[:, tokens] = f(logits[:, tokens])); else logit -= penalty (presence, an
 * indexed assignment). */
static void ref_distinct(float *logits, int V, const int32_t *hist, int n_hist, float penalty, int ctx, int rep,
                         uint8_t *seen) {
    int from = n_hist > ctx ? n_hist - ctx : 0;
    for (int i = from; i < n_hist; i++) {
        int32_t t = hist[i];
        if (t < 0 || t >= V || seen[t])
            continue;
        seen[t] = 1;
        logits[t] = rep ? (logits[t] < 0 ? logits[t] * penalty : logits[t] / penalty) : logits[t] - penalty;
    }
    for (int i = from; i < n_hist; i++)
        if (hist[i] >= 0 && hist[i] < V)
            seen[hist[i]] = 0;
}

/* mlx-lm: logits.at[:, tokens].subtract(penalty) (a scatter-add: once per occurrence). */
static void ref_frequency(float *logits, int V, const int32_t *hist, int n_hist, float penalty, int ctx) {
    int from = n_hist > ctx ? n_hist - ctx : 0;
    for (int i = from; i < n_hist; i++)
        if (hist[i] >= 0 && hist[i] < V)
            logits[hist[i]] -= penalty;
}

static void set_probs(float *lp, const double *p, int n) {
    for (int i = 0; i < n; i++)
        lp[i] = (float)log(p[i]);
}

/* The kept set as a bitmask (finite entries). */
static unsigned kept(const float *lp, int n) {
    unsigned m = 0;
    for (int i = 0; i < n; i++)
        if (lp[i] > -INFINITY)
            m |= 1u << i;
    return m;
}

static void test_processors(void) {
    float x[4] = {2, -1, 0.5f, 3};
    int32_t hist[3] = {0, 1, 0};
    uint8_t seen[4] = {0};
    /* repetition: positive / 2, negative * 2, once per distinct token */
    ref_distinct(x, 4, hist, 3, 2.0f, 20, 1, seen);
    CHECK(x[0] == 1.0f && x[1] == -2.0f && x[2] == 0.5f && x[3] == 3.0f);
    CHECK(seen[0] == 0 && seen[1] == 0); /* scratch restored */
    /* context size 1: only the last token (0) */
    float y[4] = {2, -1, 0.5f, 3};
    ref_distinct(y, 4, hist, 3, 2.0f, 1, 1, seen);
    CHECK(y[0] == 1.0f && y[1] == -1.0f);
    /* presence: once per distinct token */
    float z[4] = {2, -1, 0.5f, 3};
    int32_t h2[3] = {0, 0, 1};
    ref_distinct(z, 4, h2, 3, 0.5f, 20, 0, seen);
    CHECK(z[0] == 1.5f && z[1] == -1.5f && z[2] == 0.5f && z[3] == 3.0f);
    /* frequency: once per occurrence */
    float w[4] = {2, -1, 0.5f, 3};
    ref_frequency(w, 4, h2, 3, 0.5f, 20);
    CHECK(w[0] == 1.0f && w[1] == -1.5f && w[2] == 0.5f && w[3] == 3.0f);
    /* frequency over the last 2 tokens only: {0, 1} */
    float v[4] = {2, -1, 0.5f, 3};
    ref_frequency(v, 4, h2, 3, 0.5f, 2);
    CHECK(v[0] == 1.5f && v[1] == -1.5f);
    /* logit bias */
    lm_logit_bias b[2] = {{3, -10.0f}, {1, 0.25f}};
    float u[4] = {2, -1, 0.5f, 3};
    ref_logit_bias(u, 4, b, 2);
    CHECK(u[3] == -7.0f && u[1] == -0.75f && u[0] == 2.0f);
    /* log-softmax: [0, ln 3] -> [ln 1/4, ln 3/4] */
    float s[2] = {0, (float)log(3.0)};
    lm_log_softmax(s, 2);
    CHECKF(NEAR(s[0], log(0.25)) && NEAR(s[1], log(0.75)), "%g %g", s[0], s[1]);
}

static void test_filters(void) {
    const double P[4] = {0.5, 0.25, 0.15, 0.1};
    float lp[4];
    int32_t idx[4];
    /* top-p 0.7: ascending cumsum 0.1, 0.25, 0.5, 1.0; keep > 0.3 -> {0.5, 0.25} */
    set_probs(lp, P, 4);
    lm_samp_top_p(lp, 4, 0.7f, idx);
    CHECKF(kept(lp, 4) == 0x3, "top-p kept %#x", kept(lp, 4));
    CHECK(NEAR(lp[0], log(0.5)) && NEAR(lp[1], log(0.25))); /* kept values untouched */
    /* top-p 0.95: keep > 0.05 -> all four */
    set_probs(lp, P, 4);
    lm_samp_top_p(lp, 4, 0.95f, idx);
    CHECK(kept(lp, 4) == 0xF);
    /* top-p 0.4: keep > 0.6 -> only the 0.5 token (cum 1.0) */
    set_probs(lp, P, 4);
    lm_samp_top_p(lp, 4, 0.4f, idx);
    CHECK(kept(lp, 4) == 0x1);
    /* min-p 0.4: threshold 0.5 * 0.4 = 0.2 -> {0.5, 0.25} */
    set_probs(lp, P, 4);
    lm_samp_min_p(lp, 4, 0.4f, 1, idx);
    CHECK(kept(lp, 4) == 0x3);
    /* ... with min_tokens_to_keep 3 -> also 0.15 */
    set_probs(lp, P, 4);
    lm_samp_min_p(lp, 4, 0.4f, 3, idx);
    CHECK(kept(lp, 4) == 0x7);
    /* min-p 0.1: threshold 0.05 -> all */
    set_probs(lp, P, 4);
    lm_samp_min_p(lp, 4, 0.1f, 1, idx);
    CHECK(kept(lp, 4) == 0xF);
    /* top-k 2 -> {0, 1}; top-k 3 on a shuffled order */
    set_probs(lp, P, 4);
    lm_samp_top_k(lp, 4, 2, idx);
    CHECK(kept(lp, 4) == 0x3);
    const double Q[4] = {0.1, 0.5, 0.15, 0.25};
    set_probs(lp, Q, 4);
    lm_samp_top_k(lp, 4, 3, idx);
    CHECK(kept(lp, 4) == 0xE);
    /* ties: the lower id wins */
    float t[3] = {1, 1, 0};
    int32_t idx3[3];
    lm_samp_top_k(t, 3, 1, idx3);
    CHECK(kept(t, 3) == 0x1);
    /* XTC, threshold 0.2: tokens above are {0.5, 0.25}; all but the least likely go -> drop 0 */
    set_probs(lp, P, 4);
    lm_samp_xtc(lp, 4, 1.0f, 0.2f, NULL, 0, 0.3);
    CHECK(kept(lp, 4) == 0xE);
    /* ... threshold 0.1: above are {0.5, 0.25, 0.15}; drop 0.5 and 0.25 */
    set_probs(lp, P, 4);
    lm_samp_xtc(lp, 4, 1.0f, 0.12f, NULL, 0, 0.3);
    CHECK(kept(lp, 4) == 0xC);
    /* ... special ids are exempt */
    int32_t special[1] = {0};
    set_probs(lp, P, 4);
    lm_samp_xtc(lp, 4, 1.0f, 0.12f, special, 1, 0.3);
    CHECK(kept(lp, 4) == 0xD);
    /* ... only one token above the threshold: nothing removed */
    set_probs(lp, P, 4);
    lm_samp_xtc(lp, 4, 1.0f, 0.3f, NULL, 0, 0.3);
    CHECK(kept(lp, 4) == 0xF);
    /* ... the draw exceeds the probability: not applied */
    set_probs(lp, P, 4);
    lm_samp_xtc(lp, 4, 0.5f, 0.2f, NULL, 0, 0.6);
    CHECK(kept(lp, 4) == 0xF);
    /* XTC renormalises over what earlier filters kept: top-p left {0.5, 0.25} = {2/3, 1/3} */
    set_probs(lp, P, 4);
    lm_samp_top_p(lp, 4, 0.7f, idx);
    lm_samp_xtc(lp, 4, 1.0f, 0.3f, NULL, 0, 0.0);
    CHECK(kept(lp, 4) == 0x2);
}

static void test_categorical(void) {
    const double P[3] = {0.5, 0.25, 0.25};
    float lp[3];
    set_probs(lp, P, 3);
    /* temp 1: CDF 0.5, 0.75, 1.0 */
    CHECK(lm_samp_categorical(lp, 3, 1.0f, 0.49) == 0);
    CHECK(lm_samp_categorical(lp, 3, 1.0f, 0.51) == 1);
    CHECK(lm_samp_categorical(lp, 3, 1.0f, 0.74) == 1);
    CHECK(lm_samp_categorical(lp, 3, 1.0f, 0.76) == 2);
    /* temp 2: p ~ sqrt(p) = .7071, .5, .5 -> .4142, .2929, .2929; CDF .4142, .7071 */
    CHECK(lm_samp_categorical(lp, 3, 2.0f, 0.40) == 0);
    CHECK(lm_samp_categorical(lp, 3, 2.0f, 0.42) == 1);
    CHECK(lm_samp_categorical(lp, 3, 2.0f, 0.70) == 1);
    CHECK(lm_samp_categorical(lp, 3, 2.0f, 0.71) == 2);
    /* masked tokens are never drawn */
    lp[1] = -INFINITY;
    CHECK(lm_samp_categorical(lp, 3, 1.0f, 0.6) == 0); /* CDF 2/3, 1 */
    CHECK(lm_samp_categorical(lp, 3, 1.0f, 0.7) == 2);
    CHECK(lm_samp_argmax(lp, 3) == 0);
}

static void test_rng(void) {
    /* xoshiro256** from the state {1, 2, 3, 4}: rotl(2 * 5, 7) * 9 = 11520, then
     * s1 becomes 2 ^ 2 = 0, so the second output is 0 (hand-computed). */
    lm_rng r = {{1, 2, 3, 4}};
    CHECK(lm_rng_next(&r) == 11520);
    CHECK(lm_rng_next(&r) == 0);
    /* splitmix64's first output for seed 0 */
    uint64_t x = 0;
    CHECK(lm_splitmix64(&x) == 0xe220a8397b1dcdafULL);
    lm_rng a, b;
    lm_rng_seed(&a, 42);
    lm_rng_seed(&b, 42);
    int same = 1;
    for (int i = 0; i < 100; i++) {
        double u = lm_rng_uniform(&a);
        same &= u == lm_rng_uniform(&b) && u >= 0 && u < 1;
    }
    CHECK(same);
}

/* The whole step: frequencies of seeded draws follow the processed distribution. */
static void test_sampler_step(void) {
    const int V = 3, N = 20000;
    float logits[3] = {(float)log(0.5), (float)log(0.3), (float)log(0.2)};
    lm_gen_params p = lm_gen_default_params();
    p.temp = 1.0f;
    p.seed = 7;
    lm_sampler s;
    CHECK(lm_sampler_init(&s, V, &p, NULL, 0) == LM_OK);
    int count[3] = {0};
    float lp;
    for (int i = 0; i < N; i++)
        count[lm_sampler_sample(&s, logits, NULL, 0, &lp)]++;
    CHECKF(fabs(count[0] / (double)N - 0.5) < 0.015 && fabs(count[1] / (double)N - 0.3) < 0.015,
           "%d %d %d", count[0], count[1], count[2]);
    lm_sampler_free(&s);
    /* top-k 2: the 0.2 token is never drawn; the rest renormalise to 0.625 / 0.375 */
    p.top_k = 2;
    CHECK(lm_sampler_init(&s, V, &p, NULL, 0) == LM_OK);
    count[0] = count[1] = count[2] = 0;
    for (int i = 0; i < N; i++)
        count[lm_sampler_sample(&s, logits, NULL, 0, &lp)]++;
    CHECKF(count[2] == 0 && fabs(count[0] / (double)N - 0.625) < 0.015, "%d %d %d", count[0], count[1], count[2]);
    lm_sampler_free(&s);
    /* seeded: identical sequences; another seed differs */
    int32_t seq[3][64];
    int64_t seeds[3] = {11, 11, 12};
    p.top_k = 0;
    for (int k = 0; k < 3; k++) {
        p.seed = seeds[k];
        CHECK(lm_sampler_init(&s, V, &p, NULL, 0) == LM_OK);
        for (int i = 0; i < 64; i++)
            seq[k][i] = lm_sampler_sample(&s, logits, NULL, 0, &lp);
        lm_sampler_free(&s);
    }
    CHECK(memcmp(seq[0], seq[1], sizeof seq[0]) == 0);
    CHECK(memcmp(seq[0], seq[2], sizeof seq[0]) != 0);
    /* greedy with processors: the repetition penalty moves the argmax; logprob reported from
     * the processed logits: [1.5, 2.0/2=1.0, 0] -> log_softmax at 0 */
    lm_gen_params g = lm_gen_default_params();
    g.repetition_penalty = 2.0f;
    CHECK(lm_sampler_init(&s, V, &g, NULL, 0) == LM_OK);
    float lg[3] = {1.5f, 2.0f, 0.0f};
    int32_t hist[1] = {1};
    int32_t tok = lm_sampler_sample(&s, lg, hist, 1, &lp);
    double lse = log(exp(1.5) + exp(1.0) + exp(0.0));
    CHECK(tok == 0);
    CHECKF(NEAR(lp, 1.5 - lse), "%g vs %g", lp, 1.5 - lse);
    lm_sampler_free(&s);
}

static void test_validation(void) {
    lm_gen_params p = lm_gen_default_params();
    p.top_p = 1.5f;
    CHECK(lm_sampler_validate(&p, 10) == LM_ERR_INVALID_ARG && strstr(lm_last_error(), "top_p") &&
          strstr(lm_last_error(), "[0, 1]"));
    p = lm_gen_default_params();
    p.top_k = 10;
    CHECK(lm_sampler_validate(&p, 10) == LM_ERR_INVALID_ARG && strstr(lm_last_error(), "top_k"));
    p = lm_gen_default_params();
    p.xtc_threshold = 0.6f;
    CHECK(lm_sampler_validate(&p, 10) == LM_ERR_INVALID_ARG && strstr(lm_last_error(), "xtc_threshold"));
    p = lm_gen_default_params();
    p.min_tokens_to_keep = 0;
    CHECK(lm_sampler_validate(&p, 10) == LM_ERR_INVALID_ARG);
    p = lm_gen_default_params();
    p.temp = -1;
    CHECK(lm_sampler_validate(&p, 10) == LM_ERR_INVALID_ARG && strstr(lm_last_error(), "temp"));
    lm_logit_bias b = {10, 1.0f};
    p = lm_gen_default_params();
    p.logit_bias = &b;
    p.n_logit_bias = 1;
    CHECK(lm_sampler_validate(&p, 10) == LM_ERR_INVALID_ARG && strstr(lm_last_error(), "logit_bias[0]"));
    p = lm_gen_default_params();
    CHECK(lm_sampler_validate(&p, 10) == LM_OK);
}

/* --- the fast filters against plain references (full sort) on random logits with ties --- */

static int ref_cmp_desc(const void *a, const void *b) {
    const float *x = a, *y = b; /* pairs (value, id) stored as floats */
    if (x[0] != y[0])
        return x[0] > y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

static void test_random_reference(void) {
    srand(5);
    int bad_k = 0, bad_p = 0, bad_m = 0;
    for (int trial = 0; trial < 300; trial++) {
        int V = 2 + rand() % 300;
        float *lp = malloc((size_t)V * sizeof *lp), *x = malloc((size_t)V * sizeof *x);
        float *pairs = malloc((size_t)V * 2 * sizeof *pairs);
        int32_t *idx = malloc((size_t)V * sizeof *idx);
        for (int i = 0; i < V; i++)
            lp[i] = (float)(rand() % 40) * 0.25f; /* many ties */
        lm_log_softmax(lp, V);
        for (int i = 0; i < V; i++)
            pairs[2 * i] = lp[i], pairs[2 * i + 1] = (float)i;
        qsort(pairs, (size_t)V, 2 * sizeof *pairs, ref_cmp_desc); /* best first, ties by id */
        /* top-k: exactly the first k of the full sort */
        int k = 1 + rand() % (V - 1);
        memcpy(x, lp, (size_t)V * sizeof *x);
        lm_samp_top_k(x, V, k, idx);
        for (int r = 0; r < V; r++)
            bad_k += (x[(int)pairs[2 * r + 1]] > -INFINITY) != (r < k);
        /* min-p with min_tokens_to_keep: threshold, plus the first m of the full sort */
        int m = 1 + rand() % V;
        float mp = (float)(rand() % 100) / 100.0f + 0.005f;
        memcpy(x, lp, (size_t)V * sizeof *x);
        lm_samp_min_p(x, V, mp, m, idx);
        float thr = pairs[0] + (float)log((double)mp);
        for (int r = 0; r < V; r++) {
            int id = (int)pairs[2 * r + 1];
            bad_m += (x[id] > -INFINITY) != (r < m || !(lp[id] < thr));
        }
        /* top-p: mlx-lm's ascending cumsum over the full sort (borderline sums excepted) */
        float tp = (float)(rand() % 100) / 100.0f + 0.005f;
        memcpy(x, lp, (size_t)V * sizeof *x);
        lm_samp_top_p(x, V, tp, idx);
        float cum = 0;
        for (int r = V - 1; r >= 0; r--) {
            int id = (int)pairs[2 * r + 1];
            cum += expf(lp[id]);
            int keep = cum > 1.0f - tp;
            if (fabsf(cum - (1.0f - tp)) > 1e-5f)
                bad_p += (x[id] > -INFINITY) != keep;
        }
        free(lp);
        free(x);
        free(pairs);
        free(idx);
    }
    CHECKF(bad_k == 0 && bad_m == 0 && bad_p == 0, "top-k %d, min-p %d, top-p %d mismatches", bad_k, bad_m, bad_p);
}

/* --- greedy pick: lm_argmax_log_softmax and the CPU argmax op against lm_sampler_sample --------- */

/* Same token; the same logprob bit for bit (NaN matches NaN). */
static int same_pick(int32_t ta, float la, int32_t tb, float lb) {
    return ta == tb && (la == lb ? signbit(la) == signbit(lb) : isnan(la) && isnan(lb));
}

/* The three pickers on one row; returns 1 when they agree. */
static int check_pick(lm_sampler *s, lm_backend *cpu, const float *x, int V, const char *what) {
    float lp_s, lp_f;
    lm_argmax_out out;
    int32_t ts = lm_sampler_sample(s, x, NULL, 0, &lp_s);
    int32_t tf = lm_argmax_log_softmax(x, V, &lp_f);
    cpu->ops->argmax(cpu, x, V, &out); /* CPU backend memory is host memory */
    int ok = same_pick(ts, lp_s, tf, lp_f) && same_pick(ts, lp_s, out.token, out.logprob);
    CHECKF(ok, "%s (V=%d): sampler %d %g, pick %d %g, cpu op %d %g", what, V, ts, lp_s, tf, lp_f, out.token,
           out.logprob);
    return ok;
}

static void test_greedy_pick(void) {
    lm_backend *cpu;
    CHECK(lm_backend_cpu_new(1, &cpu) == LM_OK && cpu->ops->argmax);
    const int MAXV = 5000;
    float *x = malloc((size_t)MAXV * sizeof *x);
    lm_gen_params p = lm_gen_default_params(); /* temp 0 */
    lm_sampler s;
    /* random rows: ties from a coarse grid, -inf entries, the maximum anywhere */
    srand(11);
    int bad = 0;
    for (int trial = 0; trial < 200; trial++) {
        int V = 1 + rand() % MAXV;
        for (int i = 0; i < V; i++)
            x[i] = rand() % 8 == 0 ? -INFINITY : (float)(rand() % 64) * 0.5f - 20.0f;
        if (trial % 4 == 1)
            x[V - 1] = 20.0f; /* the maximum last */
        if (trial % 4 == 2)
            x[0] = 20.0f; /* ... first */
        CHECK(lm_sampler_init(&s, V, &p, NULL, 0) == LM_OK);
        bad += !check_pick(&s, cpu, x, V, "random");
        lm_sampler_free(&s);
    }
    CHECK(bad == 0);
    int V = 1000;
    CHECK(lm_sampler_init(&s, V, &p, NULL, 0) == LM_OK);
    /* a near-tie merged by rounding: x - lse rounds 1 and the next float to the same value, so the
     * first wins although the raw maximum is the second */
    for (int i = 0; i < V; i++)
        x[i] = 0.99f;
    x[3] = 1.0f;
    x[7] = nextafterf(1.0f, 2.0f);
    int32_t tok = -1;
    float lp;
    check_pick(&s, cpu, x, V, "rounding tie");
    tok = lm_argmax_log_softmax(x, V, &lp);
    CHECKF(tok == 3, "rounding tie: token %d, expected 3 (the raw maximum is 7)", tok);
    /* NaN anywhere makes every logprob NaN: token 0 */
    for (int i = 0; i < V; i++)
        x[i] = (float)(i % 37);
    x[500] = NAN;
    check_pick(&s, cpu, x, V, "NaN inside");
    CHECK(lm_argmax_log_softmax(x, V, &lp) == 0 && isnan(lp));
    x[500] = 1.0f;
    x[0] = NAN;
    check_pick(&s, cpu, x, V, "NaN first");
    x[0] = 1.0f;
    x[900] = INFINITY; /* +inf: inf - inf in the sum */
    check_pick(&s, cpu, x, V, "+inf");
    CHECK(lm_argmax_log_softmax(x, V, &lp) == 0 && isnan(lp));
    /* every entry -inf (with or without NaN): left as is, entry 0 */
    for (int i = 0; i < V; i++)
        x[i] = -INFINITY;
    check_pick(&s, cpu, x, V, "all -inf");
    CHECK(lm_argmax_log_softmax(x, V, &lp) == 0 && lp == -INFINITY);
    x[10] = NAN;
    check_pick(&s, cpu, x, V, "-inf and NaN");
    /* one finite entry among -inf: logprob 0 */
    x[10] = -INFINITY;
    x[999] = -3.0f;
    check_pick(&s, cpu, x, V, "one finite");
    CHECK(lm_argmax_log_softmax(x, V, &lp) == 999 && lp == 0.0f);
    lm_sampler_free(&s);
    /* V = 1 */
    CHECK(lm_sampler_init(&s, 1, &p, NULL, 0) == LM_OK);
    x[0] = 4.0f;
    check_pick(&s, cpu, x, 1, "V=1");
    lm_sampler_free(&s);
    free(x);
    cpu->ops->destroy(cpu);
}

/* temp 0 without a processor (lm_sampler_has_processors) on one parameter set; where that holds,
 * the sampler must pick what lm_argmax_log_softmax picks from the raw logits, whatever the
 * history. */
static void greedy_case(const char *name, int want, lm_gen_params p) {
    const int V = 300;
    float x[300];
    int32_t hist[40];
    lm_sampler s;
    p.seed = 9;
    CHECK(lm_sampler_init(&s, V, &p, NULL, 0) == LM_OK);
    CHECKF((p.temp == 0 && !lm_sampler_has_processors(&s)) == want, "%s: greedy %d", name, !want);
    int bad = 0;
    for (int trial = 0; want && trial < 50; trial++) {
        for (int i = 0; i < V; i++)
            x[i] = (float)(rand() % 40) * 0.25f;
        for (int i = 0; i < 40; i++)
            hist[i] = rand() % V;
        float lp, lq;
        int32_t t = lm_sampler_sample(&s, x, hist, 40, &lp), u = lm_argmax_log_softmax(x, V, &lq);
        bad += !same_pick(t, lp, u, lq);
    }
    CHECKF(bad == 0, "%s: %d rows differ from the greedy pick", name, bad);
    lm_sampler_free(&s);
}

/* temp 0 skips the sampler chain (top-k/p, min-p, XTC), so only the processors matter. */
static void test_is_greedy(void) {
    srand(3);
    lm_gen_params d = lm_gen_default_params(), p;
    greedy_case("default", 1, d);
    p = d, p.temp = 0.7f;
    greedy_case("temp 0.7", 0, p);
    p = d, p.repetition_penalty = 1.3f;
    greedy_case("repetition 1.3", 0, p);
    p = d, p.repetition_penalty = 1.0f;
    greedy_case("repetition 1 (x / 1 == x)", 1, p);
    p = d, p.presence_penalty = 0.5f;
    greedy_case("presence", 0, p);
    p = d, p.frequency_penalty = -0.5f;
    greedy_case("frequency", 0, p);
    lm_logit_bias zero = {5, 0.0f};
    p = d, p.logit_bias = &zero, p.n_logit_bias = 1;
    greedy_case("logit bias 0", 0, p);
    p = d, p.top_k = 3, p.top_p = 0.1f, p.min_p = 0.9f, p.xtc_probability = 1.0f, p.xtc_threshold = 0.01f;
    greedy_case("top-k, top-p, min-p, XTC at temp 0", 1, p);
}

/* lm_sampler_logit_ops + lm_logit_ops_apply against the reference processors, bit for bit: random
 * logits (negative, -0.0), histories with repeats and ids outside the vocabulary, bias lists with
 * repeated tokens, every penalty on and off with their own windows. */
static void test_logit_ops(void) {
    srand(5);
    static const float REP[] = {0, 1, 1.3f, 0.7f}, PRES[] = {0, 0.5f, -0.25f}, FREQ[] = {0, 0.1f, -0.3f};
    int bad = 0, unsorted = 0, trials = 400, n_with = 0;
    for (int trial = 0; trial < trials; trial++) {
        int V = trial % 2 ? 300 : 37, n_hist = rand() % 120;
        float x[300], ref[300], got[300];
        int32_t hist[120];
        lm_logit_bias bias[6];
        for (int i = 0; i < V; i++)
            x[i] = rand() % 9 == 0 ? -0.0f : (float)(rand() % 2001 - 1000) / 97.0f;
        for (int i = 0; i < n_hist; i++)
            hist[i] = rand() % 15 == 0 ? (rand() % 2 ? -1 : V + 3) : rand() % (V < 60 ? V : 60);
        lm_gen_params p = lm_gen_default_params();
        p.n_logit_bias = rand() % 7;
        for (int i = 0; i < p.n_logit_bias; i++)
            bias[i] = (lm_logit_bias){rand() % 20, (float)(rand() % 200 - 100) / 7.0f};
        p.logit_bias = bias;
        p.repetition_penalty = REP[rand() % 4], p.repetition_context_size = 1 + rand() % 60;
        p.presence_penalty = PRES[rand() % 3], p.presence_context_size = 1 + rand() % 60;
        p.frequency_penalty = FREQ[rand() % 3], p.frequency_context_size = 1 + rand() % 60;
        lm_sampler s;
        if (lm_sampler_init(&s, V, &p, NULL, 0) != LM_OK) {
            CHECKF(0, "trial %d: %s", trial, lm_last_error());
            continue;
        }
        /* the reference processors, in mlx-lm's order */
        memcpy(ref, x, (size_t)V * sizeof *x);
        if (p.n_logit_bias)
            ref_logit_bias(ref, V, p.logit_bias, p.n_logit_bias);
        if (p.repetition_penalty != 0)
            ref_distinct(ref, V, hist, n_hist, p.repetition_penalty, p.repetition_context_size, 1, s.seen);
        if (p.presence_penalty != 0)
            ref_distinct(ref, V, hist, n_hist, p.presence_penalty, p.presence_context_size, 0, s.seen);
        if (p.frequency_penalty != 0)
            ref_frequency(ref, V, hist, n_hist, p.frequency_penalty, p.frequency_context_size);
        const lm_logit_op *ops = NULL;
        int n = lm_sampler_logit_ops(&s, hist, n_hist, &ops);
        CHECKF(n >= 0, "trial %d: %s", trial, lm_last_error());
        n_with += n > 0;
        for (int i = 1; i < n; i++)
            unsorted += ops[i].token < ops[i - 1].token;
        for (int i = 0; i < n; i++)
            unsorted += ops[i].token < 0 || ops[i].token >= V;
        memcpy(got, x, (size_t)V * sizeof *x);
        lm_logit_ops_apply(got, ops, n);
        bad += memcmp(got, ref, (size_t)V * sizeof *x) != 0;
        /* no processor: no change at all (repetition 1 is skipped: x / 1 is x) */
        CHECKF(lm_sampler_has_processors(&s) || n == 0, "trial %d: %d changes without a processor", trial, n);
        lm_sampler_free(&s);
    }
    CHECKF(bad == 0 && unsorted == 0, "logit ops: %d of %d rows differ from the reference, %d ops out of order", bad,
           trials, unsorted);
    CHECKF(n_with > trials / 2, "logit ops: only %d trials had changes", n_with);
}

int main(void) {
    test_logit_ops();
    test_random_reference();
    test_greedy_pick();
    test_is_greedy();
    test_processors();
    test_filters();
    test_categorical();
    test_rng();
    test_sampler_step();
    test_validation();
    return test_done("sampler");
}
