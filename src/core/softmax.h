/* Log-softmax arithmetic shared by the host sampler (generate/sampler.c) and the greedy pick of
 * the CPU backend and the decoder's host fallback, so that all of them compute the same bits:
 * float32 values, the sum of exponentials in double. */
#ifndef LM_CORE_SOFTMAX_H
#define LM_CORE_SOFTMAX_H
#include <stdint.h>

/* The maximum of x[0..V) (NaN skipped) and sum(exp(x - max)) in double, summed in index order.
 * Returns 0, leaving *mx and *sum alone, when every entry is -inf or NaN (nothing to normalise). */
int lm_max_expsum(const float *x, int V, float *mx, double *sum);

/* The token lm_samp_argmax picks from lm_log_softmax(x) (its first maximum; 0 when a logit is
 * NaN or +inf, which makes every value NaN, or when all are -inf) and that token's log-softmax
 * value in *logprob, without writing x. V >= 1. */
int32_t lm_argmax_log_softmax(const float *x, int V, float *logprob);

#endif
