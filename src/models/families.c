/* The dense families: each a short declaration over the shared decoder. */
#include <stdio.h>
#include <string.h>

#include "models/model_def.h"

/* --- Llama 3.x, Mistral (and Mistral 3's text model) ----------------------------------------- */
static const lm_names LLAMA_NAMES = {LM_LLAMA_NAMES};
static const char *const LLAMA_TYPES[] = {"llama", "mistral", NULL};
static const lm_model_def LLAMA = {
    .family = "llama", .model_types = LLAMA_TYPES, .names = &LLAMA_NAMES,
};

/* Mistral 3 is a vision-language checkpoint; its text_config is a Mistral model and the
 * vision tower / projector weights are ignored. */
static const char *const MISTRAL3_TYPES[] = {"mistral3", NULL};
static const lm_model_def MISTRAL3 = {
    .family = "mistral3", .model_types = MISTRAL3_TYPES, .names = &LLAMA_NAMES,
};

/* --- Qwen2 / Qwen2.5: q/k/v bias ------------------------------------------------------------- */
static const char *const QWEN2_TYPES[] = {"qwen2", NULL};
static const lm_model_def QWEN2 = {
    .family = "qwen2", .model_types = QWEN2_TYPES, .names = &LLAMA_NAMES, .features = LM_F_QKV_BIAS,
};

/* --- Qwen3: per-head q/k RMSNorm ------------------------------------------------------------- */
static const lm_names QWEN3_NAMES = {LM_LLAMA_NAMES, .q_norm = "self_attn.q_norm", .k_norm = "self_attn.k_norm"};
static const char *const QWEN3_TYPES[] = {"qwen3", NULL};
static const lm_model_def QWEN3 = {
    .family = "qwen3", .model_types = QWEN3_TYPES, .names = &QWEN3_NAMES, .features = LM_F_QK_NORM,
};

/* --- Phi-3 / Phi-4: fused qkv and gate_up, longrope, partial rotary ---------------------------- */
static const lm_names PHI3_NAMES = {LM_LLAMA_NAMES, .qkv = "self_attn.qkv_proj", .gate_up = "mlp.gate_up_proj"};
static const char *const PHI3_TYPES[] = {"phi3", NULL};
static const lm_model_def PHI3 = {
    .family = "phi3", .model_types = PHI3_TYPES, .names = &PHI3_NAMES,
    .features = LM_F_FUSED_QKV | LM_F_FUSED_GATE_UP,
};

/* --- SmolLM3: Llama with NoPE layers (no_rope_layers, parsed into lm_config) -------------------- */
static const char *const SMOLLM3_TYPES[] = {"smollm3", NULL};
static const lm_model_def SMOLLM3 = {
    .family = "smollm3", .model_types = SMOLLM3_TYPES, .names = &LLAMA_NAMES,
};

/* --- Gemma 3: (1+w) norms everywhere, sandwich norms, q/k norms, √hidden embedding scale,
 * gelu-tanh MLP, sliding layers with their own unscaled rope base (parsed into lm_config) --- */
static const lm_names GEMMA3_NAMES = {
    LM_LLAMA_NAMES, .q_norm = "self_attn.q_norm", .k_norm = "self_attn.k_norm",
    .ffn_norm = "pre_feedforward_layernorm", .post_attn_norm = "post_attention_layernorm",
    .post_ffn_norm = "post_feedforward_layernorm",
};
static const char *const GEMMA3_TYPES[] = {"gemma3_text", "gemma3", NULL};
static const lm_model_def GEMMA3 = {
    .family = "gemma3", .model_types = GEMMA3_TYPES, .names = &GEMMA3_NAMES,
    .features = LM_F_QK_NORM | LM_F_SANDWICH | LM_F_EMBED_SCALE | LM_F_NORM_PLUS1,
};

/* --- Qwen3-MoE: Qwen3 attention, softmax router + top-k experts (per-expert or MLX stacked) --- */
static const lm_names QWEN3_MOE_NAMES = {
    LM_LLAMA_NAMES, .q_norm = "self_attn.q_norm", .k_norm = "self_attn.k_norm",
    .router = "mlp.gate", .expert = "mlp.experts.", .switch_mlp = "mlp.switch_mlp.",
};
static const char *const QWEN3_MOE_TYPES[] = {"qwen3_moe", NULL};
static const lm_model_def QWEN3_MOE = {
    .family = "qwen3_moe", .model_types = QWEN3_MOE_TYPES, .names = &QWEN3_MOE_NAMES, .features = LM_F_QK_NORM,
};

/* --- GPT-OSS: sinks, biased attention, alternating sliding/full layers, yarn, biased router with
 * softmax over the top-k, clamped swiglu experts --- */
static const lm_names GPT_OSS_NAMES = {
    LM_LLAMA_NAMES, .sinks = "self_attn.sinks", .router = "mlp.router", .experts_fused = "mlp.experts.",
    .switch_mlp = "mlp.experts.",
};
static const char *const GPT_OSS_TYPES[] = {"gpt_oss", NULL};
static lm_status gpt_oss_adjust(lm_config *c) {
    c->act = LM_ACT_SWIGLU_OAI;
    if (c->swiglu_limit <= 0)
        c->swiglu_limit = 7.0;
    return LM_OK;
}
static const lm_model_def GPT_OSS = {
    .family = "gpt_oss", .model_types = GPT_OSS_TYPES, .names = &GPT_OSS_NAMES,
    .features = LM_F_SINKS | LM_F_MOE_TOPK_SOFTMAX, .adjust = gpt_oss_adjust,
};

/* --- Gemma 3n: Gemma 3 attention with a v norm and plain-w norms, AltUp streams, Laurel,
 * per-layer inputs, KV sharing (num_kv_shared_layers), gelu_topk sparsity (parsed into lm_config) --- */
static const char *const GEMMA3N_TYPES[] = {"gemma3n_text", "gemma3n", NULL};
static const lm_model_def GEMMA3N = {
    .family = "gemma3n", .model_types = GEMMA3N_TYPES, .names = &GEMMA3_NAMES,
    .features = LM_F_QK_NORM | LM_F_SANDWICH | LM_F_EMBED_SCALE | LM_F_V_NORM | LM_F_ALTUP,
};

static const lm_model_def *const REGISTRY[] = {&LLAMA, &MISTRAL3, &QWEN2, &QWEN3, &PHI3, &SMOLLM3, &GEMMA3,
                                               &QWEN3_MOE, &GPT_OSS, &GEMMA3N};
#define N_DEFS (sizeof REGISTRY / sizeof REGISTRY[0])

const lm_model_def *lm_model_def_find(const char *model_type) {
    for (size_t i = 0; i < N_DEFS; i++)
        for (const char *const *t = REGISTRY[i]->model_types; *t; t++)
            if (strcmp(*t, model_type) == 0)
                return REGISTRY[i];
    return NULL;
}

void lm_model_def_list(char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < N_DEFS; i++)
        for (const char *const *t = REGISTRY[i]->model_types; *t; t++) {
            int w = snprintf(buf + n, cap > n ? cap - n : 0, "%s%s", n ? ", " : "", *t);
            if (w > 0)
                n += (size_t)w;
        }
}
