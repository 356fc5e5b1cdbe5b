#include "io/config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "io/json.h"

const char *const LM_ROPE_NAMES[LM_ROPE_COUNT] = {"default", "linear", "dynamic", "yarn", "longrope", "llama3"};

/* --- small typed readers bound to one config (errors name config.json) -------------------- */

typedef struct reader {
    const cJSON *obj;
    const char *what;
} reader;

#define RD_INT(r, key, def, dst)                                         \
    do {                                                                 \
        long long v_;                                                    \
        LM_TRY(lm_json_int((r)->obj, key, def, &v_, (r)->what));         \
        if (v_ < INT32_MIN || v_ > INT32_MAX)                            \
            return lm_err(LM_ERR_FORMAT, "%s: \"%s\" out of range", (r)->what, key); \
        (dst) = (int)v_;                                                 \
    } while (0)

static lm_status read_float_list(const cJSON *arr, double *out, int cap, int *n, const char *what,
                                 const char *key) {
    if (!cJSON_IsArray(arr))
        return lm_err(LM_ERR_FORMAT, "%s: \"%s\" must be a list of numbers", what, key);
    int i = 0;
    for (const cJSON *e = arr->child; e; e = e->next) {
        if (i >= cap || !cJSON_IsNumber(e))
            return lm_err(LM_ERR_FORMAT, "%s: \"%s\" must be a list of at most %d numbers", what, key, cap);
        out[i++] = e->valuedouble;
    }
    *n = i;
    return LM_OK;
}

/* --- RoPE ------------------------------------------------------------------------------------ */

static lm_status check_rope(const lm_rope_cfg *rc, const char *what) {
    if (!(rc->theta > 0) || !(rc->factor > 0) || !(rc->partial > 0 && rc->partial <= 1) || rc->original_max < 0)
        return lm_err(LM_ERR_FORMAT, "%s: invalid rope theta/factor/partial_rotary_factor", what);
    return LM_OK;
}

/* Fill `rc` from a rope dict (4.x rope_scaling or a 5.x rope_parameters entry). `params` may be
 * NULL (default RoPE). theta/partial defaults come from the caller. */
static lm_status parse_rope(lm_rope_cfg *rc, const cJSON *params, double theta, double partial, int top_orig_max,
                            int max_pos, const char *what) {
    memset(rc, 0, sizeof *rc);
    rc->type = LM_ROPE_DEFAULT;
    rc->theta = theta;
    rc->partial = partial;
    rc->factor = 1.0;
    rc->attention_factor = -1.0;
    rc->truncate = 1;
    rc->original_max = top_orig_max > 0 ? top_orig_max : max_pos;
    if (!params)
        return check_rope(rc, what);
    if (!cJSON_IsObject(params))
        return lm_err(LM_ERR_FORMAT, "%s: rope parameters must be an object", what);
    const char *type;
    LM_TRY(lm_json_str(params, "rope_type", &type, what));
    if (!type)
        LM_TRY(lm_json_str(params, "type", &type, what));
    if (type) {
        int found = 0;
        for (int i = 0; i < LM_ROPE_COUNT; i++)
            if (strcmp(type, LM_ROPE_NAMES[i]) == 0) {
                rc->type = (lm_rope_type)i;
                found = 1;
            }
        if (strcmp(type, "su") == 0) { /* early Phi-3 name for longrope */
            rc->type = LM_ROPE_LONGROPE;
            found = 1;
        }
        if (!found)
            return lm_err(LM_ERR_UNSUPPORTED, "%s: unsupported rope type '%s' (supported: default, linear, dynamic, "
                          "yarn, longrope, llama3)", what, type);
    }
    LM_TRY(lm_json_num(params, "rope_theta", rc->theta, &rc->theta, what));
    LM_TRY(lm_json_num(params, "partial_rotary_factor", rc->partial, &rc->partial, what));
    LM_TRY(lm_json_num(params, "factor", 1.0, &rc->factor, what));
    long long om;
    LM_TRY(lm_json_int(params, "original_max_position_embeddings", 0, &om, what));
    if (om > 0)
        rc->original_max = (int)om;
    LM_TRY(lm_json_num(params, "low_freq_factor", 1.0, &rc->low_freq_factor, what));
    LM_TRY(lm_json_num(params, "high_freq_factor", 4.0, &rc->high_freq_factor, what));
    LM_TRY(lm_json_num(params, "beta_fast", 32.0, &rc->beta_fast, what));
    LM_TRY(lm_json_num(params, "beta_slow", 1.0, &rc->beta_slow, what));
    LM_TRY(lm_json_num(params, "mscale", 0.0, &rc->mscale, what));
    LM_TRY(lm_json_num(params, "mscale_all_dim", 0.0, &rc->mscale_all_dim, what));
    LM_TRY(lm_json_num(params, "attention_factor", -1.0, &rc->attention_factor, what));
    LM_TRY(lm_json_bool(params, "truncate", 1, &rc->truncate, what));
    const cJSON *lf = lm_json_get(params, "long_factor"), *sf = lm_json_get(params, "short_factor");
    if (lf)
        LM_TRY(read_float_list(lf, rc->long_factor, LM_MAX_ROPE_FACTORS, &rc->n_long, what, "long_factor"));
    if (sf)
        LM_TRY(read_float_list(sf, rc->short_factor, LM_MAX_ROPE_FACTORS, &rc->n_short, what, "short_factor"));
    if (rc->type == LM_ROPE_LONGROPE && (!rc->n_long || !rc->n_short))
        return lm_err(LM_ERR_FORMAT, "%s: longrope needs long_factor and short_factor", what);
    return check_rope(rc, what);
}

static lm_status parse_ropes(lm_config *c, const cJSON *t, const char *what) {
    double theta, partial, local;
    long long top_om;
    LM_TRY(lm_json_num(t, "rope_theta", 10000.0, &theta, what));
    LM_TRY(lm_json_num(t, "partial_rotary_factor", 1.0, &partial, what));
    LM_TRY(lm_json_num(t, "rope_local_base_freq", 0.0, &local, what));
    LM_TRY(lm_json_int(t, "original_max_position_embeddings", 0, &top_om, what));
    const cJSON *rp = lm_json_get(t, "rope_parameters");
    if (rp && cJSON_IsObject(rp)) { /* 5.x */
        const cJSON *full = lm_json_get(rp, "full_attention"), *slide = lm_json_get(rp, "sliding_attention");
        if (full || slide) {
            LM_TRY(parse_rope(&c->rope_full, full ? full : slide, theta, partial, (int)top_om, c->max_pos, what));
            LM_TRY(parse_rope(&c->rope_sliding, slide ? slide : full, theta, partial, (int)top_om, c->max_pos, what));
        } else {
            LM_TRY(parse_rope(&c->rope_full, rp, theta, partial, (int)top_om, c->max_pos, what));
            c->rope_sliding = c->rope_full;
            if (local > 0) /* sliding layers: own base, unscaled */
                LM_TRY(parse_rope(&c->rope_sliding, NULL, local, partial, (int)top_om, c->max_pos, what));
        }
        return LM_OK;
    }
    const cJSON *rs = lm_json_get(t, "rope_scaling"); /* 4.x */
    LM_TRY(parse_rope(&c->rope_full, rs, theta, partial, (int)top_om, c->max_pos, what));
    if (local > 0)
        LM_TRY(parse_rope(&c->rope_sliding, NULL, local, partial, (int)top_om, c->max_pos, what));
    else
        c->rope_sliding = c->rope_full;
    return LM_OK;
}

/* --- per-layer lists ------------------------------------------------------------------------- */

static lm_status parse_layer_kinds(lm_config *c, const cJSON *t, const char *what) {
    const cJSON *lt = lm_json_get(t, "layer_types");
    long long pattern, mwl;
    int use_sw;
    LM_TRY(lm_json_int(t, "sliding_window_pattern", 0, &pattern, what));
    if (!pattern)
        LM_TRY(lm_json_int(t, "_sliding_window_pattern", 0, &pattern, what));
    LM_TRY(lm_json_bool(t, "use_sliding_window", -1, &use_sw, what));
    LM_TRY(lm_json_int(t, "max_window_layers", 0, &mwl, what));
    if (lt) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layers)
            return lm_err(LM_ERR_FORMAT, "%s: \"layer_types\" must list %d layer types", what, c->n_layers);
        int i = 0;
        for (const cJSON *e = lt->child; e; e = e->next, i++) {
            if (!cJSON_IsString(e))
                return lm_err(LM_ERR_FORMAT, "%s: \"layer_types\" entries must be strings", what);
            if (strcmp(e->valuestring, "sliding_attention") == 0)
                c->layer_sliding[i] = 1;
            else if (strcmp(e->valuestring, "full_attention") != 0)
                return lm_err(LM_ERR_UNSUPPORTED, "%s: unsupported layer type '%s'", what, e->valuestring);
        }
    } else if (c->sliding_window > 0 && pattern > 0) { /* Gemma 3 before layer_types */
        for (int i = 0; i < c->n_layers; i++)
            c->layer_sliding[i] = (i + 1) % pattern != 0;
    } else if (c->sliding_window > 0 && use_sw >= 0) { /* Qwen2 style */
        for (int i = 0; i < c->n_layers; i++)
            c->layer_sliding[i] = use_sw && i >= mwl;
    } else if (c->sliding_window > 0) { /* Mistral: every layer */
        for (int i = 0; i < c->n_layers; i++)
            c->layer_sliding[i] = 1;
    }
    const cJSON *nr = lm_json_get(t, "no_rope_layers"); /* SmolLM3: 1 = rope, 0 = no rope */
    if (nr) {
        if (!cJSON_IsArray(nr) || cJSON_GetArraySize(nr) != c->n_layers)
            return lm_err(LM_ERR_FORMAT, "%s: \"no_rope_layers\" must list %d entries", what, c->n_layers);
        int i = 0;
        for (const cJSON *e = nr->child; e; e = e->next, i++) {
            if (!cJSON_IsNumber(e))
                return lm_err(LM_ERR_FORMAT, "%s: \"no_rope_layers\" entries must be numbers", what);
            c->layer_no_rope[i] = e->valuedouble == 0;
        }
    }
    const cJSON *mo = lm_json_get(t, "mlp_only_layers");
    if (mo) {
        if (!cJSON_IsArray(mo))
            return lm_err(LM_ERR_FORMAT, "%s: \"mlp_only_layers\" must be a list", what);
        for (const cJSON *e = mo->child; e; e = e->next) {
            if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= c->n_layers)
                return lm_err(LM_ERR_FORMAT, "%s: \"mlp_only_layers\" has an invalid layer index", what);
            c->layer_dense_mlp[(int)e->valuedouble] = 1;
        }
    }
    /* per-layer intermediate sizes (Gemma 3n) */
    const cJSON *is = lm_json_get(t, "intermediate_size");
    if (is && cJSON_IsArray(is)) {
        if (cJSON_GetArraySize(is) != c->n_layers)
            return lm_err(LM_ERR_FORMAT, "%s: \"intermediate_size\" list must have %d entries", what, c->n_layers);
        int i = 0;
        for (const cJSON *e = is->child; e; e = e->next, i++) {
            if (!cJSON_IsNumber(e) || e->valuedouble < 1 || e->valuedouble > 1e8)
                return lm_err(LM_ERR_FORMAT, "%s: invalid \"intermediate_size\" entry", what);
            c->layer_intermediate[i] = (int)e->valuedouble;
        }
        c->intermediate = c->layer_intermediate[0];
    } else {
        for (int i = 0; i < c->n_layers; i++)
            c->layer_intermediate[i] = c->intermediate;
    }
    const cJSON *sp = lm_json_get(t, "activation_sparsity_pattern");
    if (sp) {
        double v[LM_MAX_LAYERS];
        int n = 0;
        LM_TRY(read_float_list(sp, v, LM_MAX_LAYERS, &n, what, "activation_sparsity_pattern"));
        if (n != c->n_layers)
            return lm_err(LM_ERR_FORMAT, "%s: \"activation_sparsity_pattern\" must have %d entries", what, c->n_layers);
        for (int i = 0; i < n; i++)
            c->layer_act_sparsity[i] = (float)v[i];
    }
    return LM_OK;
}

static lm_status parse_act(lm_config *c, const cJSON *t, const char *what) {
    const char *a;
    LM_TRY(lm_json_str(t, "hidden_activation", &a, what));
    if (!a)
        LM_TRY(lm_json_str(t, "hidden_act", &a, what));
    if (!a || !strcmp(a, "silu") || !strcmp(a, "swish"))
        c->act = LM_ACT_SILU;
    else if (!strcmp(a, "gelu_pytorch_tanh") || !strcmp(a, "gelu_new") || !strcmp(a, "gelu_fast"))
        c->act = LM_ACT_GELU_TANH;
    else if (!strcmp(a, "gelu"))
        c->act = LM_ACT_GELU;
    else
        return lm_err(LM_ERR_UNSUPPORTED, "%s: unsupported activation '%s'", what, a);
    return LM_OK;
}

/* A JSON number that is a token id (or a small count): an integer in [0, 2^31). */
static int small_int(const cJSON *v, int *out) {
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < 2147483647.0) ||
        v->valuedouble != floor(v->valuedouble))
        return 0;
    *out = (int)v->valuedouble;
    return 1;
}

static lm_status parse_ids(lm_config *c, const cJSON *root, const cJSON *t, const char *what) {
    long long bos;
    const cJSON *src = lm_json_get(t, "bos_token_id") ? t : root;
    LM_TRY(lm_json_int(src, "bos_token_id", -1, &bos, what));
    c->bos_id = (int)bos;
    const cJSON *eos = lm_json_get(t, "eos_token_id");
    if (!eos)
        eos = lm_json_get(root, "eos_token_id");
    c->n_eos = 0;
    if (eos && cJSON_IsNumber(eos)) {
        if (!small_int(eos, &c->eos_ids[c->n_eos++]))
            return lm_err(LM_ERR_FORMAT, "%s: \"eos_token_id\" must be a token id", what);
    } else if (eos && cJSON_IsArray(eos)) {
        for (const cJSON *e = eos->child; e && c->n_eos < 8; e = e->next)
            if (!small_int(e, &c->eos_ids[c->n_eos++]))
                return lm_err(LM_ERR_FORMAT, "%s: \"eos_token_id\" must be an id or a list of ids", what);
    } else if (eos) {
        return lm_err(LM_ERR_FORMAT, "%s: \"eos_token_id\" must be an id or a list of ids", what);
    }
    return LM_OK;
}

static lm_status parse_quant(lm_config *c, const cJSON *root, const char *what) {
    const cJSON *q = lm_json_get(root, "quantization");
    if (!q)
        q = lm_json_get(root, "quantization_config");
    if (!q)
        return LM_OK;
    if (!cJSON_IsObject(q))
        return lm_err(LM_ERR_FORMAT, "%s: \"quantization\" must be an object", what);
    c->quant_json = q;
    long long bits, gs;
    const char *mode;
    LM_TRY(lm_json_int(q, "bits", 0, &bits, what));
    LM_TRY(lm_json_int(q, "group_size", 0, &gs, what));
    LM_TRY(lm_json_str(q, "mode", &mode, what));
    if (bits < 0 || bits > 16 || gs < 0 || gs > 65536)
        return lm_err(LM_ERR_FORMAT, "%s: invalid quantization bits %lld / group_size %lld", what, bits, gs);
    c->quant.bits = (int)bits;
    c->quant.group_size = (int)gs;
    c->quant.mxfp4 = mode && strcmp(mode, "mxfp4") == 0;
    return LM_OK;
}

lm_quant_cfg lm_config_quant_for(const lm_config *cfg, const char *module) {
    lm_quant_cfg q = cfg->quant;
    const cJSON *o = cfg->quant_json ? cJSON_GetObjectItemCaseSensitive(cfg->quant_json, module) : NULL;
    if (o && cJSON_IsFalse(o)) {
        memset(&q, 0, sizeof q);
    } else if (o && cJSON_IsObject(o)) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "bits");
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(o, "group_size");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "mode");
        if (!small_int(b, &q.bits))
            q.bits = cJSON_IsNumber(b) ? -1 : q.bits; /* out of range: rejected by the loader */
        if (!small_int(g, &q.group_size))
            q.group_size = cJSON_IsNumber(g) ? -1 : q.group_size;
        /* an override without "mode" is affine, as mlx-lm's per-module parameters default to */
        q.mxfp4 = cJSON_IsString(m) && strcmp(m->valuestring, "mxfp4") == 0;
    }
    return q;
}

/* --- the whole document ---------------------------------------------------------------------- */

static lm_status parse_text(lm_config *c, const cJSON *root, const cJSON *t, const char *what) {
    reader r = {t, what};
    const char *mt;
    LM_TRY(lm_json_str(t, "model_type", &mt, what));
    if (!mt && t != root)
        mt = c->outer_model_type;
    if (!mt)
        return lm_err(LM_ERR_MISSING, "%s: no \"model_type\"", what);
    snprintf(c->model_type, sizeof c->model_type, "%s", mt);

    RD_INT(&r, "hidden_size", 0, c->hidden);
    RD_INT(&r, "num_hidden_layers", 0, c->n_layers);
    RD_INT(&r, "num_attention_heads", 0, c->n_heads);
    RD_INT(&r, "num_key_value_heads", c->n_heads, c->n_kv_heads);
    RD_INT(&r, "vocab_size", 0, c->vocab);
    RD_INT(&r, "max_position_embeddings", 4096, c->max_pos);
    if (c->hidden <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->vocab <= 0)
        return lm_err(LM_ERR_MISSING, "%s: needs positive hidden_size, num_hidden_layers, num_attention_heads "
                      "and vocab_size", what);
    if (c->n_layers > LM_MAX_LAYERS)
        return lm_err(LM_ERR_UNSUPPORTED, "%s: %d layers (at most %d)", what, c->n_layers, LM_MAX_LAYERS);
    if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads != 0)
        return lm_err(LM_ERR_FORMAT, "%s: num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)",
                      what, c->n_heads, c->n_kv_heads);
    RD_INT(&r, "head_dim", c->hidden / c->n_heads, c->head_dim);
    if (c->head_dim <= 0 || c->head_dim > 1024 || c->hidden > (1 << 20) || c->vocab > (1 << 24) ||
        c->n_heads > 4096)
        return lm_err(LM_ERR_FORMAT, "%s: implausible dimensions", what);
    const cJSON *is = lm_json_get(t, "intermediate_size");
    if (is && cJSON_IsNumber(is))
        RD_INT(&r, "intermediate_size", 0, c->intermediate);
    LM_TRY(lm_json_num(t, "rms_norm_eps", 0.0, &c->norm_eps, what));
    if (c->norm_eps == 0)
        LM_TRY(lm_json_num(t, "layer_norm_eps", 1e-5, &c->norm_eps, what));
    int tie;
    LM_TRY(lm_json_bool(t, "tie_word_embeddings", -1, &tie, what));
    if (tie < 0 && t != root)
        LM_TRY(lm_json_bool(root, "tie_word_embeddings", -1, &tie, what));
    c->tie_embeddings = tie;
    LM_TRY(lm_json_bool(t, "attention_bias", 0, &c->attention_bias, what));
    LM_TRY(lm_json_bool(t, "mlp_bias", 0, &c->mlp_bias, what));
    LM_TRY(parse_act(c, t, what));
    RD_INT(&r, "sliding_window", 0, c->sliding_window);
    if (c->sliding_window < 0)
        return lm_err(LM_ERR_FORMAT, "%s: negative sliding_window", what);
    LM_TRY(lm_json_num(t, "query_pre_attn_scalar", 0.0, &c->query_pre_attn_scalar, what));
    LM_TRY(lm_json_num(t, "attn_logit_softcapping", 0.0, &c->attn_softcap, what));
    LM_TRY(lm_json_num(t, "final_logit_softcapping", 0.0, &c->final_softcap, what));
    /* MoE */
    RD_INT(&r, "num_experts", 0, c->n_experts);
    if (!c->n_experts)
        RD_INT(&r, "num_local_experts", 0, c->n_experts);
    RD_INT(&r, "num_experts_per_tok", 0, c->n_experts_per_tok);
    RD_INT(&r, "moe_intermediate_size", 0, c->moe_intermediate);
    RD_INT(&r, "decoder_sparse_step", 1, c->decoder_sparse_step);
    LM_TRY(lm_json_bool(t, "norm_topk_prob", 0, &c->norm_topk_prob, what));
    LM_TRY(lm_json_num(t, "swiglu_limit", 0.0, &c->swiglu_limit, what));
    if (c->n_experts < 0 || c->n_experts > 4096 || c->n_experts_per_tok < 0 || c->n_experts_per_tok > c->n_experts ||
        c->decoder_sparse_step < 1)
        return lm_err(LM_ERR_FORMAT, "%s: invalid expert counts", what);
    /* Gemma 3n */
    RD_INT(&r, "altup_num_inputs", 0, c->altup_num_inputs);
    RD_INT(&r, "altup_active_idx", 0, c->altup_active_idx);
    LM_TRY(lm_json_bool(t, "altup_correct_scale", 0, &c->altup_correct_scale, what));
    LM_TRY(lm_json_num(t, "altup_coef_clip", 0.0, &c->altup_coef_clip, what));
    RD_INT(&r, "laurel_rank", 0, c->laurel_rank);
    RD_INT(&r, "hidden_size_per_layer_input", 0, c->hidden_per_layer_input);
    RD_INT(&r, "vocab_size_per_layer_input", 0, c->vocab_per_layer_input);
    RD_INT(&r, "num_kv_shared_layers", 0, c->num_kv_shared_layers);
    if (c->altup_num_inputs < 0 || c->altup_num_inputs > 16 || c->num_kv_shared_layers < 0 ||
        c->num_kv_shared_layers >= c->n_layers || c->laurel_rank < 0 || c->hidden_per_layer_input < 0)
        return lm_err(LM_ERR_FORMAT, "%s: invalid Gemma 3n settings", what);
    LM_TRY(parse_layer_kinds(c, t, what));
    LM_TRY(parse_ropes(c, t, what));
    LM_TRY(parse_ids(c, root, t, what));
    return LM_OK;
}

lm_status lm_config_parse(const char *text, size_t len, const char *path, lm_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "%s", path);
    LM_TRY(lm_json_parse(text, len, path, &c->root));
    lm_status st;
    if (!cJSON_IsObject(c->root)) {
        st = lm_err(LM_ERR_FORMAT, "%s: not a JSON object", path);
        goto fail;
    }
    const char *mt;
    if ((st = lm_json_str(c->root, "model_type", &mt, path)) != LM_OK)
        goto fail;
    snprintf(c->outer_model_type, sizeof c->outer_model_type, "%s", mt ? mt : "");
    const cJSON *tc = lm_json_get(c->root, "text_config");
    if (tc && !cJSON_IsObject(tc)) {
        st = lm_err(LM_ERR_FORMAT, "%s: \"text_config\" must be an object", path);
        goto fail;
    }
    c->text = tc ? tc : c->root;
    if ((st = parse_text(c, c->root, c->text, path)) != LM_OK || (st = parse_quant(c, c->root, path)) != LM_OK)
        goto fail;
    return LM_OK;
fail:
    lm_config_free(c);
    return st;
}

lm_status lm_config_load(const char *dir, lm_config *cfg) {
    char path[4096], *text;
    size_t len;
    memset(cfg, 0, sizeof *cfg);
    LM_TRY(lm_path_join(path, sizeof path, dir, "config.json"));
    if (!lm_file_exists(path))
        return lm_err(LM_ERR_MISSING, "%s: no config.json (is this a model directory?)", dir);
    LM_TRY(lm_read_file(path, &text, &len));
    lm_status st = lm_config_parse(text, len, path, cfg);
    free(text);
    return st;
}

void lm_config_free(lm_config *cfg) {
    cJSON_Delete(cfg->root);
    cfg->root = NULL;
    cfg->text = NULL;
    cfg->quant_json = NULL;
}
