/* A model family is data: which model_types it serves, where its weights are, and the
 * features of its blocks. One generic decoder (decoder.c) runs every definition. */
#ifndef LM_MODELS_MODEL_DEF_H
#define LM_MODELS_MODEL_DEF_H
#include "io/config.h"

/* Tensor names. Layer entries are relative to "<base>layers.<i>."; embed/final_norm to
 * "<base>"; lm_head is tried under each head prefix. NULL: the family has no such tensor. */
typedef struct lm_names {
    const char *q, *k, *v, *o, *qkv;         /* attention projections (qkv: fused q|k|v rows) */
    const char *q_norm, *k_norm, *sinks;
    const char *gate, *up, *down, *gate_up;  /* MLP (gate_up: fused gate|up rows) */
    const char *attn_norm, *ffn_norm;        /* pre-attention, pre-MLP norms */
    const char *post_attn_norm, *post_ffn_norm; /* sandwich norms */
    const char *embed, *final_norm, *lm_head;
    /* mixture of experts (relative to the layer prefix) */
    const char *router;          /* [E, H] (+ bias) */
    const char *expert;          /* per-expert modules "<expert><index>.gate_proj", ... */
    const char *switch_mlp;      /* stacked [E, out, in] modules (MLX): "<switch_mlp>gate_proj" */
    const char *experts_fused;   /* GPT-OSS: "<experts_fused>gate_up_proj" [E, H, 2I] (gate = even
                                    columns) and "down_proj" [E, I, H], with "_bias" tensors */
} lm_names;

/* Block features. */
enum {
    LM_F_QK_NORM = 1u << 0,      /* per-head RMSNorm of q and k before RoPE */
    LM_F_SANDWICH = 1u << 1,     /* norms after attention and after the MLP, before the residual add */
    LM_F_EMBED_SCALE = 1u << 2,  /* embeddings × √hidden */
    LM_F_FUSED_QKV = 1u << 3,    /* one qkv projection */
    LM_F_FUSED_GATE_UP = 1u << 4,/* one gate|up projection */
    LM_F_QKV_BIAS = 1u << 5,     /* q, k, v carry a bias whatever attention_bias says (Qwen2) */
    LM_F_NORM_PLUS1 = 1u << 6,   /* RMSNorm scales by (1 + w) (Gemma) */
    LM_F_SINKS = 1u << 7,        /* a learned per-head logit joins every softmax (GPT-OSS) */
    LM_F_MOE_TOPK_SOFTMAX = 1u << 8, /* router: softmax over the top-k logits (GPT-OSS) instead of
                                        top-k of the softmax (Qwen3-MoE, norm_topk_prob optional) */
    LM_F_V_NORM = 1u << 9,       /* per-head RMSNorm (no weight) of v (Gemma 3n) */
    LM_F_ALTUP = 1u << 10,       /* Gemma 3n: AltUp streams, Laurel residual, per-layer inputs
                                    (decoder_altup.c); unit attention scale */
};

typedef struct lm_model_def {
    const char *family;
    const char *const *model_types; /* NULL-terminated */
    const lm_names *names;
    unsigned features;
    /* optional: family-specific config fix-ups after parsing (NULL: none) */
    lm_status (*adjust)(lm_config *cfg);
} lm_model_def;

/* The defaults every family starts from (Llama naming). */
#define LM_LLAMA_NAMES                                                                          \
    .q = "self_attn.q_proj", .k = "self_attn.k_proj", .v = "self_attn.v_proj",                 \
    .o = "self_attn.o_proj", .gate = "mlp.gate_proj", .up = "mlp.up_proj",                     \
    .down = "mlp.down_proj", .attn_norm = "input_layernorm",                                   \
    .ffn_norm = "post_attention_layernorm", .embed = "embed_tokens", .final_norm = "norm",     \
    .lm_head = "lm_head"

const lm_model_def *lm_model_def_find(const char *model_type);
/* "llama, mistral, ..." */
void lm_model_def_list(char *buf, size_t cap);

#endif
