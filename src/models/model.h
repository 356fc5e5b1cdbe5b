/* A loaded model: config, definition, mapped weights resolved into per-layer roles. */
#ifndef LM_MODELS_MODEL_H
#define LM_MODELS_MODEL_H
#include "backend/backend.h"
#include "cache/kv_cache.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "layers/linear.h"
#include "layers/rope.h"
#include "models/model_def.h"

typedef struct lm_moe {
    int n_experts, top_k;
    int topk_softmax;             /* softmax over the chosen logits (else top-k of the softmax) */
    int norm_topk;                /* renormalise the chosen probabilities */
    int intermediate;
    lm_linear router;             /* [E, H] (+ bias) */
    lm_linear *gate, *up, *down;  /* [E] each: [I, H], [I, H], [H, I] */
} lm_moe;

/* Gemma 3n per-layer parts: AltUp predict/correct, Laurel, per-layer input gate. */
typedef struct lm_altup_layer {
    const float *correct_scale;   /* [H] */
    float *pred_coefs;            /* [n*n, n] */
    float *corr_coefs;            /* [n, n], clipped to altup_coef_clip */
    lm_linear pred, corr;         /* the two above as f32 linears: [n*n, n], [n, n] */
    lm_linear router;             /* [n, H] */
    const float *router_norm;     /* [H] */
    lm_linear laurel_left, laurel_right; /* [r, H], [H, r] */
    const float *laurel_norm;     /* [H] */
    lm_linear pli_gate, pli_proj; /* [hpl, H], [H, hpl] */
    const float *pli_norm;        /* [H] */
} lm_altup_layer;

typedef struct lm_layer {
    lm_linear q, k, v, o;         /* [n_heads*hd, H], [n_kv*hd, H] x2, [H, n_heads*hd] */
    lm_linear gate, up, down;     /* [I, H], [I, H], [H, I] */
    const float *attn_norm, *ffn_norm;            /* [H] */
    const float *post_attn_norm, *post_ffn_norm;  /* [H] or NULL */
    const float *q_norm, *k_norm;                 /* [hd] or NULL */
    const float *sinks;                           /* [n_heads] or NULL */
    lm_moe *moe;                  /* NULL: the dense MLP above */
    lm_altup_layer *altup;        /* Gemma 3n, else NULL */
    int kv_source;                /* the layer whose KV cache this layer reads (itself unless shared) */
    int v_norm;                   /* RMSNorm (unit weight) of v per head */
    float sparsity_mult;          /* > 0: gelu_topk cutoff = mean + mult * std of the gate (Gemma 3n) */
    int sliding;                  /* uses the sliding window and the sliding rope */
    int no_rope;
    int intermediate;
} lm_layer;

struct lm_model {
    lm_config cfg;
    const lm_model_def *def;
    lm_st_set *st;
    lm_backend *be;
    char dir[4096];
    char base[64];                /* weight name prefix of the text model, e.g. "model." */
    lm_linear embed;              /* [V, H] */
    lm_linear head;               /* [V, H] (the embedding when tied) */
    const float *final_norm;      /* [H] */
    lm_layer *layers;             /* [n_layers] */
    lm_rope rope_full, rope_sliding;
    float embed_scale, attn_scale;
    int64_t n_params;
    int max_in;                   /* widest input of any linear (scratch sizing) */
    int max_experts, max_topk;    /* MoE sizing (0: dense) */
    /* Gemma 3n model-level parts */
    lm_linear *altup_proj, *altup_unembed; /* [n-1] each: [H, H] */
    lm_linear ple_embed;          /* [V_pl, L*hpl] per-layer embeddings */
    lm_linear ple_proj;           /* [L*hpl, H] */
    const float *ple_norm;        /* [hpl] */
    /* small f32 tensors converted at load (norms, biases) */
    float **owned;
    size_t *owned_bytes;          /* [n_owned] */
    int n_owned, cap_owned;
    /* backend copies of the weights (device backends): the files' mappings, then owned[] */
    void **dev_regions;
    int n_dev_regions;
    char weight_fmt[80];          /* the checkpoint's format (lm_model_info.weight_dtype), before a
                                     device backend stores bf16 as f16 */
};

/* Per-sequence state: the KV cache and activation buffers for up to cap_T tokens per call. */
struct lm_ctx {
    lm_model *m;
    lm_ctx_params params;
    lm_kv_cache kv;
    int n_past, max_tokens;
    int cap_T;
    /* backend memory */
    float *x, *h, *q, *k, *v, *att, *o, *gate, *up, *act; /* activations */
    float *logits;                /* [LM_LOGIT_ROWS, V] a block of head outputs */
    float *cs;                    /* rope tables [2, cap_T, rot_dim] */
    float *moe_logits, *moe_x, *moe_y; /* [cap_T, E], [cap_T, H], [cap_T, H] */
    int32_t *moe_idx_d;           /* [cap_T, top_k] chosen experts */
    float *moe_w;                 /* [cap_T, top_k] their weights */
    int32_t *moe_rows_d;          /* [cap_T * top_k] token of each routed row, grouped by expert */
    float *moe_rw_d;              /* [cap_T * top_k] weight of each routed row */
    float *cs_full, *cs_slide;    /* this call's rope tables (inside cs) */
    const float *h_norm;          /* not NULL: h is rmsnorm(x) * h_norm, not yet computed (a backend's
                                   * norm_matvec ops may apply it on their way; decoder.c) */
    float *streams, *pred;        /* Gemma 3n: [n, cap_T, H] each */
    float *ple, *ple_emb;         /* Gemma 3n: [cap_T, L*hpl] per-layer inputs, per-layer embeddings */
    float *small;                 /* Gemma 3n: router outputs, coefficients and row scratch */
    int32_t *ids_d, *pos_d;       /* [cap_T] token ids and positions */
    lm_argmax_out *pick_d;        /* [1] the greedy pick of the last token */
    /* host memory */
    int32_t *pos;                 /* [cap_T] */
    float *cs_host;               /* [2, cap_T, rot_dim] rope tables before upload */
    int32_t *moe_idx;             /* [cap_T, top_k] */
    float *moe_wh;                /* [cap_T, top_k] */
    int32_t *moe_rows;            /* [cap_T * top_k] as moe_rows_d */
    float *moe_rw;                /* [cap_T * top_k] as moe_rw_d */
    float *logits_host;           /* [V] the logits the host picks from when the backend has no argmax op */
};

#define LM_LOGIT_ROWS 64

lm_status lm_model_resolve(lm_model *m);    /* model_load.c */
/* What a forward pass hands back: nothing (NULL or all fields 0), logits, or the greedy pick. */
typedef struct lm_fwd_out {
    float *logits;                /* [vocab] of the last token, or [T, vocab] with all_logits */
    int all_logits;
    lm_argmax_out *pick;          /* the last token's greedy pick (lm_argmax_log_softmax); logits unused */
    const lm_sample_args *sample; /* with pick: sampled instead (the backend's sample op) */
    const lm_logit_op *edits;     /* with pick: these changes first (the backend's edit_logits op) */
    int n_edits;
} lm_fwd_out;
lm_status lm_decoder_forward(struct lm_ctx *ctx, const int32_t *ids, int T, const lm_fwd_out *out);
/* api.c: lm_ctx_eval, then the pick of the last token's next one where its logits are, after
 * the logit changes ops[0 .. n_ops) (the backend's edit_logits op): greedy (a NULL: as
 * lm_ctx_eval_greedy) or with the sampler chain `a` (the backend's sample op).
 * LM_ERR_UNSUPPORTED when the backend lacks an op it needs (lm_ctx_samples_in_place,
 * lm_ctx_edits_in_place). */
lm_status lm_ctx_eval_pick(struct lm_ctx *c, const int32_t *ids, int n, const lm_sample_args *a,
                           const lm_logit_op *ops, int n_ops, int32_t *token, float *logprob);
int lm_ctx_samples_in_place(const struct lm_ctx *c);
int lm_ctx_edits_in_place(const struct lm_ctx *c);
/* decoder.c: free the activation buffers (lm_ctx_free). */
void lm_ctx_release_buffers(struct lm_ctx *c);
/* decoder.c: self-attention of layer l on c->h (normed, or c->h_norm) into c->o, after o_proj and
 * the post-attention norm when the layer has one; with resid, added into resid instead (c->o is
 * then undefined). */
lm_status lm_attention(struct lm_ctx *c, int l, int T, float *resid);
/* decoder.c: the MLP (dense or experts) of layer l on c->h (as lm_attention) into c->o, no
 * norms; with resid, added into resid instead. */
void lm_mlp(struct lm_ctx *c, int l, int T, float *resid);
/* model_device.c: give a device backend its copies of the weights (a no-op for host backends). */
lm_status lm_model_upload(lm_model *m);
void lm_model_release_device(lm_model *m);
/* decoder_altup.c (Gemma 3n) */
void lm_altup_embed(struct lm_ctx *c, const int32_t *ids, int T);
lm_status lm_altup_layer_forward(struct lm_ctx *c, int l, int T);
void lm_altup_unembed(struct lm_ctx *c, int T); /* streams -> c->x */

#endif
