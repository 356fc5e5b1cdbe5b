/* Issue 3: mixture-of-experts families against transformers. */
#include "fixture_runner.h"

int main(void) {
    run_fixture("qwen3_moe", NULL);
    run_fixture("gpt_oss", NULL);
    return test_done("fixtures_moe");
}
