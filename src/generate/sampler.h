/* Logits processors and samplers with mlx-lm's semantics (sample_utils.py).
 *
 * Order per token (mlx-lm generate_step): processors on the raw logits (logit bias,
 * repetition, presence, frequency penalty), then logprobs = log_softmax(logits), then the
 * sampler chain on the logprobs (top-p, min-p, XTC, top-k; each masks tokens to -inf), then
 * a categorical draw from softmax(logprobs / temp), or argmax when temp == 0. */
#ifndef LM_GENERATE_SAMPLER_H
#define LM_GENERATE_SAMPLER_H
#include <stdint.h>

#include "backend/backend.h"
#include "core/status.h"
#include "generate/rng.h"

/* x := x - logsumexp(x) (float32 values, the sum in double). */
void lm_log_softmax(float *x, int V);

/* --- sampler chain on logprobs [V] in place (masked tokens become -inf) --------------------- */
/* idx: V ints of scratch. */

/* Keep tokens whose cumulative probability, summed from the least likely (ascending sort),
 * exceeds 1 - top_p (mlx-lm apply_top_p, float32 cumsum). */
void lm_samp_top_p(float *lp, int V, float top_p, int32_t *idx);
/* Drop tokens with lp < max + log(min_p), but keep the min_keep most likely. */
void lm_samp_min_p(float *lp, int V, float min_p, int min_keep, int32_t *idx);
/* XTC, applied when u <= probability (mlx-lm: skipped when uniform > probability): with
 * p = softmax(lp), remove every token with p above the smallest p that exceeds `threshold`
 * (so all "top choices" but the least likely of them go), except the special ids. */
void lm_samp_xtc(float *lp, int V, float probability, float threshold, const int32_t *special, int n_special,
                 double u);
/* Keep the k largest (ties: the lower id first). */
void lm_samp_top_k(float *lp, int V, int k, int32_t *idx);

int32_t lm_samp_argmax(const float *x, int V); /* first maximum */
/* Draw from softmax(lp / temp) by inverting the CDF (ids in order) at u in [0, 1). */
int32_t lm_samp_categorical(const float *lp, int V, float temp, double u);

/* --- the whole step ------------------------------------------------------------------------ */

typedef struct lm_sampler {
    int V;
    lm_gen_params p;             /* validated copy (pointers borrowed) */
    const int32_t *xtc_special;  /* borrowed */
    int n_xtc_special;
    lm_rng rng;
    float *work;                 /* [V] processed logits -> logprobs */
    int32_t *idx;                /* [V] */
    uint8_t *seen;               /* [V] zeroed */
    int32_t *count;              /* [V] zeroed, allocated by lm_sampler_logit_ops */
    lm_logit_op *ops;            /* [ops_cap] lm_sampler_logit_ops's result */
    void *ops_tmp;               /* [ops_cap] its sort buffer */
    int ops_cap;
} lm_sampler;

/* Check every sampler/processor field of p against its valid range (messages name the field
 * and the range). */
lm_status lm_sampler_validate(const lm_gen_params *p, int V);
lm_status lm_sampler_init(lm_sampler *s, int V, const lm_gen_params *p, const int32_t *xtc_special,
                          int n_xtc_special);
void lm_sampler_free(lm_sampler *s);
/* Process `logits` (not modified) given the history (lm_sampler_logit_ops) and pick a token;
 * *logprob receives its log-probability under the processed logits (before the sampler chain),
 * as mlx-lm reports. Returns -1 when out of memory (the error is set). */
int32_t lm_sampler_sample(lm_sampler *s, const float *logits, const int32_t *hist, int n_hist, float *logprob);

/* 1 when a step with temp > 0 is the sampler chain after the processors (no XTC): fills *a but
 * its draw u, which the caller takes from s->rng as lm_sampler_sample would (one draw per
 * token). The token can then be sampled where the logits are (lm_ctx_eval_pick), after the
 * processors (lm_sampler_logit_ops) when lm_sampler_has_processors. */
int lm_sampler_chain_args(const lm_sampler *s, lm_sample_args *a);

/* 1 when a processor changes a logit (a bias entry, a repetition penalty other than 0 and 1, a
 * presence or frequency penalty). At temp 0 without one, lm_sampler_sample reduces to
 * lm_argmax_log_softmax (core/softmax.h) of the raw logits: the same token and logprob as
 * lm_ctx_eval_greedy. */
int lm_sampler_has_processors(const lm_sampler *s);

/* The processors for the history hist[0 .. n_hist) (oldest first) as per-token changes to the
 * logits (backend/backend.h's lm_logit_op, applied by lm_logit_ops_apply or a backend's
 * edit_logits), in mlx-lm's order: each logit bias entry (added); the repetition penalty on each
 * distinct token among the last repetition_context_size (logit < 0 ? logit * penalty : logit /
 * penalty); the presence penalty subtracted once from each distinct token among the last
 * presence_context_size; the frequency penalty subtracted once per occurrence among the last
 * frequency_context_size. Sorted by token, each token's in the order they apply. Returns how
 * many, in *ops (valid until the next call), or -1 when out of memory (the error is set). */
int lm_sampler_logit_ops(lm_sampler *s, const int32_t *hist, int n_hist, const lm_logit_op **ops);

#endif
