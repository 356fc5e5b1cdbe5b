/* lmcore perplexity reproduces the bundled model's PyTorch perplexity (models/default/
 * perplexity.json: 15.266103 on heldout.txt, 55 windows of 512) within 0.5%. Under the
 * sanitizers (slow) it checks the first window against the value of a full-speed run. */
#include <sys/wait.h>

#include "test_util.h"

int main(void) {
    const char *cli = getenv("LMCORE_CLI"), *src = getenv("LMCORE_SRC");
    char cmd[4096], out[4096];
#if defined(__SANITIZE_ADDRESS__)
    const char *windows = "--max-windows 1";
    const double expect = 3.5286; /* lmcore Release build, first window (the full file matches PyTorch) */
    const int n_windows = 1;
#else
    const char *windows = "";
    const double expect = 15.266103; /* perplexity.json (PyTorch float32) */
    const int n_windows = 55;
#endif
    snprintf(cmd, sizeof cmd, "%s perplexity -m %s/models/default -f %s/models/default/heldout.txt --context 512 %s",
             cli ? cli : "./lmcore", src ? src : ".", src ? src : ".", windows);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    if (!p)
        return test_done("perplexity_cli");
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int st = pclose(p);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", cmd);
    double ppl = 0;
    long long pred = 0;
    int w = 0;
    CHECKF(sscanf(out, "perplexity %lf (mean NLL %*f over %lld predicted tokens, %d windows", &ppl, &pred, &w) == 3,
           "%s", out);
    printf("%s", out);
    CHECKF(fabs(ppl / expect - 1) < 0.005, "perplexity %.6f vs %.6f", ppl, expect);
    CHECK(w == n_windows);
#if !defined(__SANITIZE_ADDRESS__)
    CHECK(pred == 28061);
#endif
    return test_done("perplexity_cli");
}
