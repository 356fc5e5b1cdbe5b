/* The generic decoder: one forward pass for every model definition. Each block step is
 * switched on by the definition's features and the config, never by the family's name. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/model.h"

/* --- activation buffers ----------------------------------------------------------------------- */

static void release_buffers(lm_ctx *c) {
    lm_backend *be = c->m->be;
    float **bufs[] = {&c->x,  &c->h,   &c->q,      &c->k,  &c->v,          &c->att,   &c->o,
                      &c->gate, &c->up, &c->act, &c->logits, &c->cs, &c->moe_logits, &c->moe_x,
                      &c->moe_y, &c->moe_w, &c->streams, &c->pred, &c->ple, &c->ple_emb, &c->small};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        be->ops->release(be, *bufs[i]);
        *bufs[i] = NULL;
    }
    free(c->pos);
    free(c->moe_idx);
    free(c->moe_rows);
    c->pos = c->moe_idx = c->moe_rows = NULL;
    c->cap_T = 0;
}

void lm_ctx_release_buffers(lm_ctx *c) { release_buffers(c); }

static lm_status reserve(lm_ctx *c, int T) {
    if (T <= c->cap_T)
        return LM_OK;
    release_buffers(c);
    const lm_model *m = c->m;
    const lm_config *cfg = &m->cfg;
    lm_backend *be = m->be;
    size_t H = (size_t)cfg->hidden, Q = (size_t)cfg->n_heads * cfg->head_dim, KV = (size_t)cfg->n_kv_heads * cfg->head_dim;
    size_t I = 0;
    for (int l = 0; l < cfg->n_layers; l++)
        if ((size_t)m->layers[l].intermediate > I)
            I = (size_t)m->layers[l].intermediate;
    size_t n = (size_t)T, wide = H > Q ? H : Q;
    struct { float **p; size_t floats; } want[] = {
        {&c->x, n * H}, {&c->h, n * H}, {&c->q, n * Q}, {&c->k, n * KV}, {&c->v, n * KV},
        {&c->att, n * Q}, {&c->o, n * wide}, {&c->gate, n * I}, {&c->up, n * I}, {&c->act, n * I},
        {&c->logits, (size_t)cfg->vocab}, {&c->cs, 2 * n * (size_t)m->rope_full.rot_dim},
        {&c->moe_logits, n * (size_t)m->max_experts + 1}, {&c->moe_x, m->max_experts ? n * H : 1},
        {&c->moe_y, m->max_experts ? n * H : 1}, {&c->moe_w, n * (size_t)m->max_topk + 1},
        {&c->streams, n * H * (size_t)cfg->altup_num_inputs + 1}, {&c->pred, n * H * (size_t)cfg->altup_num_inputs + 1},
        {&c->ple, n * (size_t)cfg->n_layers * (size_t)cfg->hidden_per_layer_input + 1},
        {&c->ple_emb, n * (size_t)cfg->n_layers * (size_t)cfg->hidden_per_layer_input + 1},
        {&c->small, n * ((size_t)cfg->altup_num_inputs * (cfg->altup_num_inputs + 1) + 3 * H +
                         (size_t)cfg->laurel_rank + (size_t)cfg->hidden_per_layer_input) + 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        *want[i].p = be->ops->alloc(be, want[i].floats * sizeof(float));
        if (!*want[i].p) {
            release_buffers(c);
            return lm_err(LM_ERR_NOMEM, "out of memory for activations of %d tokens", T);
        }
    }
    c->pos = malloc(n * sizeof *c->pos);
    c->moe_idx = malloc((n * (size_t)m->max_topk + 1) * sizeof *c->moe_idx);
    c->moe_rows = malloc((n * (size_t)m->max_topk + 1) * sizeof *c->moe_rows);
    if (!c->pos || !c->moe_idx || !c->moe_rows) {
        release_buffers(c);
        return lm_err(LM_ERR_NOMEM, "out of memory");
    }
    c->cap_T = T;
    return LM_OK;
}

/* --- blocks ------------------------------------------------------------------------------------ */

lm_status lm_attention(lm_ctx *c, int l, int T) {
    lm_model *m = c->m;
    const lm_config *cfg = &m->cfg;
    const lm_layer *L = &m->layers[l];
    lm_backend *be = m->be;
    const lm_backend_ops *op = be->ops;
    int H = cfg->hidden, hd = cfg->head_dim, nh = cfg->n_heads, nkv = cfg->n_kv_heads;
    float eps = (float)cfg->norm_eps;
    const lm_rope *r = L->sliding ? &m->rope_sliding : &m->rope_full;
    const float *cs = L->sliding ? c->cs_slide : c->cs_full;
    int own_kv = L->kv_source == l;

    /* queries; keys and values unless this layer reads another layer's cache (Gemma 3n) */
    op->linear(be, &L->q, c->h, T, c->q);
    if (L->q_norm)
        op->rmsnorm(be, c->q, L->q_norm, T * nh, hd, eps, c->q);
    if (!L->no_rope)
        op->rope(be, c->q, T, nh, hd, r->rot_dim, cs);
    if (own_kv) {
        op->linear(be, &L->k, c->h, T, c->k);
        op->linear(be, &L->v, c->h, T, c->v);
        if (L->k_norm)
            op->rmsnorm(be, c->k, L->k_norm, T * nkv, hd, eps, c->k);
        if (L->v_norm)
            op->rmsnorm(be, c->v, NULL, T * nkv, hd, eps, c->v);
        if (!L->no_rope)
            op->rope(be, c->k, T, nkv, hd, r->rot_dim, cs);
        LM_TRY(lm_kv_append(&c->kv, l, c->k, c->v, c->pos, T));
    }
    /* attend over every visible cached row */
    const lm_kv_layer *kv = &c->kv.layers[L->kv_source];
    const float *K, *Vr;
    LM_TRY(lm_kv_rows(&c->kv, L->kv_source, &K, &Vr));
    lm_attn_args a = {
        .q = c->q, .k = K, .v = Vr, .kpos = kv->pos, .n_rows = kv->n, .qpos = c->pos,
        .T = T, .n_heads = nh, .n_kv = nkv, .head_dim = hd,
        .window = L->sliding ? cfg->sliding_window : 0,
        .scale = m->attn_scale, .softcap = (float)cfg->attn_softcap, .sinks = L->sinks, .out = c->att,
    };
    op->attention(be, &a);
    op->linear(be, &L->o, c->att, T, c->o);
    if (L->post_attn_norm)
        op->rmsnorm(be, c->o, L->post_attn_norm, T, H, eps, c->o);
    return LM_OK;
}

/* Route each token to its top-k experts. */
static void route(const lm_moe *moe, const float *logits, int T, int32_t *idx, float *w) {
    int E = moe->n_experts, K = moe->top_k;
    float p[4096];
    for (int t = 0; t < T; t++) {
        const float *lg = logits + (size_t)t * E;
        int32_t *ti = idx + (size_t)t * K;
        float *tw = w + (size_t)t * K;
        /* probabilities over all experts (Qwen3-MoE) or raw logits (GPT-OSS) to rank by */
        float mx = -INFINITY, sum = 0;
        for (int e = 0; e < E; e++)
            mx = lg[e] > mx ? lg[e] : mx;
        for (int e = 0; e < E; e++) {
            p[e] = moe->topk_softmax ? lg[e] : expf(lg[e] - mx);
            sum += p[e];
        }
        for (int k = 0; k < K; k++) { /* top-k by selection; ties keep the lower index */
            int b = -1;
            for (int e = 0; e < E; e++) {
                int taken = 0;
                for (int j = 0; j < k; j++)
                    taken |= ti[j] == e;
                if (!taken && (b < 0 || p[e] > p[b]))
                    b = e;
            }
            ti[k] = b;
            tw[k] = moe->topk_softmax ? p[b] : p[b] / sum;
        }
        if (moe->topk_softmax) { /* softmax over the chosen logits */
            float m2 = tw[0], s2 = 0;
            for (int k = 0; k < K; k++)
                s2 += (tw[k] = expf(tw[k] - m2));
            for (int k = 0; k < K; k++)
                tw[k] /= s2;
        } else if (moe->norm_topk) {
            float s2 = 0;
            for (int k = 0; k < K; k++)
                s2 += tw[k];
            for (int k = 0; k < K; k++)
                tw[k] /= s2;
        }
    }
}

/* Experts as a switch GLU: tokens are gathered by expert (mlx-lm's gather-sort), each expert
 * runs once over its rows, and the weighted results are scattered back. c->h holds the input. */
static void moe_block(lm_ctx *c, const lm_moe *moe, int T) {
    lm_model *m = c->m;
    lm_backend *be = m->be;
    const lm_backend_ops *op = be->ops;
    int H = m->cfg.hidden, E = moe->n_experts, K = moe->top_k, I = moe->intermediate;
    op->linear(be, &moe->router, c->h, T, c->moe_logits);
    route(moe, c->moe_logits, T, c->moe_idx, c->moe_w);
    memset(c->o, 0, (size_t)T * H * sizeof(float));
    for (int e = 0; e < E; e++) {
        int n = 0;
        for (int s = 0; s < T * K; s++) /* (token, slot) pairs that chose e, in token order */
            if (c->moe_idx[s] == e)
                c->moe_rows[n++] = s;
        if (!n)
            continue;
        for (int r = 0; r < n; r++)
            memcpy(c->moe_x + (size_t)r * H, c->h + (size_t)(c->moe_rows[r] / K) * H, (size_t)H * sizeof(float));
        op->linear(be, &moe->gate[e], c->moe_x, n, c->gate);
        op->linear(be, &moe->up[e], c->moe_x, n, c->up);
        op->glu(be, c->gate, c->up, I, n, I, m->cfg.act, (float)m->cfg.swiglu_limit, c->act);
        op->linear(be, &moe->down[e], c->act, n, c->moe_y);
        for (int r = 0; r < n; r++) {
            int s = c->moe_rows[r];
            float w = c->moe_w[s], *dst = c->o + (size_t)(s / K) * H;
            const float *src = c->moe_y + (size_t)r * H;
            for (int i = 0; i < H; i++)
                dst[i] += w * src[i];
        }
    }
}

/* Gemma 3n activation sparsity (gelu_topk): keep the part of each gate row above
 * mean + mult * std (population std), shifted down to the cutoff. */
static void sparsify(float *g, int T, int n, float mult) {
    for (int t = 0; t < T; t++) {
        float *r = g + (size_t)t * n;
        double mean = 0, var = 0;
        for (int i = 0; i < n; i++)
            mean += r[i];
        mean /= n;
        for (int i = 0; i < n; i++)
            var += (r[i] - mean) * (r[i] - mean);
        float cut = (float)(mean + sqrt(var / n) * mult);
        for (int i = 0; i < n; i++)
            r[i] = r[i] > cut ? r[i] - cut : 0.0f;
    }
}

void lm_mlp(lm_ctx *c, int l, int T) {
    lm_model *m = c->m;
    const lm_layer *L = &m->layers[l];
    lm_backend *be = m->be;
    const lm_backend_ops *op = be->ops;
    int I = L->intermediate;
    if (L->moe) {
        moe_block(c, L->moe, T);
        return;
    }
    op->linear(be, &L->gate, c->h, T, c->gate);
    if (L->sparsity_mult > 0)
        sparsify(c->gate, T, I, L->sparsity_mult); /* host memory: CPU backend */
    op->linear(be, &L->up, c->h, T, c->up);
    op->glu(be, c->gate, c->up, I, T, I, m->cfg.act, 0.0f, c->act);
    op->linear(be, &L->down, c->act, T, c->o);
}

/* The pre-norm residual block every family but Gemma 3n uses:
 * x += post_attn_norm(attn(attn_norm(x))); x += post_ffn_norm(mlp(ffn_norm(x))) */
static lm_status residual_layer(lm_ctx *c, int l, int T) {
    lm_model *m = c->m;
    const lm_layer *L = &m->layers[l];
    lm_backend *be = m->be;
    const lm_backend_ops *op = be->ops;
    int H = m->cfg.hidden;
    float eps = (float)m->cfg.norm_eps;
    op->rmsnorm(be, c->x, L->attn_norm, T, H, eps, c->h);
    LM_TRY(lm_attention(c, l, T));
    op->add(be, c->x, c->o, (size_t)T * H);
    op->rmsnorm(be, c->x, L->ffn_norm, T, H, eps, c->h);
    lm_mlp(c, l, T);
    if (L->post_ffn_norm)
        op->rmsnorm(be, c->o, L->post_ffn_norm, T, H, eps, c->o);
    op->add(be, c->x, c->o, (size_t)T * H);
    return LM_OK;
}

/* --- the forward pass ---------------------------------------------------------------------------- */

lm_status lm_decoder_forward(lm_ctx *c, const int32_t *ids, int T, float *logits, int all_logits) {
    lm_model *m = c->m;
    const lm_config *cfg = &m->cfg;
    lm_backend *be = m->be;
    const lm_backend_ops *op = be->ops;
    int H = cfg->hidden, V = cfg->vocab;
    if (T <= 0)
        return lm_err(LM_ERR_INVALID_ARG, "no tokens to evaluate");
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= V)
            return lm_err(LM_ERR_INVALID_ARG, "token id %d out of range [0, %d)", ids[t], V);
    if (c->n_past + T > c->max_tokens && c->params.max_kv_size == 0)
        return lm_err(LM_ERR_CONTEXT, "%d tokens after %d exceed the context of %d tokens", T, c->n_past,
                      c->max_tokens);
    LM_TRY(reserve(c, T));
    for (int t = 0; t < T; t++)
        c->pos[t] = c->n_past + t;

    /* rope tables for this call (full and sliding layers may differ) */
    int seq_len = c->n_past + T;
    c->cs_full = c->cs;
    c->cs_slide = c->cs + (size_t)T * m->rope_full.rot_dim;
    lm_rope_table(&m->rope_full, c->pos, T, seq_len, c->cs_full);
    lm_rope_table(&m->rope_sliding, c->pos, T, seq_len, c->cs_slide);

    op->embed(be, &m->embed, ids, T, m->embed_scale, c->x);
    int altup = m->altup_proj != NULL;
    if (altup)
        lm_altup_embed(c, ids, T);
    for (int l = 0; l < cfg->n_layers; l++) {
        lm_status st = altup ? lm_altup_layer_forward(c, l, T) : residual_layer(c, l, T);
        if (st != LM_OK) { /* only allocation can fail here: the sequence cannot continue */
            lm_ctx_reset(c);
            return lm_err_prefix(st, "the sequence was reset");
        }
    }
    if (altup)
        lm_altup_unembed(c, T);
    c->n_past += T;
    /* mlx-lm quantizes the cache after the step that passes quantized_kv_start */
    if (c->params.kv_bits && !c->kv.bits && c->n_past > c->params.quantized_kv_start)
        LM_TRY(lm_kv_quantize(&c->kv, c->params.kv_bits, c->params.kv_group_size));

    /* final norm and the head, for every token or the last one */
    int first = all_logits ? 0 : T - 1, n_out = T - first;
    op->rmsnorm(be, c->x + (size_t)first * H, m->final_norm, n_out, H, (float)cfg->norm_eps, c->h);
    if (!logits)
        return LM_OK;
    op->linear(be, &m->head, c->h, n_out, logits);
    if (cfg->final_softcap > 0) {
        float cap = (float)cfg->final_softcap;
        for (size_t i = 0; i < (size_t)n_out * V; i++)
            logits[i] = cap * tanhf(logits[i] / cap);
    }
    return LM_OK;
}
