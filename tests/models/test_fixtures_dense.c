/* Issue 2: the dense families against transformers' reference logits. */
#include "fixture_runner.h"

int main(void) {
    static const char *const FIXTURES[] = {"llama", "llama_long", "qwen2", "qwen3", "mistral", "mistral3", "phi3",
                                           "smollm3"};
    for (size_t i = 0; i < sizeof FIXTURES / sizeof FIXTURES[0]; i++)
        run_fixture(FIXTURES[i], NULL);
    return test_done("fixtures_dense");
}
