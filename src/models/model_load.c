/* Resolving a checkpoint's tensors into the roles of a model definition, with shape and
 * dtype checks that name the tensor at fault. Matrices stay in the mapping; only small
 * vectors (norms, biases) are converted to f32. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "models/model.h"
#include "quant/quant.h"

/* --- helpers ----------------------------------------------------------------------------------- */

static const lm_st_tensor *find(const lm_model *m, const char *name) { return lm_st_find(m->st, name); }

static lm_status missing(const lm_model *m, const char *name) {
    return lm_err(LM_ERR_MISSING, "%s: tensor '%s' not found in the checkpoint (model_type %s)", m->dir, name,
                  m->cfg.model_type);
}

static float *own(lm_model *m, size_t n) {
    if (m->n_owned == m->cap_owned) {
        int nc = m->cap_owned ? m->cap_owned * 2 : 64;
        float **no = realloc(m->owned, (size_t)nc * sizeof *no);
        if (!no)
            return NULL;
        m->owned = no;
        size_t *nb = realloc(m->owned_bytes, (size_t)nc * sizeof *nb);
        if (!nb)
            return NULL;
        m->owned_bytes = nb;
        m->cap_owned = nc;
    }
    float *p = lm_malloc(n * sizeof(float));
    if (p) {
        m->owned_bytes[m->n_owned] = n * sizeof(float);
        m->owned[m->n_owned++] = p;
    }
    return p;
}

static int is_float(lm_dtype d) { return d == LM_DT_F32 || d == LM_DT_F16 || d == LM_DT_BF16; }

static const char *shape_str(const lm_st_tensor *t, char *buf, size_t cap) {
    size_t n = 0;
    n += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
    return buf;
}

/* A 1-D float vector of n entries, converted to f32 (plus_one: 1 + w). */
static lm_status load_vec(lm_model *m, const char *name, int n, int plus_one, const float **out) {
    const lm_st_tensor *t = find(m, name);
    if (!t)
        return missing(m, name);
    char sb[96];
    if (!is_float(t->dtype) || t->numel != n || t->ndim > 2)
        return lm_err(LM_ERR_SHAPE, "%s: tensor '%s' is %s %s, expected a float vector of %d", m->dir, name,
                      LM_DTYPES[t->dtype].short_name, shape_str(t, sb, sizeof sb), n);
    float *v = own(m, (size_t)n);
    if (!v)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        v[i] = lm_scalar_to_f32(t->data, t->dtype, (size_t)i) + (plus_one ? 1.0f : 0.0f);
    m->n_params += n;
    *out = v;
    return LM_OK;
}

/* Expect [d0, d1], or [stack, d0, d1] when stack > 0. */
static lm_status check_shape(const lm_model *m, const lm_st_tensor *t, const char *name, int stack, int64_t d0,
                             int64_t d1, const char *what) {
    char sb[96];
    int ok = stack > 0 ? (t->ndim == 3 && t->shape[0] == stack && t->shape[1] == d0 && t->shape[2] == d1)
                       : (t->ndim == 2 && t->shape[0] == d0 && t->shape[1] == d1);
    if (ok)
        return LM_OK;
    if (stack > 0)
        return lm_err(LM_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected [%d, %lld, %lld] (%s)", m->dir, name,
                      shape_str(t, sb, sizeof sb), stack, (long long)d0, (long long)d1, what);
    return lm_err(LM_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected [%lld, %lld] (%s)", m->dir, name,
                  shape_str(t, sb, sizeof sb), (long long)d0, (long long)d1, what);
}
#define check_2d(m, t, name, d0, d1, what) check_shape(m, t, name, stack, d0, d1, what)

typedef enum { BIAS_NONE, BIAS_OPTIONAL, BIAS_REQUIRED } bias_mode;

/* A linear module `mod` (name without ".weight") of logical shape [out, in]; with stack > 0 the
 * tensors are [stack, out, in] (stacked experts) and w covers stack*out rows. */
static lm_status load_linear_ex(lm_model *m, const char *mod, int stack, int out, int in, bias_mode bias,
                                lm_linear *w) {
    char name[640], sname[640], bname[640];
    snprintf(name, sizeof name, "%s.weight", mod);
    snprintf(sname, sizeof sname, "%s.scales", mod);
    snprintf(bname, sizeof bname, "%s.biases", mod);
    const lm_st_tensor *t = find(m, name), *sc = find(m, sname), *bi = find(m, bname);
    if (!t)
        return missing(m, name);
    memset(w, 0, sizeof *w);
    w->out = stack > 0 ? stack * out : out;
    w->in = in;
    if (!sc) { /* dense */
        if (!is_float(t->dtype))
            return lm_err(LM_ERR_SHAPE, "%s: tensor '%s' has dtype %s (expected f32/f16/bf16, or a packed weight "
                          "with '%s')", m->dir, name, LM_DTYPES[t->dtype].short_name, sname);
        LM_TRY(check_2d(m, t, name, out, in, "dense weight"));
        w->kind = LM_W_DENSE;
        w->dtype = t->dtype;
        w->w = t->data;
        w->w_row_bytes = (size_t)in * LM_DTYPES[t->dtype].size;
    } else {
        lm_quant_cfg q = lm_config_quant_for(&m->cfg, mod);
        if (q.mxfp4) {
            if (t->dtype != LM_DT_U32 || sc->dtype != LM_DT_U8 || in % 32)
                return lm_err(LM_ERR_SHAPE, "%s: mxfp4 module '%s' needs uint32 weight, uint8 scales and an input "
                              "size divisible by 32", m->dir, mod);
            LM_TRY(check_2d(m, t, name, out, in / 8, "mxfp4 packed weight"));
            LM_TRY(check_2d(m, sc, sname, out, in / 32, "mxfp4 scales"));
            w->kind = LM_W_MXFP4;
            w->bits = 4;
            w->group = 32;
            w->dtype = LM_DT_U8;
        } else {
            int bits = q.bits, gs = q.group_size;
            if (bits != 2 && bits != 3 && bits != 4 && bits != 5 && bits != 6 && bits != 8)
                return lm_err(LM_ERR_UNSUPPORTED, "%s: module '%s': unsupported bits %d (supported: 2, 3, 4, 5, 6, 8)",
                              m->dir, mod, bits);
            if (gs != 32 && gs != 64 && gs != 128)
                return lm_err(LM_ERR_UNSUPPORTED, "%s: module '%s': unsupported group size %d (32, 64 or 128)",
                              m->dir, mod, gs);
            if (!bi)
                return lm_err(LM_ERR_MISSING, "%s: affine-quantized module '%s' has scales but no '%s'", m->dir, mod,
                              bname);
            if (t->dtype != LM_DT_U32 || in % gs || ((int64_t)in * bits) % 32)
                return lm_err(LM_ERR_SHAPE, "%s: tensor '%s': packed weight must be uint32 with in (%d) divisible by "
                              "the group size %d", m->dir, name, in, gs);
            if (!is_float(sc->dtype) || sc->dtype != bi->dtype)
                return lm_err(LM_ERR_SHAPE, "%s: module '%s': scales and biases must share a float dtype", m->dir, mod);
            LM_TRY(check_2d(m, t, name, out, (int64_t)in * bits / 32, "packed weight for the configured bits"));
            LM_TRY(check_2d(m, sc, sname, out, in / gs, "scales"));
            LM_TRY(check_2d(m, bi, bname, out, in / gs, "biases"));
            w->kind = LM_W_AFFINE;
            w->bits = bits;
            w->group = gs;
            w->dtype = sc->dtype;
            w->biases = bi->data;
        }
        w->w = t->data;
        w->scales = sc->data;
        w->w_row_bytes = (size_t)t->shape[t->ndim - 1] * 4;
        w->s_row_bytes = (size_t)sc->shape[sc->ndim - 1] * LM_DTYPES[sc->dtype].size;
    }
    m->n_params += (int64_t)w->out * in;
    if (in > m->max_in)
        m->max_in = in;
    if (bias != BIAS_NONE) {
        snprintf(name, sizeof name, "%s.bias", mod);
        if (find(m, name))
            LM_TRY(load_vec(m, name, w->out, 0, &w->bias));
        else if (bias == BIAS_REQUIRED)
            return missing(m, name);
    }
    return LM_OK;
}
#undef check_2d

static lm_status load_linear(lm_model *m, const char *mod, int out, int in, bias_mode bias, lm_linear *w) {
    return load_linear_ex(m, mod, 0, out, in, bias, w);
}

/* --- mixture of experts ------------------------------------------------------------------------------ */

static lm_status alloc_experts(lm_moe *moe) {
    int E = moe->n_experts;
    moe->gate = calloc((size_t)E * 3, sizeof(lm_linear));
    if (!moe->gate)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    moe->up = moe->gate + E;
    moe->down = moe->gate + 2 * E;
    return LM_OK;
}

/* MLX switch_mlp: stacked [E, out, in] modules, viewed per expert. */
static lm_status load_experts_stacked(lm_model *m, const char *p, lm_moe *moe) {
    int E = moe->n_experts, I = moe->intermediate, H = m->cfg.hidden;
    static const char *const ROLE[3] = {"gate_proj", "up_proj", "down_proj"};
    lm_linear *dst[3] = {moe->gate, moe->up, moe->down};
    char name[512];
    for (int r = 0; r < 3; r++) {
        lm_linear all;
        int out = r == 2 ? H : I, in = r == 2 ? I : H;
        snprintf(name, sizeof name, "%s%s%s", p, m->def->names->switch_mlp, ROLE[r]);
        LM_TRY(load_linear_ex(m, name, E, out, in, BIAS_OPTIONAL, &all));
        for (int e = 0; e < E; e++)
            dst[r][e] = lm_linear_rows(&all, e * out, out);
    }
    return LM_OK;
}

/* Hugging Face per-expert modules "<expert pattern>gate_proj" ... */
static lm_status load_experts_split(lm_model *m, const char *p, lm_moe *moe) {
    int E = moe->n_experts, I = moe->intermediate, H = m->cfg.hidden;
    char ep[300], name[512];
    for (int e = 0; e < E; e++) {
        snprintf(ep, sizeof ep, "%s%s%d.", p, m->def->names->expert, e);
        snprintf(name, sizeof name, "%sgate_proj", ep);
        LM_TRY(load_linear(m, name, I, H, BIAS_NONE, &moe->gate[e]));
        snprintf(name, sizeof name, "%sup_proj", ep);
        LM_TRY(load_linear(m, name, I, H, BIAS_NONE, &moe->up[e]));
        snprintf(name, sizeof name, "%sdown_proj", ep);
        LM_TRY(load_linear(m, name, H, I, BIAS_NONE, &moe->down[e]));
    }
    snprintf(ep, sizeof ep, "%s%s%d.", p, m->def->names->expert, E); /* the config must not undercount the checkpoint's experts */
    snprintf(name, sizeof name, "%sgate_proj.weight", ep);
    if (find(m, name))
        return lm_err(LM_ERR_SHAPE, "%s: the checkpoint has more experts than the config's %d ('%s' exists)", m->dir,
                      E, name);
    return LM_OK;
}

/* Biases [E, 2I] (interleaved gate/up) and [E, H] of GPT-OSS experts, de-interleaved to f32. */
static lm_status load_fused_biases(lm_model *m, const char *gu, const char *dn, lm_moe *moe) {
    int E = moe->n_experts, I = moe->intermediate, H = m->cfg.hidden;
    char bname[600];
    snprintf(bname, sizeof bname, "%s_bias", gu);
    const lm_st_tensor *bg = find(m, bname);
    if (!bg)
        return missing(m, bname);
    LM_TRY(check_shape(m, bg, bname, 0, E, 2 * I, "gate_up bias"));
    snprintf(bname, sizeof bname, "%s_bias", dn);
    const lm_st_tensor *bd = find(m, bname);
    if (!bd)
        return missing(m, bname);
    LM_TRY(check_shape(m, bd, bname, 0, E, H, "down bias"));
    float *bias = own(m, (size_t)E * (2 * I + H));
    if (!bias)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    for (int e = 0; e < E; e++) {
        float *gb = bias + (size_t)e * (2 * I + H), *ub = gb + I, *db = ub + I;
        for (int o = 0; o < I; o++) {
            gb[o] = lm_scalar_to_f32(bg->data, bg->dtype, (size_t)e * 2 * I + 2 * o);
            ub[o] = lm_scalar_to_f32(bg->data, bg->dtype, (size_t)e * 2 * I + 2 * o + 1);
        }
        for (int o = 0; o < H; o++)
            db[o] = lm_scalar_to_f32(bd->data, bd->dtype, (size_t)e * H + o);
        moe->gate[e].bias = gb;
        moe->up[e].bias = ub;
        moe->down[e].bias = db;
    }
    return LM_OK;
}

/* Hugging Face gpt-oss MXFP4: "<gate_up>_blocks" [E, 2I, H/32, 16] u8 (two e2m1 per byte, rows
 * interleaved gate/up) with "_scales" [E, 2I, H/32] e8m0, and the same for down [E, H, I/32, 16]. */
static lm_status load_experts_mxfp4(lm_model *m, const char *gu, const char *dn, lm_moe *moe) {
    int E = moe->n_experts, I = moe->intermediate, H = m->cfg.hidden;
    const char *mods[2] = {gu, dn};
    int outs[2] = {2 * I, H}, ins[2] = {H, I};
    const lm_st_tensor *b[2], *s[2];
    char name[600];
    for (int k = 0; k < 2; k++) {
        if (ins[k] % 32)
            return lm_err(LM_ERR_SHAPE, "%s: mxfp4 experts need sizes divisible by 32 (got %d)", m->dir, ins[k]);
        snprintf(name, sizeof name, "%s_blocks", mods[k]);
        b[k] = find(m, name);
        if (!b[k])
            return missing(m, name);
        if (b[k]->dtype != LM_DT_U8 || b[k]->ndim != 4 || b[k]->shape[0] != E || b[k]->shape[1] != outs[k] ||
            b[k]->shape[2] != ins[k] / 32 || b[k]->shape[3] != 16)
            return lm_err(LM_ERR_SHAPE, "%s: tensor '%s' must be uint8 [%d, %d, %d, 16]", m->dir, name, E, outs[k],
                          ins[k] / 32);
        snprintf(name, sizeof name, "%s_scales", mods[k]);
        s[k] = find(m, name);
        if (!s[k])
            return missing(m, name);
        if (s[k]->dtype != LM_DT_U8 || s[k]->ndim != 3 || s[k]->shape[0] != E || s[k]->shape[1] != outs[k] ||
            s[k]->shape[2] != ins[k] / 32)
            return lm_err(LM_ERR_SHAPE, "%s: tensor '%s' must be uint8 [%d, %d, %d]", m->dir, name, E, outs[k],
                          ins[k] / 32);
    }
    for (int e = 0; e < E; e++) {
        for (int k = 0; k < 2; k++) {
            lm_linear w = {.kind = LM_W_MXFP4, .dtype = LM_DT_U8, .out = outs[k], .in = ins[k], .bits = 4, .group = 32,
                           .w_row_bytes = (size_t)ins[k] / 2, .s_row_bytes = (size_t)ins[k] / 32};
            w.w = (const uint8_t *)b[k]->data + (size_t)e * outs[k] * w.w_row_bytes;
            w.scales = (const uint8_t *)s[k]->data + (size_t)e * outs[k] * w.s_row_bytes;
            if (k == 1) {
                moe->down[e] = w;
                continue;
            }
            /* gate = even rows, up = odd rows: views with a doubled row stride */
            w.out = I;
            w.w_row_bytes *= 2;
            w.s_row_bytes *= 2;
            moe->gate[e] = w;
            w.w = (const uint8_t *)w.w + w.w_row_bytes / 2;
            w.scales = (const uint8_t *)w.scales + w.s_row_bytes / 2;
            moe->up[e] = w;
        }
    }
    m->n_params += (int64_t)E * 3 * I * H;
    if (I > m->max_in)
        m->max_in = I;
    return load_fused_biases(m, gu, dn, moe);
}

/* GPT-OSS: gate_up_proj [E, H, 2I] (stored in x out; gate = even columns, up = odd) and down_proj
 * [E, I, H], each with a bias. Read in place through strided views. */
static lm_status load_experts_fused(lm_model *m, const char *p, lm_moe *moe) {
    int E = moe->n_experts, I = moe->intermediate, H = m->cfg.hidden;
    char gu[512], dn[512];
    snprintf(gu, sizeof gu, "%s%sgate_up_proj", p, m->def->names->experts_fused);
    snprintf(dn, sizeof dn, "%s%sdown_proj", p, m->def->names->experts_fused);
    const lm_st_tensor *tg = find(m, gu), *td = find(m, dn);
    char blk[600];
    snprintf(blk, sizeof blk, "%s_blocks", gu);
    if (!tg && find(m, blk))
        return load_experts_mxfp4(m, gu, dn, moe);
    if (!tg)
        return missing(m, gu);
    if (!td)
        return missing(m, dn);
    if (!is_float(tg->dtype) || tg->dtype != td->dtype)
        return lm_err(LM_ERR_SHAPE, "%s: expert tensors '%s' and '%s' must share a float dtype", m->dir, gu, dn);
    LM_TRY(check_shape(m, tg, gu, E, H, 2 * I, "experts x hidden x 2*intermediate"));
    LM_TRY(check_shape(m, td, dn, E, I, H, "experts x intermediate x hidden"));
    size_t es = LM_DTYPES[tg->dtype].size;
    for (int e = 0; e < E; e++) {
        const uint8_t *g0 = (const uint8_t *)tg->data + (size_t)e * H * 2 * I * es;
        lm_linear w = {.kind = LM_W_DENSE, .dtype = tg->dtype, .out = I, .in = H, .w = g0,
                       .w_row_bytes = 2 * es, .in_step = (size_t)2 * I};
        moe->gate[e] = w;
        w.w = g0 + es;
        moe->up[e] = w;
        lm_linear d = {.kind = LM_W_DENSE, .dtype = td->dtype, .out = H, .in = I,
                       .w = (const uint8_t *)td->data + (size_t)e * I * H * es, .w_row_bytes = es,
                       .in_step = (size_t)H};
        moe->down[e] = d;
    }
    m->n_params += (int64_t)E * 3 * I * H;
    if (I > m->max_in)
        m->max_in = I;
    return load_fused_biases(m, gu, dn, moe);
}

static int layer_is_moe(const lm_config *c, int i) {
    return c->n_experts > 0 && !c->layer_dense_mlp[i] && (i + 1) % c->decoder_sparse_step == 0;
}

static lm_status load_moe(lm_model *m, const char *p, lm_layer *L) {
    const lm_config *c = &m->cfg;
    const lm_names *nm = m->def->names;
    lm_moe *moe = calloc(1, sizeof *moe);
    if (!moe)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    L->moe = moe; /* freed with the model */
    moe->n_experts = c->n_experts;
    moe->top_k = c->n_experts_per_tok;
    moe->norm_topk = c->norm_topk_prob;
    moe->topk_softmax = (m->def->features & LM_F_MOE_TOPK_SOFTMAX) != 0;
    moe->intermediate = c->moe_intermediate > 0 ? c->moe_intermediate : c->intermediate;
    if (moe->top_k < 1)
        return lm_err(LM_ERR_FORMAT, "%s: num_experts_per_tok must be >= 1 for a mixture of experts", c->path);
    char name[512];
    snprintf(name, sizeof name, "%s%s", p, nm->router);
    LM_TRY(load_linear(m, name, moe->n_experts, c->hidden, BIAS_OPTIONAL, &moe->router));
    LM_TRY(alloc_experts(moe));
    snprintf(name, sizeof name, "%s%sgate_proj.weight", p, nm->switch_mlp ? nm->switch_mlp : "");
    if (nm->switch_mlp && find(m, name))
        LM_TRY(load_experts_stacked(m, p, moe));
    else if (nm->expert)
        LM_TRY(load_experts_split(m, p, moe));
    else if (nm->experts_fused)
        LM_TRY(load_experts_fused(m, p, moe));
    else
        return lm_err(LM_ERR_INTERNAL, "family %s declares no expert layout", m->def->family);
    if (moe->n_experts > m->max_experts)
        m->max_experts = moe->n_experts;
    if (moe->top_k > m->max_topk)
        m->max_topk = moe->top_k;
    L->intermediate = moe->intermediate;
    return LM_OK;
}

/* --- the model ---------------------------------------------------------------------------------- */


static lm_status pick_base(lm_model *m) {
    static const char *const BASES[] = {"model.", "language_model.model.", "model.language_model.", ""};
    char name[256];
    for (size_t i = 0; i < sizeof BASES / sizeof BASES[0]; i++) {
        snprintf(name, sizeof name, "%s%s.weight", BASES[i], m->def->names->embed);
        if (find(m, name)) {
            snprintf(m->base, sizeof m->base, "%s", BASES[i]);
            return LM_OK;
        }
    }
    return lm_err(LM_ERR_MISSING, "%s: no embedding tensor ('model.%s.weight' or a prefixed variant) in the checkpoint",
                  m->dir, m->def->names->embed);
}

/* The layer whose cache layer i reads: itself, or for the last num_kv_shared_layers layers
 * (Gemma 3n) the last earlier non-shared layer of the same attention type. */
static int kv_source(const lm_config *c, int i) {
    int first_shared = c->n_layers - c->num_kv_shared_layers;
    if (c->num_kv_shared_layers <= 0 || i < first_shared)
        return i;
    for (int j = first_shared - 1; j >= 0; j--)
        if (c->layer_sliding[j] == c->layer_sliding[i])
            return j;
    return i;
}

/* Inverse of the standard normal CDF, by bisection on erfc (exact to double precision). */
static double normal_icdf(double p) {
    double lo = -40, hi = 40;
    for (int k = 0; k < 200; k++) {
        double mid = 0.5 * (lo + hi);
        if (0.5 * erfc(-mid / M_SQRT2) < p)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* A small [rows, cols] float matrix copied to f32 (clip > 0: clamped to [-clip, clip]). */
static lm_status load_small_matrix(lm_model *m, const char *name, int rows, int cols, double clip, float **out) {
    const lm_st_tensor *t = find(m, name);
    if (!t)
        return missing(m, name);
    int stack = 0;
    if (!is_float(t->dtype))
        return lm_err(LM_ERR_SHAPE, "%s: tensor '%s' must be a float tensor", m->dir, name);
    LM_TRY(check_shape(m, t, name, stack, rows, cols, "AltUp coefficients"));
    float *v = own(m, (size_t)rows * cols);
    if (!v)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < rows * cols; i++) {
        float x = lm_scalar_to_f32(t->data, t->dtype, (size_t)i);
        if (clip > 0)
            x = x < -clip ? (float)-clip : x > clip ? (float)clip : x;
        v[i] = x;
    }
    m->n_params += (int64_t)rows * cols;
    *out = v;
    return LM_OK;
}

/* Gemma 3n: AltUp, Laurel and per-layer-input weights of one layer (prefix p). */
static lm_status load_altup_layer(lm_model *m, const char *p, lm_layer *L) {
    const lm_config *c = &m->cfg;
    int H = c->hidden, n = c->altup_num_inputs, R = c->laurel_rank, P = c->hidden_per_layer_input;
    if (n < 2 || R < 1 || P < 1)
        return lm_err(LM_ERR_FORMAT, "%s: Gemma 3n needs altup_num_inputs >= 2, laurel_rank and "
                      "hidden_size_per_layer_input", c->path);
    lm_altup_layer *A = calloc(1, sizeof *A);
    if (!A)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    L->altup = A; /* freed with the model */
    char name[512];
#define NAME(s) (snprintf(name, sizeof name, "%s%s", p, s), name)
    LM_TRY(load_vec(m, NAME("altup.correct_output_scale"), H, 0, &A->correct_scale));
    LM_TRY(load_small_matrix(m, NAME("altup.prediction_coefs.weight"), n * n, n, 0, &A->pred_coefs));
    /* transformers clamps the correction coefficients at inference too */
    LM_TRY(load_small_matrix(m, NAME("altup.correction_coefs.weight"), n, n, c->altup_coef_clip, &A->corr_coefs));
    lm_linear coefs = {.kind = LM_W_DENSE, .dtype = LM_DT_F32, .in = n, .w_row_bytes = (size_t)n * sizeof(float)};
    A->pred = A->corr = coefs;
    A->pred.out = n * n;
    A->pred.w = A->pred_coefs;
    A->corr.out = n;
    A->corr.w = A->corr_coefs;
    LM_TRY(load_linear(m, NAME("altup.modality_router"), n, H, BIAS_NONE, &A->router));
    LM_TRY(load_vec(m, NAME("altup.router_norm.weight"), H, 0, &A->router_norm));
    LM_TRY(load_linear(m, NAME("laurel.linear_left"), R, H, BIAS_NONE, &A->laurel_left));
    LM_TRY(load_linear(m, NAME("laurel.linear_right"), H, R, BIAS_NONE, &A->laurel_right));
    LM_TRY(load_vec(m, NAME("laurel.post_laurel_norm.weight"), H, 0, &A->laurel_norm));
    LM_TRY(load_linear(m, NAME("per_layer_input_gate"), P, H, BIAS_NONE, &A->pli_gate));
    LM_TRY(load_linear(m, NAME("per_layer_projection"), H, P, BIAS_NONE, &A->pli_proj));
    LM_TRY(load_vec(m, NAME("post_per_layer_input_norm.weight"), H, 0, &A->pli_norm));
#undef NAME
    return LM_OK;
}

/* Gemma 3n model-level parts: stream projections and per-layer embeddings. */
static lm_status load_altup_model(lm_model *m) {
    const lm_config *c = &m->cfg;
    int H = c->hidden, n = c->altup_num_inputs, LP = c->n_layers * c->hidden_per_layer_input;
    int Vp = c->vocab_per_layer_input > 0 ? c->vocab_per_layer_input : c->vocab;
    m->altup_proj = calloc((size_t)(n - 1) * 2, sizeof(lm_linear));
    if (!m->altup_proj)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    m->altup_unembed = m->altup_proj + (n - 1);
    char name[512];
    for (int i = 0; i < n - 1; i++) {
        snprintf(name, sizeof name, "%saltup_projections.%d", m->base, i);
        LM_TRY(load_linear(m, name, H, H, BIAS_NONE, &m->altup_proj[i]));
        snprintf(name, sizeof name, "%saltup_unembed_projections.%d", m->base, i);
        LM_TRY(load_linear(m, name, H, H, BIAS_NONE, &m->altup_unembed[i]));
    }
    snprintf(name, sizeof name, "%sembed_tokens_per_layer", m->base);
    LM_TRY(load_linear(m, name, Vp, LP, BIAS_NONE, &m->ple_embed));
    snprintf(name, sizeof name, "%sper_layer_model_projection", m->base);
    LM_TRY(load_linear(m, name, LP, H, BIAS_NONE, &m->ple_proj));
    snprintf(name, sizeof name, "%sper_layer_projection_norm.weight", m->base);
    LM_TRY(load_vec(m, name, c->hidden_per_layer_input, 0, &m->ple_norm));
    return LM_OK;
}

static lm_status load_layer(lm_model *m, int i) {
    const lm_config *c = &m->cfg;
    const lm_names *nm = m->def->names;
    unsigned f = m->def->features;
    lm_layer *L = &m->layers[i];
    int H = c->hidden, hd = c->head_dim, Q = c->n_heads * hd, KV = c->n_kv_heads * hd;
    int plus1 = (f & LM_F_NORM_PLUS1) != 0;
    char p[256], name[512];
    snprintf(p, sizeof p, "%slayers.%d.", m->base, i);
#define MOD(role) (snprintf(name, sizeof name, "%s%s", p, nm->role), name)
#define VEC(role) (snprintf(name, sizeof name, "%s%s.weight", p, nm->role), name)
    bias_mode qkv_bias = (c->attention_bias || (f & LM_F_QKV_BIAS)) ? BIAS_REQUIRED : BIAS_NONE;
    L->kv_source = kv_source(c, i);
    int own_kv = L->kv_source == i;
    if (f & LM_F_FUSED_QKV) {
        lm_linear qkv;
        LM_TRY(load_linear(m, MOD(qkv), Q + 2 * KV, H, qkv_bias, &qkv));
        L->q = lm_linear_rows(&qkv, 0, Q);
        L->k = lm_linear_rows(&qkv, Q, KV);
        L->v = lm_linear_rows(&qkv, Q + KV, KV);
    } else {
        LM_TRY(load_linear(m, MOD(q), Q, H, qkv_bias, &L->q));
        if (own_kv) {
            LM_TRY(load_linear(m, MOD(k), KV, H, qkv_bias, &L->k));
            LM_TRY(load_linear(m, MOD(v), KV, H, qkv_bias, &L->v));
        }
    }
    LM_TRY(load_linear(m, MOD(o), H, Q, c->attention_bias ? BIAS_REQUIRED : BIAS_NONE, &L->o));
    if (f & LM_F_QK_NORM) {
        LM_TRY(load_vec(m, VEC(q_norm), hd, plus1, &L->q_norm));
        if (own_kv)
            LM_TRY(load_vec(m, VEC(k_norm), hd, plus1, &L->k_norm));
    }
    L->v_norm = (f & LM_F_V_NORM) != 0;
    if (c->layer_act_sparsity[i] > 0)
        L->sparsity_mult = (float)normal_icdf(c->layer_act_sparsity[i]);
    if (f & LM_F_ALTUP)
        LM_TRY(load_altup_layer(m, p, L));
    int I = c->layer_intermediate[i];
    L->intermediate = I;
    bias_mode mb = c->mlp_bias ? BIAS_REQUIRED : BIAS_NONE;
    if (layer_is_moe(c, i)) {
        LM_TRY(load_moe(m, p, L));
    } else if (f & LM_F_FUSED_GATE_UP) {
        lm_linear gu;
        LM_TRY(load_linear(m, MOD(gate_up), 2 * I, H, mb, &gu));
        L->gate = lm_linear_rows(&gu, 0, I);
        L->up = lm_linear_rows(&gu, I, I);
    } else {
        LM_TRY(load_linear(m, MOD(gate), I, H, mb, &L->gate));
        LM_TRY(load_linear(m, MOD(up), I, H, mb, &L->up));
    }
    if (!L->moe)
        LM_TRY(load_linear(m, MOD(down), H, I, mb, &L->down));
    if (f & LM_F_SINKS)
        LM_TRY(load_vec(m, MOD(sinks), c->n_heads, 0, &L->sinks));
    LM_TRY(load_vec(m, VEC(attn_norm), H, plus1, &L->attn_norm));
    LM_TRY(load_vec(m, VEC(ffn_norm), H, plus1, &L->ffn_norm));
    if (f & LM_F_SANDWICH) {
        LM_TRY(load_vec(m, VEC(post_attn_norm), H, plus1, &L->post_attn_norm));
        LM_TRY(load_vec(m, VEC(post_ffn_norm), H, plus1, &L->post_ffn_norm));
    }
#undef MOD
#undef VEC
    L->sliding = c->layer_sliding[i] && c->sliding_window > 0;
    L->no_rope = c->layer_no_rope[i];
    return LM_OK;
}

lm_status lm_model_resolve(lm_model *m) {
    lm_config *c = &m->cfg;
    const lm_names *nm = m->def->names;
    if (m->def->adjust)
        LM_TRY(m->def->adjust(c));
    if (c->intermediate <= 0)
        return lm_err(LM_ERR_MISSING, "%s: no \"intermediate_size\"", c->path);
    LM_TRY(pick_base(m));
    char name[512];
    snprintf(name, sizeof name, "%s%s", m->base, nm->embed);
    LM_TRY(load_linear(m, name, c->vocab, c->hidden, BIAS_NONE, &m->embed));
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < c->n_layers; i++)
        LM_TRY(load_layer(m, i));
    if (m->def->features & LM_F_ALTUP)
        LM_TRY(load_altup_model(m));
    snprintf(name, sizeof name, "%s%s.weight", m->base, nm->final_norm);
    LM_TRY(load_vec(m, name, c->hidden, (m->def->features & LM_F_NORM_PLUS1) != 0, &m->final_norm));
    /* the head: tied when the config says so, or when the checkpoint has none (Mistral 3) */
    const char *head = NULL;
    static const char *const HEADS[] = {"", "language_model."};
    for (size_t i = 0; c->tie_embeddings != 1 && !head && i < 2; i++) {
        snprintf(name, sizeof name, "%s%s.weight", HEADS[i], nm->lm_head);
        if (find(m, name))
            head = HEADS[i];
    }
    if (head) {
        snprintf(name, sizeof name, "%s%s", head, nm->lm_head);
        LM_TRY(load_linear(m, name, c->vocab, c->hidden, BIAS_NONE, &m->head));
    } else {
        m->head = m->embed;
    }
    LM_TRY(lm_rope_init(&m->rope_full, &c->rope_full, c->head_dim, c->max_pos, c->path));
    LM_TRY(lm_rope_init(&m->rope_sliding, &c->rope_sliding, c->head_dim, c->max_pos, c->path));
    m->embed_scale = (m->def->features & LM_F_EMBED_SCALE) ? sqrtf((float)c->hidden) : 1.0f;
    m->attn_scale = 1.0f / sqrtf(c->query_pre_attn_scalar > 0 ? (float)c->query_pre_attn_scalar : (float)c->head_dim);
    if (m->def->features & LM_F_ALTUP) /* Gemma 3n: q/k norms replace the 1/sqrt(d) scale */
        m->attn_scale = 1.0f;
    return LM_OK;
}
