/* Issue 4: packed weights (MLX affine 3/4/6/8-bit, MXFP4) against transformers on the same weights. */
#include "fixture_runner.h"

int main(void) {
    static const char *const FIXTURES[] = {"qwen3_mlx_q4", "llama_mlx_q8_g32", "llama_mlx_mixed_3_6",
                                           "qwen3_moe_mlx_q4", "gpt_oss_mlx_mxfp4_q8", "gpt_oss_hf_mxfp4"};
    for (size_t i = 0; i < sizeof FIXTURES / sizeof FIXTURES[0]; i++)
        run_fixture(FIXTURES[i], NULL);
    return test_done("fixtures_quant");
}
