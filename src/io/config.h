/* config.json -> lm_config: both Hugging Face styles (4.x rope_theta/rope_scaling, 5.x
 * rope_parameters, possibly per layer type), text_config nesting, MLX quantization blocks. */
#ifndef LM_IO_CONFIG_H
#define LM_IO_CONFIG_H
#include <cjson/cJSON.h>
#include <stdint.h>

#include "core/status.h"

#define LM_MAX_LAYERS 256
#define LM_MAX_ROPE_FACTORS 512

typedef enum {
    LM_ROPE_DEFAULT, LM_ROPE_LINEAR, LM_ROPE_DYNAMIC, LM_ROPE_YARN, LM_ROPE_LONGROPE, LM_ROPE_LLAMA3,
    LM_ROPE_COUNT
} lm_rope_type;

extern const char *const LM_ROPE_NAMES[LM_ROPE_COUNT];

typedef struct lm_rope_cfg {
    lm_rope_type type;
    double theta;
    double partial;            /* partial_rotary_factor */
    double factor;             /* scaling factor (linear, dynamic, yarn, llama3, longrope) */
    int original_max;          /* original_max_position_embeddings */
    double low_freq_factor, high_freq_factor;       /* llama3 */
    double beta_fast, beta_slow, mscale, mscale_all_dim; /* yarn */
    int truncate;                                   /* yarn: floor/ceil the correction range */
    double attention_factor;   /* < 0: derive */
    int n_long, n_short;       /* longrope factors */
    double long_factor[LM_MAX_ROPE_FACTORS], short_factor[LM_MAX_ROPE_FACTORS];
} lm_rope_cfg;

typedef enum {
    LM_ACT_SILU, LM_ACT_GELU_TANH, LM_ACT_GELU,
    LM_ACT_SWIGLU_OAI, /* GPT-OSS: gate clamped above at limit, up to [-limit, limit],
                          gate * sigmoid(1.702 gate) * (up + 1) */
    LM_ACT_COUNT
} lm_act;

typedef struct lm_quant_cfg {
    int bits, group_size; /* 0: not quantized */
    int mxfp4;            /* mode "mxfp4" */
} lm_quant_cfg;

typedef struct lm_config {
    char model_type[64];      /* of the text model */
    char outer_model_type[64];/* of config.json's top level (e.g. "mistral3") */
    int hidden, n_layers, n_heads, n_kv_heads, head_dim, intermediate, vocab;
    int max_pos;
    double norm_eps;
    int tie_embeddings;       /* -1: not stated */
    int attention_bias, mlp_bias;
    lm_act act;
    /* attention variants */
    int sliding_window;       /* 0: none */
    uint8_t layer_sliding[LM_MAX_LAYERS];
    uint8_t layer_no_rope[LM_MAX_LAYERS];
    double query_pre_attn_scalar; /* 0: head_dim */
    double attn_softcap, final_softcap; /* 0: off */
    lm_rope_cfg rope_full, rope_sliding;
    /* MoE */
    int n_experts, n_experts_per_tok, moe_intermediate, norm_topk_prob, decoder_sparse_step;
    uint8_t layer_dense_mlp[LM_MAX_LAYERS]; /* mlp_only_layers */
    double swiglu_limit;
    /* Gemma 3n */
    int layer_intermediate[LM_MAX_LAYERS];
    float layer_act_sparsity[LM_MAX_LAYERS];
    int altup_num_inputs, altup_active_idx, altup_correct_scale, laurel_rank;
    double altup_coef_clip;
    int hidden_per_layer_input, vocab_per_layer_input, num_kv_shared_layers;
    /* ids */
    int bos_id;               /* -1: none */
    int n_eos;
    int eos_ids[8];
    /* quantization (MLX "quantization"/"quantization_config"); overrides are looked up by module */
    lm_quant_cfg quant;
    const cJSON *quant_json;
    /* the parsed documents, for family-specific keys */
    cJSON *root;
    const cJSON *text;        /* text_config, or root */
    char path[4096];          /* config.json path, for messages */
} lm_config;

/* Parse DIR/config.json. */
lm_status lm_config_load(const char *dir, lm_config *cfg);
/* Parse config text (exposed for fuzzing); `path` names it in messages. */
lm_status lm_config_parse(const char *text, size_t len, const char *path, lm_config *cfg);
void lm_config_free(lm_config *cfg);
/* Quantization of one module ("model.layers.0.mlp.down_proj"), honouring per-module overrides. */
lm_quant_cfg lm_config_quant_for(const lm_config *cfg, const char *module);

#endif
