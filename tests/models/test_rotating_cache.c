/* Sliding-window layers keep only their window: generate 3x the window on Gemma 3 (window 8 on
 * 3 of 4 layers) and GPT-OSS (sinks, window 8 on alternate layers) and compare every step with a
 * full cache under the window mask. Memory must stay bounded by the window. */
#include "fixture_runner.h"
#include "models/model.h"

static void compare(const char *name) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/%s", t_fixtures(), name);
    lm_model *m = NULL;
    lm_ctx *rot = NULL, *full = NULL;
    lm_ctx_params pf = lm_ctx_default_params();
    pf.sliding_full_cache = 1;
    if (lm_model_load(dir, NULL, &m) != LM_OK || lm_ctx_new(m, NULL, &rot) != LM_OK ||
        lm_ctx_new(m, &pf, &full) != LM_OK) {
        CHECKF(0, "%s: %s", name, lm_last_error());
        goto done;
    }
    int W = m->cfg.sliding_window, V = m->cfg.vocab, steps = 3 * W + 4, chunk = 5;
    float *a = malloc((size_t)chunk * V * sizeof *a), *b = malloc((size_t)chunk * V * sizeof *b);
    int32_t ids[5] = {5, 17, 99, 3, 250};
    double worst = 0;
    int max_rows = 0, full_rows = 0;
    /* prefill, single-token decode past 3 windows, then a multi-token chunk, then more decode */
    for (int phase = 0; phase < 4; phase++) {
        int n = (phase == 0 || phase == 2) ? chunk : steps;
        int per_call = (phase == 0 || phase == 2) ? chunk : 1;
        for (int i = 0; i < n; i += per_call) {
            int32_t *feed = ids;
            if (per_call == 1) {
                ids[0] = argmax_f(a + (size_t)0, V);
                feed = ids;
            }
            CHECK(lm_ctx_eval(rot, feed, per_call, a, 1) == LM_OK);
            CHECK(lm_ctx_eval(full, feed, per_call, b, 1) == LM_OK);
            double d = max_abs_diff(a, b, (size_t)per_call * V);
            worst = d > worst ? d : worst;
            if (per_call > 1)
                memmove(a, a + (size_t)(per_call - 1) * V, (size_t)V * sizeof *a);
            for (int l = 0; l < m->cfg.n_layers; l++) {
                if (m->layers[l].sliding) {
                    max_rows = rot->kv.layers[l].cap > max_rows ? rot->kv.layers[l].cap : max_rows;
                    CHECK(rot->kv.layers[l].n <= W - 1 + chunk);
                }
                full_rows = full->kv.layers[l].n > full_rows ? full->kv.layers[l].n : full_rows;
            }
        }
    }
    CHECKF(worst <= 1e-5, "%s: rotating vs full cache logits differ by %g", name, worst);
    CHECKF(max_rows <= W - 1 + chunk, "%s: a sliding layer allocated %d rows (window %d)", name, max_rows, W);
    CHECK(full_rows == lm_ctx_n_past(full) && full_rows > 3 * W);
    printf("  %-12s window %d: %d tokens, sliding layers hold <= %d rows (full cache %d), max |diff| %.2e\n", name,
           W, lm_ctx_n_past(rot), max_rows, full_rows, worst);
    free(a);
    free(b);
done:
    lm_ctx_free(rot);
    lm_ctx_free(full);
    lm_model_free(m);
}

int main(void) {
    compare("gemma3_text");
    compare("gpt_oss");
    return test_done("rotating_cache");
}
