/* RoPE frequency variants against hand-computed values. */
#include <math.h>
#include <string.h>

#include "layers/rope.h"
#include "test_util.h"

static lm_rope_cfg base_cfg(lm_rope_type type, double theta, double factor) {
    lm_rope_cfg c;
    memset(&c, 0, sizeof c);
    c.type = type;
    c.theta = theta;
    c.factor = factor;
    c.partial = 1.0;
    c.attention_factor = -1;
    c.truncate = 1;
    c.beta_fast = 32;
    c.beta_slow = 1;
    return c;
}

/* angle of pair i at position p, recovered from the table */
static double angle(const lm_rope *r, int32_t pos, int seq_len, int i) {
    float cs[2 * LM_ROPE_MAX_HALF];
    lm_rope_table(r, &pos, 1, seq_len, cs);
    int half = r->rot_dim / 2;
    return atan2((double)cs[half + i] / r->attn_factor, (double)cs[i] / r->attn_factor);
}

int main(void) {
    lm_rope r;
    /* default: head_dim 4 -> inv_freq = [1, 1/100] for theta 1e4 */
    lm_rope_cfg c = base_cfg(LM_ROPE_DEFAULT, 10000, 1);
    CHECK(lm_rope_init(&r, &c, 4, 16, "t") == LM_OK);
    CHECK(fabs(r.inv_freq[0] - 1.0) < 1e-7 && fabs(r.inv_freq[1] - 0.01) < 1e-7);
    CHECK(fabs(angle(&r, 3, 4, 1) - 0.03) < 1e-6);

    /* linear: positions divided by the factor */
    c = base_cfg(LM_ROPE_LINEAR, 10000, 8);
    CHECK(lm_rope_init(&r, &c, 4, 16, "t") == LM_OK);
    CHECK(fabs(r.inv_freq[1] - 0.01 / 8) < 1e-9);

    /* dynamic NTK: beyond max_pos 16 at seq_len 32 with factor 2, dim 4:
     * base' = 1e4 * (2*32/16 - 1)^(4/2) = 9e4, so inv_freq[1] = 1/300 */
    c = base_cfg(LM_ROPE_DYNAMIC, 10000, 2);
    CHECK(lm_rope_init(&r, &c, 4, 16, "t") == LM_OK);
    CHECK(fabs(angle(&r, 1, 16, 1) - 0.01) < 1e-6);          /* within max_pos: unchanged */
    CHECK(fabs(angle(&r, 1, 32, 1) - 1.0 / 300) < 1e-6);     /* beyond: rescaled base */

    /* llama3: factor 8, low 1, high 4, original 64, theta 1e4, dim 8:
     * inv = [1, .1, .01, .001]; wavelengths 2pi/inv = [6.28, 62.8, 628, 6283];
     * high_wl = 16, low_wl = 64: pair 0 kept, pairs 2,3 divided by 8,
     * pair 1 (62.8 in [16, 64]) smoothed: s = (64/62.83 - 1)/3 = 0.00621, inv = (1-s)*.1/8 + s*.1 */
    c = base_cfg(LM_ROPE_LLAMA3, 10000, 8);
    c.low_freq_factor = 1;
    c.high_freq_factor = 4;
    c.original_max = 64;
    CHECK(lm_rope_init(&r, &c, 8, 512, "t") == LM_OK);
    double s = (64.0 / (2 * M_PI / 0.1) - 1) / 3;
    CHECK(fabs(r.inv_freq[0] - 1.0) < 1e-7);
    CHECKF(fabs(r.inv_freq[1] - ((1 - s) * 0.1 / 8 + s * 0.1)) < 1e-7, "%.9f", r.inv_freq[1]);
    CHECK(fabs(r.inv_freq[2] - 0.01 / 8) < 1e-9 && fabs(r.inv_freq[3] - 0.001 / 8) < 1e-9);

    /* longrope: short factors up to original_max, long beyond; attention factor
     * sqrt(1 + ln(128/16)/ln(16)) = sqrt(1.75) */
    c = base_cfg(LM_ROPE_LONGROPE, 10000, 1);
    c.original_max = 16;
    c.n_long = c.n_short = 2;
    c.short_factor[0] = 1;
    c.short_factor[1] = 2;
    c.long_factor[0] = 4;
    c.long_factor[1] = 8;
    CHECK(lm_rope_init(&r, &c, 4, 128, "t") == LM_OK);
    CHECK(fabs(r.attn_factor - sqrt(1.75)) < 1e-6);
    CHECK(fabs(angle(&r, 1, 10, 1) - 0.01 / 2) < 1e-7);
    CHECK(fabs(angle(&r, 1, 20, 1) - 0.01 / 8) < 1e-7);

    /* yarn attention factor: 0.1 ln(32) + 1 when not given and no original_max in the dict */
    c = base_cfg(LM_ROPE_YARN, 150000, 32);
    c.original_max = 4096;
    CHECK(lm_rope_init(&r, &c, 64, 131072, "t") == LM_OK);
    CHECK(fabs(r.attn_factor - (0.1 * log(32.0) + 1)) < 1e-6);
    /* the fastest pair is extrapolated (unchanged), the slowest interpolated (divided by factor) */
    CHECK(fabs(r.inv_freq[0] - 1.0) < 1e-7);
    CHECK(fabs(r.inv_freq[31] - (1.0 / pow(150000, 62.0 / 64)) / 32) < 1e-12);

    /* partial rotary: 0.5 of head_dim 8 rotates 4 dims */
    c = base_cfg(LM_ROPE_DEFAULT, 10000, 1);
    c.partial = 0.5;
    CHECK(lm_rope_init(&r, &c, 8, 16, "t") == LM_OK && r.rot_dim == 4);
    return test_done("rope");
}
