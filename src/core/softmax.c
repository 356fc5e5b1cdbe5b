/* Log-softmax pieces shared by the sampler and the greedy pick (core/softmax.h). */
#include <math.h>

#include "core/softmax.h"

int lm_max_expsum(const float *x, int V, float *mx_out, double *sum_out) {
    float mx = -INFINITY;
    for (int i = 0; i < V; i++)
        if (x[i] > mx)
            mx = x[i];
    if (mx == -INFINITY)
        return 0;
    double sum = 0;
    for (int i = 0; i < V; i++)
        sum += exp((double)x[i] - mx);
    *mx_out = mx;
    *sum_out = sum;
    return 1;
}

/* lm_log_softmax subtracts lse = (float)(max + log(sum)) from every entry (nothing when there is
 * nothing to normalise); lm_samp_argmax keeps the first entry no later one exceeds. */
int32_t lm_argmax_log_softmax(const float *x, int V, float *logprob) {
    float mx, lse = 0.0f; /* x - 0.0f == x, bit for bit: the entries left as they are */
    double sum;
    if (lm_max_expsum(x, V, &mx, &sum))
        lse = (float)(mx + log(sum));
    int32_t b = 0;
    float bv = x[0] - lse;
    for (int i = 1; i < V; i++) {
        float v = x[i] - lse;
        if (v > bv) {
            b = i;
            bv = v;
        }
    }
    *logprob = bv;
    return b;
}
