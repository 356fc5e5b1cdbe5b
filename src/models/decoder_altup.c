/* Gemma 3n's layer flow: the hidden state is n AltUp streams; each layer predicts all streams
 * from the active one, runs attention (with a Laurel low-rank residual) and the MLP on the
 * active prediction, corrects every stream with the innovation, and feeds a per-layer input
 * (token embedding + projection) back into the inactive streams. Semantics follow
 * transformers' Gemma3nTextModel. Every step runs through the backend's ops. */
#include <math.h>

#include "models/model.h"

/* --- helpers --------------------------------------------------------------------------------------- */

/* modalities[t, n] = tanh(router(router_norm(x) / H)) */
static void router_modalities(lm_ctx *c, const lm_altup_layer *A, const float *x, int T, float *tmp, float *mod) {
    lm_model *m = c->m;
    lm_backend *be = m->be;
    int H = m->cfg.hidden, n = m->cfg.altup_num_inputs;
    be->ops->rmsnorm(be, x, A->router_norm, T, H, (float)m->cfg.norm_eps, tmp);
    be->ops->scale(be, tmp, 1.0f / (float)H, (size_t)T * H);
    be->ops->linear(be, &A->router, tmp, T, mod);
    be->ops->softcap(be, mod, 1.0f, (size_t)T * n); /* tanh */
}

/* --- embedding and unembedding --------------------------------------------------------------------- */

void lm_altup_embed(lm_ctx *c, const int32_t *ids, int T) {
    lm_model *m = c->m;
    const lm_config *cfg = &m->cfg;
    lm_backend *be = m->be;
    const lm_backend_ops *op = be->ops;
    int H = cfg->hidden, n = cfg->altup_num_inputs, L = cfg->n_layers, P = cfg->hidden_per_layer_input;
    size_t TH = (size_t)T * H;
    /* stream 0: the embeddings; streams 1..n-1: projections rescaled to their magnitude */
    op->copy(be, c->streams, c->x, TH * sizeof(float));
    for (int i = 1; i < n; i++) {
        float *s = c->streams + (size_t)i * TH;
        op->linear(be, &m->altup_proj[i - 1], c->x, T, s);
        op->rms_match(be, s, c->x, T, H);
    }
    /* per-layer inputs: (norm(proj(embeds) / sqrt(H)) + embed_per_layer(ids) * sqrt(P)) / sqrt(2) */
    size_t n_ple = (size_t)T * L * P;
    op->linear(be, &m->ple_proj, c->x, T, c->ple);
    op->scale(be, c->ple, 1.0f / sqrtf((float)H), n_ple);
    op->rmsnorm(be, c->ple, m->ple_norm, T * L, P, (float)cfg->norm_eps, c->ple);
    op->embed(be, &m->ple_embed, ids, T, sqrtf((float)P), c->ple_emb);
    op->add(be, c->ple, c->ple_emb, n_ple);
    op->scale(be, c->ple, (float)M_SQRT1_2, n_ple);
}

void lm_altup_unembed(lm_ctx *c, int T) {
    lm_model *m = c->m;
    lm_backend *be = m->be;
    int H = m->cfg.hidden, n = m->cfg.altup_num_inputs;
    size_t TH = (size_t)T * H;
    /* x = mean(stream 0, unembed_i(stream i) rescaled to stream 0's magnitude) */
    be->ops->copy(be, c->x, c->streams, TH * sizeof(float));
    for (int i = 1; i < n; i++) {
        be->ops->linear(be, &m->altup_unembed[i - 1], c->streams + (size_t)i * TH, T, c->h);
        be->ops->rms_match(be, c->h, c->streams, T, H);
        be->ops->add(be, c->x, c->h, TH);
    }
    be->ops->scale(be, c->x, 1.0f / (float)n, TH);
}

/* --- one layer ---------------------------------------------------------------------------------------- */

lm_status lm_altup_layer_forward(lm_ctx *c, int l, int T) {
    lm_model *m = c->m;
    const lm_config *cfg = &m->cfg;
    const lm_layer *Ly = &m->layers[l];
    const lm_altup_layer *A = Ly->altup;
    lm_backend *be = m->be;
    const lm_backend_ops *op = be->ops;
    int H = cfg->hidden, n = cfg->altup_num_inputs, act = cfg->altup_active_idx, P = cfg->hidden_per_layer_input;
    int L = cfg->n_layers;
    size_t TH = (size_t)T * H;
    float eps = (float)cfg->norm_eps;
    float *mod = c->small;                    /* [T, n] */
    float *coef = mod + (size_t)T * n;        /* [T, n*n] */
    float *laurel = coef + (size_t)T * n * n; /* [T, H] */
    float *tmp = laurel + TH;                 /* [T, H] */
    float *active = tmp + TH;                 /* [T, H] */
    float *rbuf = active + TH;                /* [T, R + P] */
    float *pl_in = rbuf + (size_t)T * (cfg->laurel_rank + P); /* [T, P] */

    /* predict: pred[b] = x[b] + sum_a C[t][b][a] x[a], C = reshape(pred_coefs(modalities)) */
    router_modalities(c, A, c->streams + (size_t)act * TH, T, tmp, mod);
    op->linear(be, &A->pred, mod, T, coef);
    op->altup_predict(be, c->streams, coef, n, T, H, c->pred);
    op->copy(be, active, c->pred + (size_t)act * TH, TH * sizeof(float));

    /* attention on the normed active prediction, with the Laurel residual beside it */
    op->rmsnorm(be, active, Ly->attn_norm, T, H, eps, c->h);
    op->linear(be, &A->laurel_left, c->h, T, rbuf);
    op->linear(be, &A->laurel_right, rbuf, T, laurel);
    op->rmsnorm(be, laurel, A->laurel_norm, T, H, eps, laurel);
    op->add(be, laurel, c->h, TH);
    LM_TRY(lm_attention(c, l, T, NULL)); /* c->o = post_attention_norm(attn) */
    op->copy(be, c->x, active, TH * sizeof(float)); /* (active + attn + laurel) / sqrt(2) */
    op->add(be, c->x, c->o, TH);
    op->add(be, c->x, laurel, TH);
    op->scale(be, c->x, (float)M_SQRT1_2, TH);

    /* MLP */
    op->rmsnorm(be, c->x, Ly->ffn_norm, T, H, eps, c->h);
    lm_mlp(c, l, T, NULL);
    op->rmsnorm(be, c->o, Ly->post_ffn_norm, T, H, eps, c->o);
    op->add(be, c->x, c->o, TH); /* the activated state */

    /* correct: stream[i] = pred[i] + (activated - pred[active]) * (corr_coefs(modalities) + 1)[i] */
    router_modalities(c, A, c->x, T, tmp, mod);
    op->linear(be, &A->corr, mod, T, coef); /* [T, n] */
    op->altup_correct(be, c->streams, c->pred, c->x, active, coef, n, T, H);

    /* per-layer input: gate the (scaled) active stream, multiply by this layer's input, project,
     * norm, and add to every inactive stream */
    op->copy(be, tmp, c->streams + (size_t)act * TH, TH * sizeof(float));
    if (cfg->altup_correct_scale)
        op->mul_rows(be, tmp, A->correct_scale, T, H);
    op->linear(be, &A->pli_gate, tmp, T, rbuf);
    op->copy_rows(be, pl_in, (size_t)P, c->ple + (size_t)l * P, (size_t)L * P, T, P);
    op->glu(be, rbuf, pl_in, P, T, P, cfg->act, 0.0f, rbuf);
    op->linear(be, &A->pli_proj, rbuf, T, tmp);
    op->rmsnorm(be, tmp, A->pli_norm, T, H, eps, tmp);
    for (int i = 1; i < n; i++) /* transformers adds to streams 1.. (the active one is 0) */
        op->add(be, c->streams + (size_t)i * TH, tmp, TH);
    return LM_OK;
}
