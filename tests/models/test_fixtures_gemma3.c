/* Issue 3: Gemma 3 text model against transformers. */
#include "fixture_runner.h"

int main(void) {
    run_fixture("gemma3_text", NULL);
    return test_done("fixtures_gemma3");
}
