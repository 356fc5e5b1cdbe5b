/* Public model and context API (include/lmcore.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "models/model.h"

lm_model_params lm_model_default_params(void) {
    lm_model_params p = {0};
    p.size = sizeof p;
    return p;
}

lm_ctx_params lm_ctx_default_params(void) {
    lm_ctx_params p = {0};
    p.size = sizeof p;
    p.kv_keep = 4;
    p.kv_group_size = 64;
    p.quantized_kv_start = 5000;
    return p;
}

static void linear_format(const lm_linear *w, char *buf, size_t cap) {
    if (w->kind == LM_W_DENSE)
        snprintf(buf, cap, "%s", LM_DTYPES[w->dtype].short_name);
    else if (w->kind == LM_W_MXFP4)
        snprintf(buf, cap, "mxfp4");
    else
        snprintf(buf, cap, "q%d/g%d", w->bits, w->group);
}

/* The attention weights' format, plus the experts' when they differ ("bf16, experts mxfp4"). */
static void weight_format(const lm_model *m, char *buf, size_t cap) {
    char a[32], e[32];
    linear_format(&m->layers[0].q, a, sizeof a);
    const lm_moe *moe = NULL;
    for (int l = 0; l < m->cfg.n_layers && !moe; l++)
        moe = m->layers[l].moe;
    if (moe) {
        linear_format(&moe->down[0], e, sizeof e);
        if (strcmp(a, e) != 0) {
            snprintf(buf, cap, "%s, experts %s", a, e);
            return;
        }
    }
    snprintf(buf, cap, "%s", a);
}

lm_status lm_model_load(const char *dir, const lm_model_params *params, lm_model **out) {
    if (!out)
        return lm_err(LM_ERR_INVALID_ARG, "lm_model_load: out is NULL");
    *out = NULL;
    if (!dir)
        return lm_err(LM_ERR_INVALID_ARG, "lm_model_load: no model directory");
    lm_model_params p = lm_model_default_params();
    if (params)
        memcpy(&p, params, params->size < sizeof p ? params->size : sizeof p);
    if (p.device != LM_DEVICE_CPU && p.device != LM_DEVICE_CUDA)
        return lm_err(LM_ERR_INVALID_ARG, "lm_model_load: unknown device %d", (int)p.device);
    lm_model *m = calloc(1, sizeof *m);
    if (!m)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    lm_status st = lm_config_load(dir, &m->cfg);
    if (st == LM_OK) {
        m->def = lm_model_def_find(m->cfg.outer_model_type);
        if (!m->def)
            m->def = lm_model_def_find(m->cfg.model_type);
        if (!m->def) {
            char list[1024];
            lm_model_def_list(list, sizeof list);
            st = lm_err(LM_ERR_UNSUPPORTED, "%s: unsupported model_type '%s' (supported: %s)", m->cfg.path,
                        m->cfg.outer_model_type[0] ? m->cfg.outer_model_type : m->cfg.model_type, list);
        }
    }
    if (st == LM_OK)
        st = lm_st_open_dir(dir, &m->st);
    if (st == LM_OK)
        st = lm_model_resolve(m);
    if (st == LM_OK) {
        weight_format(m, m->weight_fmt, sizeof m->weight_fmt);
        st = p.device == LM_DEVICE_CUDA ? lm_backend_cuda_new(0, &m->be) : lm_backend_cpu_new(p.n_threads, &m->be);
    }
    if (st == LM_OK)
        st = lm_model_upload(m);
    if (st == LM_OK)
        st = m->be->ops->reserve(m->be, m->max_in, 0);
    if (st != LM_OK) {
        lm_model_free(m);
        return st;
    }
    *out = m;
    return LM_OK;
}

void lm_model_free(lm_model *m) {
    if (!m)
        return;
    if (m->be) {
        lm_model_release_device(m);
        m->be->ops->destroy(m->be);
    }
    for (int i = 0; i < m->n_owned; i++)
        lm_free(m->owned[i]);
    free(m->owned);
    free(m->owned_bytes);
    for (int i = 0; m->layers && i < m->cfg.n_layers; i++) {
        if (m->layers[i].moe)
            free(m->layers[i].moe->gate);
        free(m->layers[i].moe);
        free(m->layers[i].altup);
    }
    free(m->altup_proj);
    free(m->layers);
    lm_st_close(m->st);
    lm_config_free(&m->cfg);
    free(m);
}

void lm_model_get_info(const lm_model *m, lm_model_info *info) {
    const lm_config *c = &m->cfg;
    memset(info, 0, sizeof *info);
    info->model_type = c->outer_model_type[0] ? c->outer_model_type : c->model_type;
    info->family = m->def->family;
    info->n_params = m->n_params;
    info->n_layers = c->n_layers;
    info->hidden_size = c->hidden;
    info->n_heads = c->n_heads;
    info->n_kv_heads = c->n_kv_heads;
    info->head_dim = c->head_dim;
    info->vocab_size = c->vocab;
    info->context_length = c->max_pos;
    info->weight_dtype = m->weight_fmt;
}

size_t lm_model_describe(const lm_model *m, char *buf, size_t cap) {
    const lm_config *c = &m->cfg;
    lm_model_info in;
    lm_model_get_info(m, &in);
    unsigned f = m->def->features;
    int n_slide = 0, n_nope = 0;
    for (int i = 0; i < c->n_layers; i++) {
        n_slide += m->layers[i].sliding;
        n_nope += m->layers[i].no_rope;
    }
    const lm_rope *r = &m->rope_full;
    size_t n = 0;
#define OUT(...) n += (size_t)snprintf(buf + (n < cap ? n : cap), n < cap ? cap - n : 0, __VA_ARGS__)
    OUT("model_type:   %s (text: %s)\n", in.model_type, c->model_type);
    OUT("family:       %s\n", in.family);
    OUT("parameters:   %lld (%.2f M)\n", (long long)in.n_params, (double)in.n_params / 1e6);
    OUT("weights:      %s, %zu bytes in %d file(s)\n", in.weight_dtype, lm_st_data_bytes(m->st), m->st->n_files);
    OUT("layers:       %d, hidden %d, heads %d (kv %d), head_dim %d, intermediate %d, vocab %d\n", c->n_layers,
        c->hidden, c->n_heads, c->n_kv_heads, c->head_dim, c->intermediate, c->vocab);
    OUT("context:      %d\n", c->max_pos);
    OUT("rope:         %s, theta %g, rotary dims %d/%d", LM_ROPE_NAMES[r->cfg.type], r->cfg.theta, r->rot_dim,
        c->head_dim);
    if (r->cfg.type != LM_ROPE_DEFAULT)
        OUT(", factor %g", r->cfg.factor);
    OUT("\n");
    if (n_slide)
        OUT("sliding:      window %d on %d of %d layers (rope theta %g)\n", c->sliding_window, n_slide, c->n_layers,
            m->rope_sliding.cfg.theta);
    OUT("features:    ");
    if (f & LM_F_QK_NORM) OUT(" qk-norm");
    if (f & LM_F_SANDWICH) OUT(" sandwich-norms");
    if (f & LM_F_NORM_PLUS1) OUT(" norm(1+w)");
    if (f & LM_F_EMBED_SCALE) OUT(" embed-scale");
    if (f & LM_F_FUSED_QKV) OUT(" fused-qkv");
    if (f & LM_F_FUSED_GATE_UP) OUT(" fused-gate-up");
    if (c->attention_bias || (f & LM_F_QKV_BIAS)) OUT(" attention-bias");
    if (n_nope) OUT(" nope-layers:%d", n_nope);
    if (f & LM_F_SINKS) OUT(" attention-sinks");
    if (f & LM_F_V_NORM) OUT(" v-norm");
    if (f & LM_F_ALTUP)
        OUT(" altup:%d laurel:%d per-layer-inputs:%d", c->altup_num_inputs, c->laurel_rank, c->hidden_per_layer_input);
    if (c->num_kv_shared_layers) OUT(" kv-shared-layers:%d", c->num_kv_shared_layers);
    if (c->final_softcap > 0) OUT(" final-softcap:%g", c->final_softcap);
    int n_moe = 0;
    for (int i = 0; i < c->n_layers; i++)
        n_moe += m->layers[i].moe != NULL;
    if (n_moe)
        OUT(" moe:%d-experts/top-%d on %d layers (%s)", c->n_experts, c->n_experts_per_tok, n_moe,
            (f & LM_F_MOE_TOPK_SOFTMAX) ? "softmax over top-k" : c->norm_topk_prob ? "top-k, renormalised" : "top-k");
    static const char *const ACT[LM_ACT_COUNT] = {"silu", "gelu-tanh", "gelu", "swiglu-clamped"};
    OUT(" act:%s", ACT[c->act]);
    OUT(" head:%s\n", m->head.w == m->embed.w ? "tied" : "separate");
#undef OUT
    return n;
}

/* --- contexts ----------------------------------------------------------------------------------- */


lm_status lm_ctx_new(lm_model *m, const lm_ctx_params *params, lm_ctx **out) {
    if (!out || !m)
        return lm_err(LM_ERR_INVALID_ARG, "lm_ctx_new: NULL argument");
    *out = NULL;
    lm_ctx_params p = lm_ctx_default_params();
    if (params)
        memcpy(&p, params, params->size < sizeof p ? params->size : sizeof p);
    if (p.max_tokens < 0)
        return lm_err(LM_ERR_INVALID_ARG, "max_tokens must be >= 0 (0: the model's context)");
    if (p.max_kv_size < 0 || (p.max_kv_size > 0 && (p.kv_keep < 0 || p.kv_keep >= p.max_kv_size - 1)))
        return lm_err(LM_ERR_INVALID_ARG, "max_kv_size must be 0 (unbounded) or larger than kv_keep + 1 "
                      "(got max_kv_size %d, kv_keep %d)", p.max_kv_size, p.kv_keep);
    if (p.kv_bits != 0 && (p.kv_bits < 2 || p.kv_bits > 8 || p.kv_bits == 7))
        return lm_err(LM_ERR_INVALID_ARG, "kv_bits must be 0 (off), 2-6 or 8 (got %d)", p.kv_bits);
    if (p.kv_bits && !(m->be->ops->kv_quantize && m->be->ops->kv_dequant))
        return lm_err(LM_ERR_UNSUPPORTED, "a quantized KV cache (kv_bits) is not supported on %s",
                      m->be->ops->name);
    if (p.kv_bits && ((p.kv_group_size != 32 && p.kv_group_size != 64 && p.kv_group_size != 128) ||
                      m->cfg.head_dim % p.kv_group_size))
        return lm_err(LM_ERR_INVALID_ARG, "kv_group_size must be 32, 64 or 128 and divide the head size %d (got %d)",
                      m->cfg.head_dim, p.kv_group_size);
    if (p.quantized_kv_start < 0)
        return lm_err(LM_ERR_INVALID_ARG, "quantized_kv_start must be >= 0");
    if (p.kv_f16 != 0 && p.kv_f16 != 1)
        return lm_err(LM_ERR_INVALID_ARG, "kv_f16 must be 0 (f32 rows) or 1 (f16 rows) (got %d)", p.kv_f16);
    if (p.kv_f16 && !(m->be->ops->kv_quantize && m->be->ops->kv_dequant))
        return lm_err(LM_ERR_UNSUPPORTED, "an f16 KV cache (kv_f16) is not supported on %s", m->be->ops->name);
    lm_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    c->m = m;
    c->params = p;
    c->max_tokens = p.max_tokens ? p.max_tokens : m->cfg.max_pos;
    lm_status st = lm_kv_init(&c->kv, m->be, m->cfg.n_layers, m->cfg.n_kv_heads * m->cfg.head_dim, c->max_tokens,
                              p.kv_f16);
    for (int l = 0; st == LM_OK && l < m->cfg.n_layers; l++) {
        lm_kv_layer *L = &c->kv.layers[l];
        if (m->layers[l].sliding && !p.sliding_full_cache)
            L->span = m->cfg.sliding_window - 1; /* keep 0 */
        if (p.max_kv_size > 0 && (L->span == 0 || p.max_kv_size - p.kv_keep - 1 < L->span)) {
            L->keep = p.kv_keep;
            L->span = p.max_kv_size - p.kv_keep - 1;
        }
    }
    if (st == LM_OK)
        st = m->be->ops->reserve(m->be, m->max_in, c->max_tokens);
    if (st != LM_OK) {
        lm_ctx_free(c);
        return st;
    }
    *out = c;
    return LM_OK;
}

void lm_ctx_free(lm_ctx *c) {
    if (!c)
        return;
    lm_kv_free(&c->kv);
    lm_ctx_release_buffers(c);
    free(c);
}

void lm_ctx_reset(lm_ctx *c) {
    lm_kv_reset(&c->kv);
    c->n_past = 0;
}

int lm_ctx_n_past(const lm_ctx *c) { return c->n_past; }

lm_status lm_ctx_eval(lm_ctx *c, const int32_t *ids, int n, float *logits, int all_logits) {
    if (!c || (!ids && n))
        return lm_err(LM_ERR_INVALID_ARG, "lm_ctx_eval: NULL argument");
    lm_fwd_out out = {.logits = logits, .all_logits = all_logits};
    return lm_decoder_forward(c, ids, n, &out);
}

/* Evaluate ids and pick the last token's next one where the logits are: greedily (a NULL) or with
 * the sampler chain `a`, after the logit changes ops[0 .. n_ops). */
static lm_status eval_pick(lm_ctx *c, const int32_t *ids, int n, const lm_sample_args *a, const lm_logit_op *ops,
                           int n_ops, int32_t *token, float *logprob) {
    lm_argmax_out pick;
    lm_fwd_out out = {.pick = &pick, .sample = a, .edits = ops, .n_edits = n_ops};
    LM_TRY(lm_decoder_forward(c, ids, n, &out));
    *token = pick.token;
    if (logprob)
        *logprob = pick.logprob;
    return LM_OK;
}

lm_status lm_ctx_eval_greedy(lm_ctx *c, const int32_t *ids, int n, int32_t *token, float *logprob) {
    if (!c || (!ids && n) || !token)
        return lm_err(LM_ERR_INVALID_ARG, "lm_ctx_eval_greedy: NULL argument");
    return eval_pick(c, ids, n, NULL, NULL, 0, token, logprob);
}

int lm_ctx_samples_in_place(const lm_ctx *c) { return c && c->m->be->ops->sample != NULL; }

int lm_ctx_edits_in_place(const lm_ctx *c) { return c && c->m->be->ops->edit_logits != NULL; }

lm_status lm_ctx_eval_pick(lm_ctx *c, const int32_t *ids, int n, const lm_sample_args *a, const lm_logit_op *ops,
                           int n_ops, int32_t *token, float *logprob) {
    if (!c || (!ids && n) || !token || n_ops < 0 || (n_ops && !ops))
        return lm_err(LM_ERR_INVALID_ARG, "lm_ctx_eval_pick: bad argument");
    const lm_backend_ops *op = c->m->be->ops;
    if ((a && !op->sample) || (n_ops && !op->edit_logits))
        return lm_err(LM_ERR_UNSUPPORTED, "lm_ctx_eval_pick: the %s backend cannot %s", op->name,
                      a && !op->sample ? "sample" : "process logits");
    int V = c->m->cfg.vocab;
    for (int i = 0; i < n_ops; i++)
        if (ops[i].token < 0 || ops[i].token >= V || ops[i].kind < LM_LOGIT_ADD || ops[i].kind > LM_LOGIT_SUB ||
            ops[i].count < 0)
            return lm_err(LM_ERR_INVALID_ARG, "lm_ctx_eval_pick: logit change %d is invalid (token %d of %d)", i,
                          ops[i].token, V);
    return eval_pick(c, ids, n, a, ops, n_ops, token, logprob);
}

lm_status lm_ctx_truncate(lm_ctx *c, int n) {
    if (!c || n < 0)
        return lm_err(LM_ERR_INVALID_ARG, "lm_ctx_truncate: bad argument");
    if (n >= c->n_past)
        return LM_OK;
    LM_TRY(lm_kv_truncate(&c->kv, n));
    c->n_past = n;
    return LM_OK;
}
