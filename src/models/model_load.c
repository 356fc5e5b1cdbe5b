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
        m->cap_owned = nc;
    }
    float *p = lm_malloc(n * sizeof(float));
    if (p)
        m->owned[m->n_owned++] = p;
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
    if (!is_float(t->dtype) || t->ndim != 1 || t->shape[0] != n)
        return lm_err(LM_ERR_SHAPE, "%s: tensor '%s' is %s %s, expected a float vector [%d]", m->dir, name,
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

static lm_status check_2d(const lm_model *m, const lm_st_tensor *t, const char *name, int64_t d0, int64_t d1,
                          const char *what) {
    char sb[96];
    if (t->ndim != 2 || t->shape[0] != d0 || t->shape[1] != d1)
        return lm_err(LM_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected [%lld, %lld] (%s)", m->dir, name,
                      shape_str(t, sb, sizeof sb), (long long)d0, (long long)d1, what);
    return LM_OK;
}

typedef enum { BIAS_NONE, BIAS_OPTIONAL, BIAS_REQUIRED } bias_mode;

/* A linear module `mod` (name without ".weight") of logical shape [out, in]. */
static lm_status load_linear(lm_model *m, const char *mod, int out, int in, bias_mode bias, lm_linear *w) {
    char name[512], sname[512], bname[512];
    snprintf(name, sizeof name, "%s.weight", mod);
    snprintf(sname, sizeof sname, "%s.scales", mod);
    snprintf(bname, sizeof bname, "%s.biases", mod);
    const lm_st_tensor *t = find(m, name), *sc = find(m, sname), *bi = find(m, bname);
    if (!t)
        return missing(m, name);
    memset(w, 0, sizeof *w);
    w->out = out;
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
        w->w_row_bytes = (size_t)t->shape[1] * 4;
        w->s_row_bytes = (size_t)sc->shape[1] * LM_DTYPES[sc->dtype].size;
    }
    m->n_params += (int64_t)out * in;
    if (in > m->max_in)
        m->max_in = in;
    if (bias != BIAS_NONE) {
        snprintf(name, sizeof name, "%s.bias", mod);
        if (find(m, name))
            LM_TRY(load_vec(m, name, out, 0, &w->bias));
        else if (bias == BIAS_REQUIRED)
            return missing(m, name);
    }
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
    if (f & LM_F_FUSED_QKV) {
        lm_linear qkv;
        LM_TRY(load_linear(m, MOD(qkv), Q + 2 * KV, H, qkv_bias, &qkv));
        L->q = lm_linear_rows(&qkv, 0, Q);
        L->k = lm_linear_rows(&qkv, Q, KV);
        L->v = lm_linear_rows(&qkv, Q + KV, KV);
    } else {
        LM_TRY(load_linear(m, MOD(q), Q, H, qkv_bias, &L->q));
        LM_TRY(load_linear(m, MOD(k), KV, H, qkv_bias, &L->k));
        LM_TRY(load_linear(m, MOD(v), KV, H, qkv_bias, &L->v));
    }
    LM_TRY(load_linear(m, MOD(o), H, Q, c->attention_bias ? BIAS_REQUIRED : BIAS_NONE, &L->o));
    if (f & LM_F_QK_NORM) {
        LM_TRY(load_vec(m, VEC(q_norm), hd, plus1, &L->q_norm));
        LM_TRY(load_vec(m, VEC(k_norm), hd, plus1, &L->k_norm));
    }
    int I = c->layer_intermediate[i];
    L->intermediate = I;
    bias_mode mb = c->mlp_bias ? BIAS_REQUIRED : BIAS_NONE;
    if (f & LM_F_FUSED_GATE_UP) {
        lm_linear gu;
        LM_TRY(load_linear(m, MOD(gate_up), 2 * I, H, mb, &gu));
        L->gate = lm_linear_rows(&gu, 0, I);
        L->up = lm_linear_rows(&gu, I, I);
    } else {
        LM_TRY(load_linear(m, MOD(gate), I, H, mb, &L->gate));
        LM_TRY(load_linear(m, MOD(up), I, H, mb, &L->up));
    }
    LM_TRY(load_linear(m, MOD(down), H, I, mb, &L->down));
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
    return LM_OK;
}
