/* The generic decoder: one forward pass for every model definition. Each block step is
 * switched on by the definition's features and the config, never by the family's name. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/softmax.h"
#include "models/model.h"

/* --- activation buffers ----------------------------------------------------------------------- */

static void release_buffers(lm_ctx *c) {
    lm_backend *be = c->m->be;
    void **bufs[] = {(void **)&c->x,        (void **)&c->h,          (void **)&c->q,        (void **)&c->k,
                     (void **)&c->v,        (void **)&c->att,        (void **)&c->o,        (void **)&c->gate,
                     (void **)&c->up,       (void **)&c->act,        (void **)&c->logits,   (void **)&c->cs,
                     (void **)&c->moe_logits, (void **)&c->moe_x,    (void **)&c->moe_y,    (void **)&c->moe_w,
                     (void **)&c->moe_idx_d, (void **)&c->moe_rows_d, (void **)&c->moe_rw_d, (void **)&c->streams,
                     (void **)&c->pred,     (void **)&c->ple,        (void **)&c->ple_emb,  (void **)&c->small,
                     (void **)&c->ids_d,    (void **)&c->pos_d,          (void **)&c->pick_d};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        be->ops->release(be, *bufs[i]);
        *bufs[i] = NULL;
    }
    void **host[] = {(void **)&c->pos,      (void **)&c->cs_host,  (void **)&c->moe_idx,
                     (void **)&c->moe_wh,   (void **)&c->moe_rows, (void **)&c->moe_rw,
                     (void **)&c->logits_host};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) {
        free(*host[i]);
        *host[i] = NULL;
    }
    c->cap_T = 0;
}

void lm_ctx_release_buffers(lm_ctx *c) { release_buffers(c); }

/* The backend's deferred error, if any (device backends report launch failures late). */
static lm_status backend_status(lm_backend *be) { return be->ops->status ? be->ops->status(be) : LM_OK; }

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
    size_t n = (size_t)T, wide = H > Q ? H : Q, nk = n * (size_t)m->max_topk + 1;
    size_t ns = (size_t)cfg->altup_num_inputs, P = (size_t)cfg->hidden_per_layer_input;
    size_t logit_rows = n < LM_LOGIT_ROWS ? n : LM_LOGIT_ROWS;
    struct { void **p; size_t bytes; } want[] = {
        {(void **)&c->x, n * H * 4}, {(void **)&c->h, n * H * 4}, {(void **)&c->q, n * Q * 4},
        {(void **)&c->k, n * KV * 4}, {(void **)&c->v, n * KV * 4}, {(void **)&c->att, n * Q * 4},
        {(void **)&c->o, n * wide * 4}, {(void **)&c->gate, n * I * 4}, {(void **)&c->up, n * I * 4},
        {(void **)&c->act, n * I * 4}, {(void **)&c->logits, logit_rows * (size_t)cfg->vocab * 4},
        {(void **)&c->cs, 2 * n * (size_t)m->rope_full.rot_dim * 4},
        {(void **)&c->moe_logits, (n * (size_t)m->max_experts + 1) * 4},
        {(void **)&c->moe_x, (m->max_experts ? n * H : 1) * 4}, {(void **)&c->moe_y, (m->max_experts ? n * H : 1) * 4},
        {(void **)&c->moe_w, nk * 4}, {(void **)&c->moe_idx_d, nk * 4}, {(void **)&c->moe_rows_d, nk * 4},
        {(void **)&c->moe_rw_d, nk * 4},
        {(void **)&c->streams, (n * H * ns + 1) * 4}, {(void **)&c->pred, (n * H * ns + 1) * 4},
        {(void **)&c->ple, (n * (size_t)cfg->n_layers * P + 1) * 4},
        {(void **)&c->ple_emb, (n * (size_t)cfg->n_layers * P + 1) * 4},
        {(void **)&c->small, (n * (ns * (ns + 1) + 3 * H + (size_t)cfg->laurel_rank + 2 * P) + 1) * 4},
        {(void **)&c->ids_d, n * 4}, {(void **)&c->pos_d, n * 4}, {(void **)&c->pick_d, sizeof(lm_argmax_out)},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        *want[i].p = be->ops->alloc(be, want[i].bytes);
        if (!*want[i].p) {
            release_buffers(c);
            lm_status st = backend_status(be);
            return st != LM_OK ? st : lm_err(LM_ERR_NOMEM, "out of memory for activations of %d tokens", T);
        }
    }
    c->pos = malloc(n * sizeof *c->pos);
    c->cs_host = malloc(2 * n * (size_t)m->rope_full.rot_dim * sizeof *c->cs_host + 1);
    c->moe_idx = malloc(nk * sizeof *c->moe_idx);
    c->moe_wh = malloc(nk * sizeof *c->moe_wh);
    c->moe_rows = malloc(nk * sizeof *c->moe_rows);
    c->moe_rw = malloc(nk * sizeof *c->moe_rw);
    c->logits_host = calloc(be->ops->argmax ? 1 : (size_t)cfg->vocab, sizeof *c->logits_host);
    if (!c->pos || !c->cs_host || !c->moe_idx || !c->moe_wh || !c->moe_rows || !c->moe_rw || !c->logits_host) {
        release_buffers(c);
        return lm_err(LM_ERR_NOMEM, "out of memory");
    }
    c->cap_T = T;
    return LM_OK;
}

/* --- blocks ------------------------------------------------------------------------------------ */

/* c->h, after computing the input norm that c->h_norm defers. */
static const float *input_h(lm_ctx *c, int T) {
    lm_model *m = c->m;
    if (c->h_norm) {
        m->be->ops->rmsnorm(m->be, c->x, c->h_norm, T, m->cfg.hidden, (float)m->cfg.norm_eps, c->h);
        c->h_norm = NULL;
    }
    return c->h;
}

/* x W^T into c->o, or added into resid when given (inside the matvec where the backend can). */
static void out_proj(lm_ctx *c, const lm_linear *w, const float *x, int T, float *resid) {
    lm_backend *be = c->m->be;
    const lm_backend_ops *op = be->ops;
    if (resid && T == 1 && op->matvec_add && op->matvec_add(be, w, x, resid))
        return;
    op->linear(be, w, x, T, c->o);
    if (resid)
        op->add(be, resid, c->o, (size_t)T * c->m->cfg.hidden);
}

lm_status lm_attention(lm_ctx *c, int l, int T, float *resid) {
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
    if (own_kv && op->linear_n) {
        const lm_linear *w[3] = {&L->q, &L->k, &L->v};
        float *y[3] = {c->q, c->k, c->v};
        if (!(c->h_norm && T == 1 && op->norm_matvec_n && op->norm_matvec_n(be, c->h_norm, eps, 3, w, c->x, y)))
            op->linear_n(be, 3, w, input_h(c, T), T, y);
        c->h_norm = NULL;
    } else {
        op->linear(be, &L->q, input_h(c, T), T, c->q);
    }
    if (L->q_norm)
        op->rmsnorm(be, c->q, L->q_norm, T * nh, hd, eps, c->q);
    lm_rope_args rope = {.q = c->q, .n_heads = nh, .n_kv = nkv, .head_dim = hd, .rot_dim = r->rot_dim, .cs = cs};
    if (!L->no_rope && !own_kv)
        op->rope(be, c->q, T, nh, hd, r->rot_dim, cs);
    if (own_kv) {
        if (!op->linear_n) {
            op->linear(be, &L->k, c->h, T, c->k);
            op->linear(be, &L->v, c->h, T, c->v);
        }
        if (L->k_norm)
            op->rmsnorm(be, c->k, L->k_norm, T * nkv, hd, eps, c->k);
        if (L->v_norm)
            op->rmsnorm(be, c->v, NULL, T * nkv, hd, eps, c->v);
        /* q and k rotated by the append (on their way into the cache where the backend can) */
        LM_TRY(lm_kv_append(&c->kv, l, c->k, c->v, c->pos, T, L->no_rope ? NULL : &rope));
    }
    /* attend over every visible cached row */
    const lm_kv_layer *kv = &c->kv.layers[L->kv_source];
    const void *K, *Vr;
    int f16;
    LM_TRY(lm_kv_rows(&c->kv, L->kv_source, &K, &Vr, &f16));
    lm_attn_args a = {
        .q = c->q, .k = K, .v = Vr, .kv_f16 = f16, .kpos = kv->pos_d, .n_rows = kv->n, .qpos = c->pos_d,
        .T = T, .n_heads = nh, .n_kv = nkv, .head_dim = hd,
        .window = L->sliding ? cfg->sliding_window : 0,
        .scale = m->attn_scale, .softcap = (float)cfg->attn_softcap, .sinks = L->sinks, .out = c->att,
    };
    op->attention(be, &a);
    if (!L->post_attn_norm) {
        out_proj(c, &L->o, c->att, T, resid);
        return LM_OK;
    }
    op->linear(be, &L->o, c->att, T, c->o);
    op->rmsnorm(be, c->o, L->post_attn_norm, T, H, eps, c->o);
    if (resid)
        op->add(be, resid, c->o, (size_t)T * H);
    return LM_OK;
}

/* Experts as a switch GLU: tokens are gathered by expert (mlx-lm's gather-sort), each expert
 * runs once over its rows, and the weighted results are scattered back. c->h holds the input.
 * The routing comes back to the host to size each expert's matmul. */
static void moe_block(lm_ctx *c, const lm_moe *moe, int T) {
    lm_model *m = c->m;
    lm_backend *be = m->be;
    const lm_backend_ops *op = be->ops;
    int H = m->cfg.hidden, E = moe->n_experts, K = moe->top_k, I = moe->intermediate, TK = T * K;
    op->linear(be, &moe->router, c->h, T, c->moe_logits);
    op->moe_route(be, c->moe_logits, T, E, K, moe->topk_softmax, moe->norm_topk, c->moe_idx_d, c->moe_w);
    op->download(be, c->moe_idx, c->moe_idx_d, (size_t)TK * sizeof(int32_t));
    op->download(be, c->moe_wh, c->moe_w, (size_t)TK * sizeof(float));
    /* (token, slot) pairs grouped by expert, in token order within each */
    int start[LM_MOE_MAX_EXPERTS + 1], n = 0;
    for (int e = 0; e < E; e++) {
        start[e] = n;
        for (int s = 0; s < TK; s++)
            if (c->moe_idx[s] == e) {
                c->moe_rows[n] = s / K;
                c->moe_rw[n++] = c->moe_wh[s];
            }
    }
    start[E] = n;
    op->upload(be, c->moe_rows_d, c->moe_rows, (size_t)n * sizeof(int32_t));
    op->upload(be, c->moe_rw_d, c->moe_rw, (size_t)n * sizeof(float));
    op->zero(be, c->o, (size_t)T * H * sizeof(float));
    for (int e = 0; e < E; e++) {
        int r0 = start[e], nr = start[e + 1] - r0;
        if (!nr)
            continue;
        op->gather_rows(be, c->h, c->moe_rows_d + r0, nr, H, c->moe_x);
        op->linear(be, &moe->gate[e], c->moe_x, nr, c->gate);
        op->linear(be, &moe->up[e], c->moe_x, nr, c->up);
        op->glu(be, c->gate, c->up, I, nr, I, m->cfg.act, (float)m->cfg.swiglu_limit, c->act);
        op->linear(be, &moe->down[e], c->act, nr, c->moe_y);
        op->scatter_add_rows(be, c->o, c->moe_y, c->moe_rows_d + r0, c->moe_rw_d + r0, nr, H);
    }
}

void lm_mlp(lm_ctx *c, int l, int T, float *resid) {
    lm_model *m = c->m;
    const lm_layer *L = &m->layers[l];
    lm_backend *be = m->be;
    const lm_backend_ops *op = be->ops;
    int I = L->intermediate;
    if (L->moe) {
        input_h(c, T);
        moe_block(c, L->moe, T);
        if (resid)
            op->add(be, resid, c->o, (size_t)T * m->cfg.hidden);
        return;
    }
    if (op->linear_glu && !(L->sparsity_mult > 0)) {
        if (!(c->h_norm && T == 1 && op->norm_matvec_glu &&
              op->norm_matvec_glu(be, c->h_norm, (float)m->cfg.norm_eps, &L->gate, &L->up, c->x, m->cfg.act, 0.0f,
                                  c->act)))
            op->linear_glu(be, &L->gate, &L->up, input_h(c, T), T, m->cfg.act, 0.0f, c->gate, c->up, c->act);
        c->h_norm = NULL;
        out_proj(c, &L->down, c->act, T, resid);
        return;
    }
    const float *h = input_h(c, T);
    op->linear(be, &L->gate, h, T, c->gate);
    if (L->sparsity_mult > 0) /* Gemma 3n gelu_topk */
        op->sparsify(be, c->gate, T, I, L->sparsity_mult);
    op->linear(be, &L->up, h, T, c->up);
    op->glu(be, c->gate, c->up, I, T, I, m->cfg.act, 0.0f, c->act);
    out_proj(c, &L->down, c->act, T, resid);
}

/* x += o (when *pending), then h = rmsnorm(x) * w: one op where the backend fuses them. A
 * one-token step without the add leaves the norm to the matvecs that read h (c->h_norm) where
 * the backend can fuse them. */
static void add_norm(lm_ctx *c, int *pending, const float *w, int T) {
    lm_backend *be = c->m->be;
    int H = c->m->cfg.hidden;
    float eps = (float)c->m->cfg.norm_eps;
    if (*pending && be->ops->add_rmsnorm) {
        be->ops->add_rmsnorm(be, c->x, c->o, w, T, H, eps, c->h);
    } else if (!*pending && w && T == 1 && be->ops->norm_matvec_n) {
        c->h_norm = w;
    } else {
        if (*pending)
            be->ops->add(be, c->x, c->o, (size_t)T * H);
        be->ops->rmsnorm(be, c->x, w, T, H, eps, c->h);
    }
    *pending = 0;
}

/* The pre-norm residual block every family but Gemma 3n uses:
 * x += post_attn_norm(attn(attn_norm(x))); x += post_ffn_norm(mlp(ffn_norm(x)))
 * A one-token step adds o_proj and down_proj into x inside the matvecs where the backend can;
 * else the add is left pending (*pending = 1) for the next norm to fuse. */
static lm_status residual_layer(lm_ctx *c, int l, int T, int *pending) {
    lm_model *m = c->m;
    const lm_layer *L = &m->layers[l];
    lm_backend *be = m->be;
    const lm_backend_ops *op = be->ops;
    int H = m->cfg.hidden;
    float eps = (float)m->cfg.norm_eps;
    int add_in = T == 1 && op->matvec_add;
    float *ra = add_in && !L->post_attn_norm ? c->x : NULL;
    float *rm = add_in && !L->post_ffn_norm && !L->moe ? c->x : NULL;
    add_norm(c, pending, L->attn_norm, T);
    LM_TRY(lm_attention(c, l, T, ra));
    *pending = ra == NULL;
    add_norm(c, pending, L->ffn_norm, T);
    lm_mlp(c, l, T, rm);
    if (L->post_ffn_norm)
        op->rmsnorm(be, c->o, L->post_ffn_norm, T, H, eps, c->o);
    *pending = rm == NULL;
    return LM_OK;
}

/* --- the forward pass ---------------------------------------------------------------------------- */

/* Upload this call's ids, positions and rope tables (full and sliding layers may differ). */
static void upload_inputs(lm_ctx *c, const int32_t *ids, int T) {
    lm_model *m = c->m;
    lm_backend *be = m->be;
    int rot = m->rope_full.rot_dim, seq_len = c->n_past + T;
    for (int t = 0; t < T; t++)
        c->pos[t] = c->n_past + t;
    lm_rope_table(&m->rope_full, c->pos, T, seq_len, c->cs_host);
    lm_rope_table(&m->rope_sliding, c->pos, T, seq_len, c->cs_host + (size_t)T * rot);
    c->cs_full = c->cs;
    c->cs_slide = c->cs + (size_t)T * rot;
    be->ops->upload(be, c->cs, c->cs_host, 2 * (size_t)T * rot * sizeof(float));
    be->ops->upload(be, c->ids_d, ids, (size_t)T * sizeof(int32_t));
    be->ops->upload(be, c->pos_d, c->pos, (size_t)T * sizeof(int32_t));
}

/* A one-token step of a plain decoder (no MoE routing on the host, no AltUp, a cache that
 * appends without allocating) is recorded and replayed as one graph where the backend can. */
static int record_step(lm_ctx *c, int T) {
    lm_model *m = c->m;
    lm_backend *be = m->be;
    if (T != 1 || !be->ops->record_begin || m->max_experts > 0 || m->altup_proj)
        return 0;
    if (c->params.kv_bits && c->n_past + 1 > c->params.quantized_kv_start)
        return 0;
    if (lm_kv_prepare_append(&c->kv, T) != LM_OK) {
        lm_err_clear();
        return 0;
    }
    return be->ops->record_begin(be) == LM_OK;
}

/* The pick of the logits block's first row into *pick: already computed by the backend's sample
 * op (sampled) or argmax op, or (greedy without an argmax op) picked on the host from downloaded
 * logits. */
static void download_pick(lm_ctx *c, lm_argmax_out *pick, int sampled) {
    lm_backend *be = c->m->be;
    int V = c->m->cfg.vocab;
    if (sampled || be->ops->argmax) {
        be->ops->download(be, pick, c->pick_d, sizeof *pick);
        return;
    }
    be->ops->download(be, c->logits_host, c->logits, (size_t)V * sizeof(float));
    pick->token = lm_argmax_log_softmax(c->logits_host, V, &pick->logprob);
}

/* Final norm and the head for n_out rows of c->x from `first`, in blocks of LM_LOGIT_ROWS rows
 * computed in backend memory and downloaded into out->logits; or, for one row, its greedy or
 * sampled pick into out->pick. A recorded step ends before the first download (after the argmax
 * op; the sample op, which takes a new draw each step, runs after it). */
static void head(lm_ctx *c, int first, int n_out, const lm_fwd_out *out, int recording) {
    lm_model *m = c->m;
    const lm_config *cfg = &m->cfg;
    lm_backend *be = m->be;
    const lm_backend_ops *op = be->ops;
    int H = cfg->hidden, V = cfg->vocab;
    const float *x = c->x + (size_t)first * H;
    const lm_linear *hw = &m->head;
    float eps = (float)cfg->norm_eps;
    /* one row: the norm inside the head's matvec where the backend can */
    int normed = n_out == 1 && op->norm_matvec_n && op->norm_matvec_n(be, m->final_norm, eps, 1, &hw, x, &c->logits);
    if (!normed)
        op->rmsnorm(be, x, m->final_norm, n_out, H, eps, c->h);
    for (int r0 = 0; r0 < n_out; r0 += LM_LOGIT_ROWS) {
        int nr = n_out - r0 < LM_LOGIT_ROWS ? n_out - r0 : LM_LOGIT_ROWS;
        if (!normed)
            op->linear(be, &m->head, c->h + (size_t)r0 * H, nr, c->logits);
        if (cfg->final_softcap > 0)
            op->softcap(be, c->logits, (float)cfg->final_softcap, (size_t)nr * V);
        if (out->pick && out->n_edits) /* (lm_ctx_eval_pick checked the op; not recorded) */
            op->edit_logits(be, c->logits, out->edits, out->n_edits);
        if (out->pick && !out->sample && op->argmax)
            op->argmax(be, c->logits, V, c->pick_d);
        if (recording && r0 == 0)
            op->record_end(be, 1);
        if (out->pick && out->sample) /* (lm_ctx_eval_pick checked the op) */
            op->sample(be, c->logits, V, out->sample, c->pick_d);
        if (out->pick)
            download_pick(c, out->pick, out->sample != NULL);
        else
            op->download(be, out->logits + (size_t)r0 * V, c->logits, (size_t)nr * V * sizeof(float));
    }
}

lm_status lm_decoder_forward(lm_ctx *c, const int32_t *ids, int T, const lm_fwd_out *out) {
    lm_model *m = c->m;
    const lm_config *cfg = &m->cfg;
    lm_backend *be = m->be;
    const lm_backend_ops *op = be->ops;
    int V = cfg->vocab;
    if (T <= 0)
        return lm_err(LM_ERR_INVALID_ARG, "no tokens to evaluate");
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= V)
            return lm_err(LM_ERR_INVALID_ARG, "token id %d out of range [0, %d)", ids[t], V);
    if (c->n_past + T > c->max_tokens && c->params.max_kv_size == 0)
        return lm_err(LM_ERR_CONTEXT, "%d tokens after %d exceed the context of %d tokens", T, c->n_past,
                      c->max_tokens);
    LM_TRY(reserve(c, T));
    int recording = !(out && out->n_edits) && record_step(c, T);
    upload_inputs(c, ids, T);

    op->embed(be, &m->embed, c->ids_d, T, m->embed_scale, c->x);
    int altup = m->altup_proj != NULL;
    if (altup)
        lm_altup_embed(c, c->ids_d, T);
    int pending = 0; /* x += o still to do (residual_layer) */
    c->h_norm = NULL;
    for (int l = 0; l < cfg->n_layers; l++) {
        lm_status st = altup ? lm_altup_layer_forward(c, l, T) : residual_layer(c, l, T, &pending);
        if (st != LM_OK) { /* only allocation can fail here: the sequence cannot continue */
            if (recording)
                op->record_end(be, 0);
            lm_ctx_reset(c);
            return lm_err_prefix(st, "the sequence was reset");
        }
    }
    if (altup)
        lm_altup_unembed(c, T);
    if (pending)
        op->add(be, c->x, c->o, (size_t)T * cfg->hidden);

    /* final norm and the head, for every token or the last one */
    if (out && (out->logits || out->pick)) {
        int first = out->all_logits && !out->pick ? 0 : T - 1;
        head(c, first, T - first, out, recording);
    } else if (recording) {
        op->record_end(be, 1);
    }
    lm_status st = backend_status(be);
    if (st != LM_OK) { /* a device failure: the cache may hold partial rows */
        lm_ctx_reset(c);
        return lm_err_prefix(st, "the sequence was reset");
    }
    c->n_past += T;
    /* mlx-lm quantizes the cache after the step that passes quantized_kv_start */
    if (c->params.kv_bits && !lm_kv_packed(&c->kv) && c->n_past > c->params.quantized_kv_start)
        LM_TRY(lm_kv_quantize(&c->kv, c->params.kv_bits, c->params.kv_group_size));
    return LM_OK;
}
