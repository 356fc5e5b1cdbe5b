/* Issue 3: Gemma 3 and Gemma 3n text models against transformers. */
#include "fixture_runner.h"

int main(void) {
    run_fixture("gemma3_text", NULL);
    run_fixture("gemma3n_text", NULL);
    return test_done("fixtures_gemma3");
}
