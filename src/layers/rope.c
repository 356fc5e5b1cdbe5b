#include "layers/rope.h"

#include <math.h>
#include <string.h>

static double get_mscale(double scale, double mscale) {
    return scale <= 1.0 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

static double yarn_correction_dim(double rot, int dim, double base, double max_pos) {
    return (dim * log(max_pos / (rot * 2 * M_PI))) / (2 * log(base));
}

static void yarn_freqs(lm_rope *r, int dim) {
    const lm_rope_cfg *c = &r->cfg;
    /* transformers 5.x uses the configured factor as is (the fixture confirms it); the correction
     * range comes from original_max_position_embeddings */
    double factor = c->factor;
    double af = c->attention_factor;
    if (af < 0)
        af = (c->mscale != 0 && c->mscale_all_dim != 0)
                 ? get_mscale(factor, c->mscale) / get_mscale(factor, c->mscale_all_dim)
                 : get_mscale(factor, 1.0);
    r->attn_factor = (float)af;
    double lo = yarn_correction_dim(c->beta_fast, dim, c->theta, c->original_max);
    double hi = yarn_correction_dim(c->beta_slow, dim, c->theta, c->original_max);
    if (c->truncate) {
        lo = floor(lo);
        hi = ceil(hi);
    }
    if (lo < 0)
        lo = 0;
    if (hi > dim - 1)
        hi = dim - 1;
    if (lo == hi)
        hi += 0.001;
    for (int i = 0; i < dim / 2; i++) {
        float pos_freq = (float)pow(c->theta, (double)(float)(2.0 * i / dim));
        double extra = 1.0 / pos_freq, inter = 1.0 / (factor * pos_freq);
        double ramp = ((float)i - lo) / (hi - lo);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        double ext_factor = 1.0 - (float)ramp;
        r->inv_freq[i] = (float)(inter * (1 - ext_factor) + extra * ext_factor);
    }
}

lm_status lm_rope_init(lm_rope *r, const lm_rope_cfg *cfg, int head_dim, int max_pos, const char *what) {
    memset(r, 0, sizeof *r);
    r->cfg = *cfg;
    r->max_pos = max_pos;
    int dim = (int)(head_dim * cfg->partial);
    dim &= ~1;
    if (dim < 2 || dim / 2 > LM_ROPE_MAX_HALF || dim > head_dim)
        return lm_err(LM_ERR_UNSUPPORTED, "%s: rotary dimension %d not supported", what, dim);
    r->rot_dim = dim;
    r->attn_factor = 1.0f;
    int half = dim / 2;
    for (int i = 0; i < half; i++) /* torch: base ** (arange(0, dim, 2).float() / dim) */
        r->inv_freq[i] = (float)(1.0 / pow(cfg->theta, (double)(float)(2.0 * i / dim)));
    switch (cfg->type) {
    case LM_ROPE_DEFAULT:
    case LM_ROPE_DYNAMIC: /* recomputed per call when the sequence outgrows max_pos */
        break;
    case LM_ROPE_LINEAR:
        for (int i = 0; i < half; i++)
            r->inv_freq[i] = (float)(r->inv_freq[i] / cfg->factor);
        break;
    case LM_ROPE_LLAMA3: {
        double lo_wl = cfg->original_max / cfg->low_freq_factor, hi_wl = cfg->original_max / cfg->high_freq_factor;
        for (int i = 0; i < half; i++) {
            double f = r->inv_freq[i], wl = 2 * M_PI / f;
            double scaled = wl > lo_wl ? f / cfg->factor : f;
            if (!(wl < hi_wl) && !(wl > lo_wl)) {
                double smooth = (cfg->original_max / wl - cfg->low_freq_factor) /
                                (cfg->high_freq_factor - cfg->low_freq_factor);
                scaled = (1 - smooth) * scaled / cfg->factor + smooth * scaled;
            }
            r->inv_freq[i] = (float)scaled;
        }
        break;
    }
    case LM_ROPE_YARN:
        yarn_freqs(r, dim);
        break;
    case LM_ROPE_LONGROPE: {
        if (cfg->n_long != half || cfg->n_short != half)
            return lm_err(LM_ERR_FORMAT, "%s: longrope factors must have %d entries (have %d long, %d short)", what,
                          half, cfg->n_long, cfg->n_short);
        /* Phi-3: the attention factor comes from the context extension ratio */
        double factor = cfg->original_max > 0 && cfg->original_max < max_pos ? (double)max_pos / cfg->original_max
                                                                             : cfg->factor;
        double af = cfg->attention_factor;
        if (af < 0)
            af = factor <= 1.0 ? 1.0 : sqrt(1 + log(factor) / log((double)cfg->original_max));
        r->attn_factor = (float)af;
        for (int i = 0; i < half; i++) {
            double base = pow(cfg->theta, (double)(float)(2.0 * i / dim));
            r->long_inv[i] = (float)(1.0 / ((float)cfg->long_factor[i] * (float)base));
            r->inv_freq[i] = (float)(1.0 / ((float)cfg->short_factor[i] * (float)base));
        }
        break;
    }
    default:
        return lm_err(LM_ERR_UNSUPPORTED, "%s: rope type not supported", what);
    }
    return LM_OK;
}

void lm_rope_table(const lm_rope *r, const int32_t *pos, int T, int seq_len, float *cs) {
    int half = r->rot_dim / 2;
    const double *inv = r->inv_freq;
    double dyn[LM_ROPE_MAX_HALF];
    if (r->cfg.type == LM_ROPE_LONGROPE && seq_len > r->cfg.original_max) {
        inv = r->long_inv;
    } else if (r->cfg.type == LM_ROPE_DYNAMIC && seq_len > r->max_pos) {
        double f = r->cfg.factor, dim = r->rot_dim;
        double base = r->cfg.theta * pow(f * seq_len / r->max_pos - (f - 1), dim / (dim - 2));
        for (int i = 0; i < half; i++)
            dyn[i] = (float)(1.0 / pow(base, (double)(float)(2.0 * i / dim)));
        inv = dyn;
    }
    for (int t = 0; t < T; t++) {
        float *c = cs + (size_t)t * r->rot_dim, *s = c + half;
        for (int i = 0; i < half; i++) {
            double a = (double)pos[t] * inv[i];
            c[i] = (float)cos(a) * r->attn_factor;
            s[i] = (float)sin(a) * r->attn_factor;
        }
    }
}
