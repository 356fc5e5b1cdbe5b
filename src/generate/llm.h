/* Internal view of lm_llm (a model directory: model, tokenizer, chat template, EOS ids). */
#ifndef LM_GENERATE_LLM_H
#define LM_GENERATE_LLM_H
#include <stdint.h>

#include "core/status.h"

#define LM_LLM_MAX_EOS 16

struct lm_llm {
    lm_model *model;
    lm_tokenizer *tok;
    lm_chat_template *tmpl;    /* NULL: none */
    int vocab;                 /* logits width */
    int ctx_len;               /* max_position_embeddings */
    int32_t eos[LM_LLM_MAX_EOS];
    int n_eos;
    /* ids XTC never removes: tokenizer.encode("\n") + the EOS ids (mlx-lm generate main) */
    int32_t xtc_special[LM_LLM_MAX_EOS + 8];
    int n_xtc_special;
};

/* Encode text into a malloc'd array. */
lm_status lm_llm_encode_alloc(const lm_llm *llm, const char *text, size_t len, int add_special, int32_t **ids,
                              int *n_ids);

#endif
