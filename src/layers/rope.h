/* Rotary position embeddings: inverse frequencies for every rope type transformers knows
 * (default, linear, dynamic NTK, yarn, longrope, llama3), partial rotary, and the per-call
 * cos/sin table. Frequencies are computed in double and rounded to float as torch does. */
#ifndef LM_LAYERS_ROPE_H
#define LM_LAYERS_ROPE_H
#include <stdint.h>

#include "io/config.h"

#define LM_ROPE_MAX_HALF 512

typedef struct lm_rope {
    lm_rope_cfg cfg;
    int rot_dim;        /* rotated dims per head (even) */
    int max_pos;        /* max_position_embeddings */
    float attn_factor;  /* multiplies cos and sin */
    double inv_freq[LM_ROPE_MAX_HALF];  /* static types; longrope: short factors */
    double long_inv[LM_ROPE_MAX_HALF];  /* longrope: long factors */
    float long_attn_factor;
} lm_rope;

lm_status lm_rope_init(lm_rope *r, const lm_rope_cfg *cfg, int head_dim, int max_pos, const char *what);
/* cs[T, rot_dim]: cos then sin for each token. seq_len = the sequence length the call
 * reaches (max position + 1); dynamic and longrope choose their frequencies from it. */
void lm_rope_table(const lm_rope *r, const int32_t *pos, int T, int seq_len, float *cs);

#endif
