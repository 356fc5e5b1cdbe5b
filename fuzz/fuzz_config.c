/* libFuzzer: config.json parsing and the RoPE set-up it feeds. */
#include <stddef.h>
#include <stdint.h>

#include "io/config.h"
#include "layers/rope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lm_config cfg;
    if (lm_config_parse((const char *)data, size, "fuzz/config.json", &cfg) != LM_OK)
        return 0;
    static lm_rope rope;
    if (lm_rope_init(&rope, &cfg.rope_full, cfg.head_dim, cfg.max_pos, "fuzz") == LM_OK) {
        int32_t pos[2] = {0, cfg.max_pos};
        float cs[2 * 2 * LM_ROPE_MAX_HALF];
        lm_rope_table(&rope, pos, 2, cfg.max_pos + 1, cs);
    }
    lm_quant_cfg q = lm_config_quant_for(&cfg, "model.layers.0.mlp.down_proj");
    (void)q;
    lm_config_free(&cfg);
    return 0;
}
