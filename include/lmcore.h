/* lmcore — LLM inference in C. The one public header.
 *
 * Conventions
 *  - Every fallible function returns lm_status: LM_OK (0) or a negative error code.
 *  - After a failure, lm_last_error() returns a message for this thread naming the file,
 *    tensor or option at fault. The library owns the string; it stays valid until the next
 *    failing call on the same thread.
 *  - Constructors fill an OUT parameter. On failure the OUT parameter is set to NULL and
 *    nothing needs to be freed.
 *  - Params structs start with `size_t size`; get them from lm_*_default_params().
 *  - The library never aborts or exits on bad input.
 */
#ifndef LMCORE_H
#define LMCORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --- status ------------------------------------------------------------------------- */

typedef int lm_status;
enum {
    LM_OK = 0,
    LM_ERR_INVALID_ARG = -1, /* a bad argument or option value */
    LM_ERR_IO = -2,          /* a file could not be opened, read or mapped */
    LM_ERR_FORMAT = -3,      /* a file is malformed (JSON, safetensors, tokenizer) */
    LM_ERR_UNSUPPORTED = -4, /* valid input this build does not support (architecture, dtype) */
    LM_ERR_MISSING = -5,     /* a required tensor, key or file is absent */
    LM_ERR_SHAPE = -6,       /* a tensor's shape or dtype disagrees with the config */
    LM_ERR_NOMEM = -7,       /* allocation failed */
    LM_ERR_CANCELLED = -8,   /* a callback asked to stop */
    LM_ERR_CONTEXT = -9,     /* the sequence does not fit the context/cache */
    LM_ERR_DEVICE = -10,     /* accelerator error (no device, out of device memory, launch) */
    LM_ERR_TEMPLATE = -11,   /* chat template syntax or runtime error */
    LM_ERR_INTERNAL = -12,
    LM_ERR_COUNT_ = -13      /* sentinel; new codes are appended above it */
};

/* A static, handle-free description of a status code. */
const char *lm_status_str(lm_status status);
/* The message of the last failure on this thread ("" when none). */
const char *lm_last_error(void);

/* --- model ---------------------------------------------------------------------------- */

typedef struct lm_model lm_model;

typedef enum { LM_DEVICE_CPU = 0, LM_DEVICE_CUDA = 1, LM_DEVICE_COUNT_ } lm_device;

typedef struct lm_model_params {
    size_t size;       /* sizeof(lm_model_params) */
    int n_threads;     /* 0: one per physical core */
    lm_device device;  /* LM_DEVICE_CPU */
} lm_model_params;

lm_model_params lm_model_default_params(void);

/* Load a Hugging Face / MLX model directory (config.json + safetensors). */
lm_status lm_model_load(const char *dir, const lm_model_params *params, lm_model **out);
void lm_model_free(lm_model *model);

typedef struct lm_model_info {
    const char *model_type;   /* as in config.json, e.g. "llama" */
    const char *family;       /* the definition that serves it */
    int64_t n_params;         /* parameters (quantized weights counted unpacked) */
    int n_layers, hidden_size, n_heads, n_kv_heads, head_dim, vocab_size;
    int context_length;       /* max_position_embeddings */
    const char *weight_dtype; /* "bf16", "f16", "f32", "q4/g64", "mxfp4", "mixed" */
} lm_model_info;

void lm_model_get_info(const lm_model *model, lm_model_info *info);
/* Writes a multi-line description (architecture, features, parameter count) into buf.
 * Returns the length it needs (excluding the NUL); output is truncated when cap is smaller. */
size_t lm_model_describe(const lm_model *model, char *buf, size_t cap);

/* --- context: one sequence's KV cache and scratch -------------------------------------- */

typedef struct lm_ctx lm_ctx;

typedef struct lm_ctx_params {
    size_t size;      /* sizeof(lm_ctx_params) */
    int max_tokens;   /* 0: the model's context length */
    int sliding_full_cache; /* 1: keep every token in sliding-window layers too (comparisons);
                               0: those layers keep only their window (rotating cache) */
    int max_kv_size;  /* 0: unbounded; else every layer keeps at most this many tokens: the first
                         kv_keep and the most recent ones (mlx-lm's --max-kv-size). The sequence may
                         then grow past max_tokens. */
    int kv_keep;      /* tokens always kept with max_kv_size (default 4, as mlx-lm) */
    int kv_bits;      /* 0: f32 KV cache; 2-6 or 8: stored MLX-affine quantized (mlx-lm --kv-bits) */
    int kv_group_size;      /* quantization group along each head (default 64; must divide head_dim) */
    int quantized_kv_start; /* quantize once the sequence passes this many tokens (default 5000) */
    int kv_f16;       /* 1: K and V rows stored as f16 until quantized (half the memory of f32;
                         llama.cpp's default cache type; mlx-lm keeps the model's dtype); 0: f32 */
} lm_ctx_params;

lm_ctx_params lm_ctx_default_params(void);
lm_status lm_ctx_new(lm_model *model, const lm_ctx_params *params, lm_ctx **out);
void lm_ctx_free(lm_ctx *ctx);
/* Forget the sequence (keeps allocations). */
void lm_ctx_reset(lm_ctx *ctx);
/* Number of tokens in the cache. */
int lm_ctx_n_past(const lm_ctx *ctx);

/* Run `n` tokens through the model, appending them to the sequence.
 * logits: NULL, or [n, vocab] floats (all_logits != 0) or [vocab] floats for the last token.
 * After a failure the sequence is unchanged, except on out-of-memory, which resets it. */
lm_status lm_ctx_eval(lm_ctx *ctx, const int32_t *ids, int n, float *logits, int all_logits);
/* lm_ctx_eval followed by greedy decoding of the last token, picked where the logits are (on the
 * device for CUDA; only the id and its logprob come back): *token = the first maximum of
 * log_softmax(logits) and *logprob (may be NULL) = its log-softmax value, as lm_session_generate
 * at temp 0 without logits processors reports them. Failures as lm_ctx_eval. */
lm_status lm_ctx_eval_greedy(lm_ctx *ctx, const int32_t *ids, int n, int32_t *token, float *logprob);

/* Keep only the first n tokens of the sequence (prefix reuse: a new prompt that shares n tokens
 * with the cached one needs only the rest evaluated). Fails with LM_ERR_UNSUPPORTED once a
 * rotating cache (--max-kv-size, sliding windows) has dropped tokens; reset and start over then. */
lm_status lm_ctx_truncate(lm_ctx *ctx, int n);

/* Prompt caches: save the sequence's KV cache with the tokens that produced it (safetensors with
 * lmcore metadata), and load it into a fresh or reset context of the same model and cache
 * settings. On load, *tokens (malloc'd; free with lm_free_tokens) and *n_tokens receive the
 * tokens. A file from another model or with other cache settings fails with LM_ERR_INVALID_ARG. */
lm_status lm_ctx_save(const lm_ctx *ctx, const char *path, const int32_t *tokens, int n_tokens);
lm_status lm_ctx_load(lm_ctx *ctx, const char *path, int32_t **tokens, int *n_tokens);
void lm_free_tokens(int32_t *tokens);

/* --- tokenizer (src/text) ---------------------------------------------------------------- */
/* Hugging Face tokenizer.json pipelines with a BPE model: byte-level BPE (GPT-2 byte map:
 * Llama 3, Qwen2/3, GPT-OSS, DeepSeek) and SentencePiece-style BPE with byte fallback
 * (Llama 2, Gemma 3, Mistral, Phi-3). Ids and text agree with HF `tokenizers`.
 * A loaded tokenizer is read-only: any number of threads may use one at the same time. */

typedef struct lm_tokenizer lm_tokenizer;

/* Load DIR/tokenizer.json, plus DIR/tokenizer_config.json when present (its bos_token,
 * eos_token and added_tokens_decoder). Unsupported parts (a Unigram or WordPiece model, an
 * unknown normalizer) fail with LM_ERR_UNSUPPORTED naming the part. */
lm_status lm_tokenizer_load(const char *dir, lm_tokenizer **out);
/* The same from memory: `json` is tokenizer.json's text; `config_json` may be NULL.
 * `what` names the source in error messages (NULL: "tokenizer.json"). */
lm_status lm_tokenizer_load_json(const char *json, size_t json_len, const char *config_json,
                                 size_t config_len, const char *what, lm_tokenizer **out);
void lm_tokenizer_free(lm_tokenizer *tok);

/* Encode `len` bytes of UTF-8 text. add_special != 0 applies the post-processor of
 * tokenizer.json (e.g. BOS for Llama 2 and Gemma 3; nothing for Llama 3's ByteLevel one).
 * Added/special tokens written in the text are always recognised.
 * On LM_OK, *n_ids is the number of ids written to ids[0..cap); when cap is too small it is
 * the required count, negated (the llama_tokenize contract), and ids holds no useful data.
 * Invalid UTF-8 fails with LM_ERR_INVALID_ARG (the message gives the byte offset). */
lm_status lm_tokenizer_encode(const lm_tokenizer *tok, const char *text, size_t len,
                              int add_special, int32_t *ids, int32_t cap, int32_t *n_ids);
/* Decode ids to UTF-8 text into buf (always NUL-terminated when cap > 0, truncated when cap
 * is too small). *len receives the full length (excluding the NUL). Ids outside the vocab
 * are skipped, as HF does; skip_special != 0 drops special tokens. */
lm_status lm_tokenizer_decode(const lm_tokenizer *tok, const int32_t *ids, size_t n_ids,
                              int skip_special, char *buf, size_t cap, size_t *len);

int32_t lm_tokenizer_vocab_size(const lm_tokenizer *tok); /* model vocab + added tokens */
/* Id of a token string (added tokens included); -1 when absent. */
int32_t lm_tokenizer_token_to_id(const lm_tokenizer *tok, const char *token, size_t len);
/* The token string of an id (not NUL-terminated in general: use *len); NULL when unknown.
 * The string belongs to the tokenizer. */
const char *lm_tokenizer_id_to_token(const lm_tokenizer *tok, int32_t id, size_t *len);
int32_t lm_tokenizer_bos(const lm_tokenizer *tok); /* -1 when none */
int32_t lm_tokenizer_eos(const lm_tokenizer *tok); /* -1 when none */
int lm_tokenizer_is_special(const lm_tokenizer *tok, int32_t id);

/* Streaming detokenizer: feed ids as they are generated, get text as soon as it is final.
 * Text never splits a UTF-8 character, and the concatenation of everything returned by
 * push and flush equals lm_tokenizer_decode of all the ids (spaces neither lost nor doubled). */
typedef struct lm_detok lm_detok;

lm_status lm_detok_new(const lm_tokenizer *tok, int skip_special, lm_detok **out);
/* Add one id. *text / *len receive the newly finalised text (possibly empty); the string
 * belongs to the detokenizer and stays valid until its next call. */
lm_status lm_detok_push(lm_detok *d, int32_t id, const char **text, size_t *len);
/* Return whatever is still held back (an incomplete character is emitted as U+FFFD). */
lm_status lm_detok_flush(lm_detok *d, const char **text, size_t *len);
void lm_detok_reset(lm_detok *d); /* start a new sequence */
void lm_detok_free(lm_detok *d);

/* --- chat templates (src/text) ----------------------------------------------------------- */
/* A Jinja chat template (the subset real Hugging Face templates use), rendered the way
 * transformers' apply_chat_template does: trim_blocks, lstrip_blocks, loop controls,
 * raise_exception, strftime_now (set LMCORE_STRFTIME_NOW=<unix seconds> for a fixed UTC time).
 * Syntax and runtime errors fail with LM_ERR_TEMPLATE and a "name:line:col: ..." message.
 * A template is immutable after loading; several threads may render it at once. */

typedef struct lm_chat_template lm_chat_template;

/* Load the chat template of a model or tokenizer directory: chat_template.jinja when present
 * (and name is NULL or "default"), else tokenizer_config.json's chat_template (a string, or a
 * list of {name, template} of which "default" is used unless `name` asks for another, which
 * may also be additional_chat_templates/<name>.jinja). bos_token/eos_token/unk_token/
 * pad_token come from tokenizer_config.json (strings or {"content": ...}).
 * Returns LM_ERR_MISSING when the directory has no chat template (callers may then fall back
 * to the raw prompt), LM_ERR_INVALID_ARG when `name` is not among the named templates. */
lm_status lm_chat_template_load(const char *dir, const char *name, lm_chat_template **out);
/* A template from source; bos/eos may be NULL (then bos_token/eos_token are undefined). */
lm_status lm_chat_template_from_string(const char *src, const char *bos, const char *eos,
                                       lm_chat_template **out);
/* 1 when lm_chat_template_load(dir, NULL, ...) would succeed. */
int lm_chat_template_exists(const char *dir);
/* Render: messages_json is a JSON array of messages; extra_json (NULL or a JSON object) adds
 * variables and overrides the defaults (tools and documents default to None), e.g.
 * {"tools": [...], "enable_thinking": false}. *out is a malloc'd NUL-terminated string, free it
 * with lm_free_string; it is NULL after a failure. */
lm_status lm_chat_template_render(const lm_chat_template *tmpl, const char *messages_json,
                                  int add_generation_prompt, const char *extra_json, char **out);
void lm_chat_template_free(lm_chat_template *tmpl);
/* Free a string the library returned. */
void lm_free_string(char *s);

/* --- convert (src/quant) ------------------------------------------------------------------ */
/* Rewrite a checkpoint directory the way mlx-lm's `convert` does: quantize a bf16/f16/f32
 * checkpoint to MLX affine (2, 3, 4, 5, 6, 8 bits; groups of 32, 64, 128) or MXFP4, dequantize
 * an MLX-quantized one, or only cast it. The output is an MLX-compatible directory:
 * model.safetensors (model-0000i-of-0000n.safetensors shards past max_shard_bytes) with
 * model.safetensors.index.json, config.json with the "quantization" block (and its
 * "quantization_config" copy) incl. per-module overrides, and the tokenizer files copied.
 * Quantized: every Linear/Embedding weight (a 2-D, or stacked 3-D expert, ".weight") whose input
 * size is a multiple of the group size; per-expert MoE weights "...experts.<e>.<proj>.weight"
 * are stacked into "...switch_mlp.<proj>.weight" [E, out, in] as mlx-lm does; the MoE routers
 * of qwen3_moe ("mlp.gate") and gpt_oss ("router") get 8 bits, group 64 (mlx-lm's
 * quant_predicate). Norms, biases and other tensors are copied (cast when dtype is set). */

typedef enum { LM_QUANT_AFFINE = 0, LM_QUANT_MXFP4 = 1, LM_QUANT_COUNT_ } lm_quant_mode;
typedef enum {
    LM_CONVERT_DTYPE_AUTO = 0, /* keep each tensor's stored float type (scales: the weight's) */
    LM_CONVERT_DTYPE_BF16, LM_CONVERT_DTYPE_F16, LM_CONVERT_DTYPE_F32,
    LM_CONVERT_DTYPE_COUNT_
} lm_convert_dtype;

typedef struct lm_convert_params {
    size_t size;          /* sizeof(lm_convert_params) */
    int quantize;         /* 1: quantize (the source must not be quantized) */
    int dequantize;       /* 1: dequantize every quantized module (not with quantize) */
    lm_quant_mode mode;   /* LM_QUANT_AFFINE */
    int bits;             /* 0: the mode's default (4); affine 2, 3, 4, 5, 6, 8; mxfp4 4 */
    int group_size;       /* 0: the mode's default (affine 64, mxfp4 32) */
    const char *recipe;   /* NULL, or mlx-lm's "mixed_2_6", "mixed_3_4", "mixed_3_6", "mixed_4_6"
                             (affine only: v_proj/down_proj of the first and last eighth of the
                             layers and of every third layer between, and lm_head, get the high
                             bit width; the rest the low one; `bits` is ignored) */
    lm_convert_dtype dtype; /* the float type written (weights, norms, scales/biases, dequantized) */
    uint64_t max_shard_bytes; /* 0: 5 GiB, as mlx-lm */
    int n_threads;        /* 0: one per physical core */
} lm_convert_params;

typedef struct lm_convert_stats {
    int n_tensors;        /* tensors written */
    int n_quantized;      /* modules quantized */
    int n_dequantized;    /* modules dequantized */
    int n_shards;
    int64_t n_params;     /* parameters (quantized ones counted unpacked) */
    uint64_t bytes;       /* tensor data written */
    double bits_per_weight; /* bytes * 8 / n_params, as mlx-lm reports it */
} lm_convert_stats;

lm_convert_params lm_convert_default_params(void);
/* Convert src_dir into dst_dir, which must not exist or be an empty directory (its parent must
 * exist). stats may be NULL. On failure the files written so far are removed and dst_dir is
 * left as it was found. Errors name the directory, tensor or option at fault. */
lm_status lm_convert(const char *src_dir, const char *dst_dir, const lm_convert_params *params,
                     lm_convert_stats *stats);

/* --- generation (src/generate) --------------------------------------------------------- */
/* mlx-lm's generate.py / sample_utils.py on top of the model, tokenizer and chat template:
 * an lm_llm bundles what one model directory holds; an lm_session is one conversation (its KV
 * cache and token history) with a seeded random generator; lm_session_generate prefills a
 * prompt in chunks and samples tokens, streaming text to a callback. */

typedef struct lm_llm lm_llm;

typedef struct lm_llm_params {
    size_t size;               /* sizeof(lm_llm_params) */
    int n_threads;             /* 0: one per physical core */
    lm_device device;          /* LM_DEVICE_CPU */
    const char *chat_template; /* NULL: the default template; or the name of another one */
} lm_llm_params;

lm_llm_params lm_llm_default_params(void);
/* Load DIR's model (config.json + safetensors), tokenizer (tokenizer.json), chat template
 * (when it has one) and generation_config.json (when present). The EOS ids are the union of
 * config.json's eos_token_id, generation_config.json's eos_token_id and the tokenizer's
 * eos_token. On failure *out is NULL and nothing needs freeing. */
lm_status lm_llm_load(const char *dir, const lm_llm_params *params, lm_llm **out);
void lm_llm_free(lm_llm *llm);
lm_model *lm_llm_model(const lm_llm *llm);
const lm_tokenizer *lm_llm_tokenizer(const lm_llm *llm);
const lm_chat_template *lm_llm_chat_template(const lm_llm *llm); /* NULL when the model has none */
/* The EOS ids (*ids belongs to the llm); returns their count. */
int lm_llm_eos_ids(const lm_llm *llm, const int32_t **ids);
int lm_llm_context_length(const lm_llm *llm); /* max_position_embeddings */

typedef struct lm_chat_message {
    const char *role;    /* "system", "user", "assistant" */
    const char *content; /* UTF-8 */
} lm_chat_message;

/* Token ids of a conversation, as mlx-lm's generate builds them: with a chat template and
 * use_template != 0, the messages are rendered with add_generation_prompt (extra_json: NULL or
 * a JSON object of template variables, e.g. {"enable_thinking": false}) and encoded without
 * special tokens (the template writes them); otherwise the contents are concatenated and
 * encoded as a raw prompt (lm_llm_encode_raw). *ids is malloc'd: free it with lm_free_tokens
 * (declared with the context API). */
lm_status lm_llm_encode_chat(const lm_llm *llm, const lm_chat_message *msgs, int n_msgs, int use_template,
                             const char *extra_json, int32_t **ids, int *n_ids);
/* A raw prompt: encoded with the tokenizer's special tokens (e.g. BOS) unless the text already
 * starts with the BOS token's text (mlx-lm's rule). */
lm_status lm_llm_encode_raw(const lm_llm *llm, const char *text, size_t len, int32_t **ids, int *n_ids);

/* A conversation: KV cache + token history. Not thread-safe; one session per thread, any
 * number of sessions per llm. */
typedef struct lm_session lm_session;

typedef struct lm_session_params {
    size_t size;            /* sizeof(lm_session_params) */
    int n_ctx;              /* tokens the cache holds; 0: the model's context length */
    /* KV-cache options (mlx-lm's --max-kv-size, --kv-bits, --kv-group-size,
     * --quantized-kv-start; see lm_ctx_params) */
    int max_kv_size;        /* 0: no limit (the cache holds n_ctx); N: rotating, keeps the 4 first
                               tokens and the latest; the conversation may then outgrow n_ctx */
    int kv_bits;            /* 0: unquantized; 2-6 or 8 */
    int kv_group_size;      /* 64; must divide the head size */
    int quantized_kv_start; /* 5000 */
    int kv_f16;             /* 0: f32 rows; 1: f16 rows (see lm_ctx_params) */
} lm_session_params;

lm_session_params lm_session_default_params(void);
lm_status lm_session_new(lm_llm *llm, const lm_session_params *params, lm_session **out);
void lm_session_free(lm_session *s);
void lm_session_reset(lm_session *s); /* forget the conversation (keeps allocations) */
/* The tokens in the session's cache (prompts and generated tokens that were evaluated; the
 * last sampled token of a generation is not evaluated and not included). *n receives the
 * count; the array belongs to the session and changes with the next generate/reset. */
const int32_t *lm_session_tokens(const lm_session *s, int *n);
/* Prompt caches (mlx-lm's cache_prompt): save the session's KV cache and tokens to a file; load
 * one into a session of the same model and KV-cache settings, replacing its conversation (a
 * later prompt that starts with the cached tokens evaluates only the rest). */
lm_status lm_session_save(const lm_session *s, const char *path);
lm_status lm_session_load(lm_session *s, const char *path);

typedef enum {
    LM_FINISH_NONE = 0,
    LM_FINISH_STOP = 1,      /* an EOS token or a stop string */
    LM_FINISH_LENGTH = 2,    /* max_tokens reached, or the cache is full */
    LM_FINISH_CANCELLED = 3, /* a callback returned nonzero */
    LM_FINISH_COUNT_
} lm_finish_reason;

const char *lm_finish_reason_str(lm_finish_reason r); /* "stop", "length", "cancelled", "none" */

typedef struct lm_logit_bias {
    int32_t token;
    float bias; /* added to the token's logit */
} lm_logit_bias;

/* Receives each generated token: `text` (not NUL-terminated, may be empty) is the text that
 * became final with it (text is held back while it may still be the start of a stop string,
 * or an incomplete character); `logprob` is the token's log-probability under the processed
 * logits (NaN unless params.logprobs). A last call with token -1 delivers held-back text at the
 * end. Return nonzero to cancel (finish reason "cancelled"). */
typedef int (*lm_gen_token_fn)(void *user, const char *text, size_t len, int32_t token, float logprob);
/* Prompt progress: `done` of `total` prompt tokens evaluated; called before the first chunk,
 * after each chunk and when the first token is ready. Return nonzero to cancel. */
typedef int (*lm_gen_progress_fn)(void *user, int done, int total);

typedef struct lm_gen_params {
    size_t size;                 /* sizeof(lm_gen_params) */
    int max_tokens;              /* 256; -1: until a stop rule or a full cache */
    /* sampler (mlx-lm make_sampler; applied in this order after the processors) */
    float temp;                  /* 0: greedy (argmax); > 0: sample from softmax(logprobs/temp) */
    float top_p;                 /* 1 (off): keep the smallest set with cumulative prob > top_p */
    float min_p;                 /* 0 (off): drop p < min_p * p_max ... */
    int min_tokens_to_keep;      /* ... but always keep this many (1) */
    float xtc_probability;       /* 0 (off): chance per token of XTC ... */
    float xtc_threshold;         /* 0.1: ... removing every token with p > threshold but the least likely one */
    int top_k;                   /* 0 (off): keep the k most likely tokens */
    /* logits processors (mlx-lm make_logits_processors; applied first, in this order) */
    const lm_logit_bias *logit_bias;
    int n_logit_bias;
    float repetition_penalty;    /* 0 (off): divide positive / multiply negative logits of recent tokens */
    int repetition_context_size; /* 20 */
    float presence_penalty;      /* 0 (off): subtract once per recent token */
    int presence_context_size;   /* 20 */
    float frequency_penalty;     /* 0 (off): subtract once per occurrence of a recent token */
    int frequency_context_size;  /* 20 */
    int64_t seed;                /* -1: from the clock; else the session's generator is reseeded */
    const char *const *stop_strings; /* extra stop strings (never printed) */
    int n_stop_strings;
    int prefill_step_size;       /* 2048: prompt tokens per forward */
    int logprobs;                /* 1: pass each token's logprob to on_token */
    lm_gen_token_fn on_token;
    void *user;
    lm_gen_progress_fn on_progress;
    void *progress_user;
} lm_gen_params;

lm_gen_params lm_gen_default_params(void);

typedef struct lm_gen_result {
    size_t size;                 /* sizeof(lm_gen_result), set by the caller */
    lm_finish_reason finish_reason;
    int prompt_tokens;           /* tokens of the prompt */
    int prompt_tokens_reused;    /* of those, already in the session's cache (not evaluated) */
    double prompt_tps;           /* evaluated prompt tokens per second */
    int generation_tokens;       /* sampled tokens (an EOS that stopped generation included) */
    double generation_tps;
    double peak_memory_gb;       /* the process's peak resident memory (VmHWM) */
} lm_gen_result;

/* Generate a continuation of `prompt`. When the session's tokens are a prefix of `prompt`
 * only the rest is evaluated; otherwise the session is reset first. Invalid parameters fail
 * with LM_ERR_INVALID_ARG naming the field and its valid range; a prompt that does not fit
 * the cache fails with LM_ERR_CONTEXT. Cancelling is not an error: it returns LM_OK with
 * finish reason "cancelled". `result` may be NULL. */
lm_status lm_session_generate(lm_session *s, const int32_t *prompt, int n_prompt, const lm_gen_params *params,
                              lm_gen_result *result);

typedef struct lm_perplexity_params {
    size_t size;                 /* sizeof(lm_perplexity_params) */
    int context;                 /* 512: tokens per window */
    int max_windows;             /* 0: all */
    lm_gen_progress_fn on_progress; /* windows done of total */
    void *user;
} lm_perplexity_params;

typedef struct lm_perplexity_result {
    double perplexity, mean_nll, total_nll;
    int64_t predicted_tokens, total_tokens;
    int windows;
} lm_perplexity_result;

lm_perplexity_params lm_perplexity_default_params(void);
/* Perplexity of `text` (models/default/perplexity.json's protocol): tokenize without special
 * tokens, prepend one BOS, split into windows of `context` tokens (a last window of >= 2
 * tokens included), run each from an empty cache and predict tokens 1..n-1 of each window;
 * perplexity = exp(total NLL / predicted tokens). */
lm_status lm_llm_perplexity(lm_llm *llm, const char *text, size_t len, const lm_perplexity_params *params,
                            lm_perplexity_result *out);

#ifdef __cplusplus
}
#endif
#endif /* LMCORE_H */
