/* Perplexity over non-overlapping windows (models/default/perplexity.json's protocol). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "generate/llm.h"
#include "models/model.h"

lm_perplexity_params lm_perplexity_default_params(void) {
    lm_perplexity_params p = {0};
    p.size = sizeof p;
    p.context = 512;
    return p;
}

/* NLL of ids[1..n) given their prefixes; logits [n, V]. */
static double window_nll(const float *logits, const int32_t *ids, int n, int V) {
    double nll = 0;
    for (int t = 0; t + 1 < n; t++) {
        const float *row = logits + (size_t)t * V;
        float mx = row[0];
        for (int i = 1; i < V; i++)
            if (row[i] > mx)
                mx = row[i];
        double sum = 0;
        for (int i = 0; i < V; i++)
            sum += exp((double)row[i] - mx);
        nll += mx + log(sum) - row[ids[t + 1]];
    }
    return nll;
}

lm_status lm_llm_perplexity(lm_llm *llm, const char *text, size_t len, const lm_perplexity_params *params,
                            lm_perplexity_result *out) {
    if (!llm || (!text && len) || !out)
        return lm_err(LM_ERR_INVALID_ARG, "lm_llm_perplexity: NULL argument");
    memset(out, 0, sizeof *out);
    lm_perplexity_params p = lm_perplexity_default_params();
    if (params)
        memcpy(&p, params, params->size < sizeof p ? params->size : sizeof p);
    if (p.context < 2 || p.context > llm->ctx_len)
        return lm_err(LM_ERR_INVALID_ARG, "context must be in [2, %d] (the model's context; got %d)", llm->ctx_len,
                      p.context);
    if (p.max_windows < 0)
        return lm_err(LM_ERR_INVALID_ARG, "max_windows must be >= 0 (0: all; got %d)", p.max_windows);
    int32_t bos = lm_tokenizer_bos(llm->tok);
    if (bos < 0)
        bos = llm->model->cfg.bos_id;
    if (bos < 0)
        return lm_err(LM_ERR_MISSING, "perplexity: the tokenizer has no BOS token to start the sequence");

    int32_t *body = NULL;
    int n_body = 0;
    LM_TRY(lm_llm_encode_alloc(llm, text ? text : "", len, 0, &body, &n_body));
    int n = n_body + 1;
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    lm_ctx *ctx = NULL;
    lm_ctx_params cp = lm_ctx_default_params();
    cp.max_tokens = p.context;
    float *logits = malloc((size_t)p.context * llm->vocab * sizeof *logits);
    lm_status st = ids && logits ? LM_OK : lm_err(LM_ERR_NOMEM, "perplexity: out of memory");
    if (st == LM_OK)
        st = lm_ctx_new(llm->model, &cp, &ctx);
    if (st == LM_OK) {
        ids[0] = bos;
        if (n_body)
            memcpy(ids + 1, body, (size_t)n_body * sizeof *ids);
        int total_windows = 0;
        for (int s0 = 0; s0 < n; s0 += p.context)
            total_windows += n - s0 >= 2;
        if (p.max_windows && total_windows > p.max_windows)
            total_windows = p.max_windows;
        double nll = 0;
        int64_t pred = 0;
        int w = 0;
        for (int s0 = 0; st == LM_OK && w < total_windows; s0 += p.context, w++) {
            int len_w = n - s0 < p.context ? n - s0 : p.context;
            lm_ctx_reset(ctx);
            st = lm_ctx_eval(ctx, ids + s0, len_w, logits, 1);
            if (st != LM_OK)
                break;
            nll += window_nll(logits, ids + s0, len_w, llm->vocab);
            pred += len_w - 1;
            if (p.on_progress && p.on_progress(p.user, w + 1, total_windows)) {
                st = lm_err(LM_ERR_CANCELLED, "perplexity: cancelled after %d windows", w + 1);
                break;
            }
        }
        if (st == LM_OK && pred == 0)
            st = lm_err(LM_ERR_INVALID_ARG, "perplexity: the text has no token to predict");
        if (st == LM_OK) {
            out->total_nll = nll;
            out->predicted_tokens = pred;
            out->total_tokens = n;
            out->windows = w;
            out->mean_nll = nll / (double)pred;
            out->perplexity = exp(out->mean_nll);
        }
    }
    lm_ctx_free(ctx);
    free(logits);
    free(ids);
    free(body);
    return st;
}
