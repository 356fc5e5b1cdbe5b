/* The lmcore CLI contract: `logits` writes the fixture layout; errors are one line and non-zero. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "test_util.h"

static const char *cli(void) {
    const char *c = getenv("LMCORE_CLI");
    return c ? c : "./lmcore";
}

/* Run a shell command; capture stdout+stderr into out. Returns the exit status. */
static int run(const char *cmd, char *out, size_t cap) {
    char full[4096];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(void) {
    char cmd[4096], out[16384], dir[1024], exp_path[1100], out_path[256];
    snprintf(dir, sizeof dir, "%s/models/llama", t_fixtures());
    snprintf(exp_path, sizeof exp_path, "%s/expected.safetensors", dir);
    snprintf(out_path, sizeof out_path, "/tmp/lmcore_cli_%d.safetensors", (int)getpid());
    lm_st_set *exp;
    if (lm_st_open_file(exp_path, &exp) != LM_OK) {
        CHECKF(0, "%s", lm_last_error());
        return test_done("cli");
    }
    const lm_st_tensor *ti = lm_st_find(exp, "input_ids");
    char ids[4096] = "";
    size_t n = 0;
    for (int i = 0; i < ti->numel; i++)
        n += (size_t)snprintf(ids + n, sizeof ids - n, "%s%lld", i ? "," : "", (long long)((const int64_t *)ti->data)[i]);
    int N = (int)lm_st_find(exp, "greedy_ids")->numel;
    snprintf(cmd, sizeof cmd, "%s logits -m %s --ids %s --decode %d -o %s", cli(), dir, ids, N, out_path);
    CHECKF(run(cmd, out, sizeof out) == 0, "%s\n%s", cmd, out);
    lm_st_set *got;
    if (lm_st_open_file(out_path, &got) == LM_OK) {
        const char *names[] = {"input_ids", "logits", "greedy_ids", "decode_logits"};
        for (int k = 0; k < 4; k++) {
            const lm_st_tensor *a = lm_st_find(got, names[k]), *b = lm_st_find(exp, names[k]);
            CHECKF(a && b && a->dtype == b->dtype && a->numel == b->numel && a->ndim == b->ndim, "%s layout", names[k]);
            if (!a || !b || a->numel != b->numel)
                continue;
            if (a->dtype == LM_DT_I64) {
                CHECKF(memcmp(a->data, b->data, a->nbytes) == 0, "%s differ", names[k]);
            } else {
                double md = 0;
                for (int64_t i = 0; i < a->numel; i++) {
                    double d = fabs(((const float *)a->data)[i] - ((const float *)b->data)[i]);
                    md = d > md ? d : md;
                }
                CHECKF(md <= 2e-3, "%s max diff %g", names[k], md);
            }
        }
        lm_st_close(got);
    } else {
        CHECKF(0, "output not readable: %s", lm_last_error());
    }
    unlink(out_path);
    lm_st_close(exp);

    /* info names the resolved architecture */
    snprintf(cmd, sizeof cmd, "%s info -m %s", cli(), dir);
    CHECK(run(cmd, out, sizeof out) == 0 && strstr(out, "llama3") && strstr(out, "parameters:"));
    /* errors: non-zero, one line, names the problem */
    snprintf(cmd, sizeof cmd, "%s logits -m %s --ids 1,x,3 -o /tmp/never.safetensors", cli(), dir);
    CHECK(run(cmd, out, sizeof out) != 0 && strstr(out, "--ids") && strchr(out, '\n') == out + strlen(out) - 1);
    snprintf(cmd, sizeof cmd, "%s logits -m /nonexistent/model --ids 1 -o /tmp/never.safetensors", cli());
    CHECK(run(cmd, out, sizeof out) != 0 && strstr(out, "config.json"));
    snprintf(cmd, sizeof cmd, "%s logits -m %s --ids 1,99999 -o /tmp/never.safetensors", cli(), dir);
    CHECK(run(cmd, out, sizeof out) != 0 && strstr(out, "99999"));
    snprintf(cmd, sizeof cmd, "%s logits -m %s --ids 1 --device tpu -o /tmp/never.safetensors", cli(), dir);
    CHECK(run(cmd, out, sizeof out) != 0 && strstr(out, "--device"));
    /* --device cuda: works on a GPU machine, else one line naming CUDA */
    snprintf(cmd, sizeof cmd, "%s logits -m %s --ids 1 --device cuda -o /tmp/lmcore_cli_cuda.safetensors", cli(), dir);
    int rc = run(cmd, out, sizeof out);
    CHECKF(rc == 0 || (strstr(out, "CUDA") && strchr(out, '\n') == out + strlen(out) - 1), "--device cuda: %s", out);
    unlink("/tmp/lmcore_cli_cuda.safetensors");
    snprintf(cmd, sizeof cmd, "%s frobnicate", cli());
    CHECK(run(cmd, out, sizeof out) != 0 && strstr(out, "unknown command"));
    snprintf(cmd, sizeof cmd, "%s logits --help", cli());
    CHECK(run(cmd, out, sizeof out) == 0 && strstr(out, "usage: lmcore logits"));
    return test_done("cli");
}
