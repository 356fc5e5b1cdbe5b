/* lmcore logits / lmcore info */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "io/safetensors.h"
#include "lmcore.h"

static const char LOGITS_USAGE[] =
    "usage: lmcore logits -m DIR --ids 1,2,3 [--decode N] -o OUT.safetensors [--threads N] [--device cpu|cuda]\n"
    "  Runs the ids through the model in one prefill forward and writes `logits` [T,V] f32 and\n"
    "  `input_ids` [T] i64. With --decode N it then decodes N tokens greedily, one at a time\n"
    "  through the KV cache, and also writes `greedy_ids` [N] i64 and `decode_logits` [N,V] f32.\n";

/* "1,2,3" -> ids; returns count or -1 */
static int parse_ids(const char *s, int32_t **out) {
    int cap = 16, n = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids)
        return -1;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(ids);
            return -1;
        }
        if (n == cap) {
            int32_t *ni = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (!ni) {
                free(ids);
                return -1;
            }
            ids = ni;
        }
        ids[n++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (n == 0) {
        free(ids);
        return -1;
    }
    *out = ids;
    return n;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

int cmd_logits(int argc, char **argv) {
    const char *dir = NULL, *ids_s = NULL, *outp = NULL;
    long n_decode = 0, threads = 0;
    lm_device device = LM_DEVICE_CPU;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is(a, "--help", "-h")) {
            fputs(LOGITS_USAGE, stdout);
            return 0;
        }
        if (i + 1 >= argc)
            return cli_fail("logits", "missing value after the last option (see --help)");
        if (cli_is(a, "-m", "--model"))
            dir = argv[++i];
        else if (cli_is(a, "--ids", NULL))
            ids_s = argv[++i];
        else if (cli_is(a, "-o", "--output"))
            outp = argv[++i];
        else if (cli_is(a, "--decode", NULL)) {
            if (!cli_parse_long(argv[++i], 0, 1 << 20, &n_decode))
                return cli_fail("logits", "--decode takes a number of tokens (0 to 1048576)");
        } else if (cli_is(a, "--device", NULL)) {
            const char *d = argv[++i];
            if (strcmp(d, "cpu") == 0)
                device = LM_DEVICE_CPU;
            else if (strcmp(d, "cuda") == 0)
                device = LM_DEVICE_CUDA;
            else
                return cli_fail("logits", "--device takes cpu or cuda");
        } else if (cli_is(a, "-t", "--threads")) {
            if (!cli_parse_long(argv[++i], 0, 1024, &threads))
                return cli_fail("logits", "--threads takes a number from 0 (auto) to 1024");
        } else {
            fprintf(stderr, "lmcore logits: unknown option '%s' (see --help)\n", a);
            return 1;
        }
    }
    if (!dir || !ids_s || !outp)
        return cli_fail("logits", "needs -m DIR, --ids and -o OUT.safetensors (see --help)");
    int32_t *ids;
    int T = parse_ids(ids_s, &ids);
    if (T < 0)
        return cli_fail("logits", "--ids takes comma-separated non-negative token ids, e.g. 1,2,3");

    lm_model_params mp = lm_model_default_params();
    mp.n_threads = (int)threads;
    mp.device = device;
    lm_model *model = NULL;
    lm_ctx *ctx = NULL;
    float *logits = NULL, *dlog = NULL;
    int64_t *greedy = NULL, *in64 = NULL;
    int rc = 1;
    if (lm_model_load(dir, &mp, &model) != LM_OK || lm_ctx_new(model, NULL, &ctx) != LM_OK) {
        cli_fail("logits", NULL);
        goto done;
    }
    lm_model_info info;
    lm_model_get_info(model, &info);
    int V = info.vocab_size;
    logits = malloc((size_t)T * V * sizeof *logits);
    dlog = malloc(((size_t)n_decode * V + 1) * sizeof *dlog);
    greedy = malloc(((size_t)n_decode + 1) * sizeof *greedy);
    in64 = malloc((size_t)T * sizeof *in64);
    if (!logits || !dlog || !greedy || !in64) {
        cli_fail("logits", "out of memory");
        goto done;
    }
    if (lm_ctx_eval(ctx, ids, T, logits, 1) != LM_OK) {
        cli_fail("logits", NULL);
        goto done;
    }
    int32_t next = argmax(logits + (size_t)(T - 1) * V, V);
    for (long i = 0; i < n_decode; i++) {
        greedy[i] = next;
        if (lm_ctx_eval(ctx, &next, 1, dlog + (size_t)i * V, 0) != LM_OK) {
            cli_fail("logits", NULL);
            goto done;
        }
        next = argmax(dlog + (size_t)i * V, V);
    }
    for (int t = 0; t < T; t++)
        in64[t] = ids[t];
    lm_st_out outs[4] = {
        {"input_ids", LM_DT_I64, 1, {T}, in64},
        {"logits", LM_DT_F32, 2, {T, V}, logits},
        {"greedy_ids", LM_DT_I64, 1, {n_decode}, greedy},
        {"decode_logits", LM_DT_F32, 2, {n_decode, V}, dlog},
    };
    if (lm_st_write(outp, outs, n_decode ? 4 : 2, NULL) != LM_OK) {
        cli_fail("logits", NULL);
        goto done;
    }
    rc = 0;
done:
    free(ids);
    free(logits);
    free(dlog);
    free(greedy);
    free(in64);
    lm_ctx_free(ctx);
    lm_model_free(model);
    return rc;
}

int cmd_info(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "--help", "-h")) {
            fputs("usage: lmcore info -m DIR\n  Prints the resolved architecture, features and parameter count.\n",
                  stdout);
            return 0;
        }
        if (cli_is(argv[i], "-m", "--model") && i + 1 < argc)
            dir = argv[++i];
        else
            return cli_fail("info", "usage: lmcore info -m DIR");
    }
    if (!dir)
        return cli_fail("info", "usage: lmcore info -m DIR");
    lm_model *model;
    if (lm_model_load(dir, NULL, &model) != LM_OK)
        return cli_fail("info", NULL);
    char buf[4096];
    lm_model_describe(model, buf, sizeof buf);
    fputs(buf, stdout);
    lm_model_free(model);
    return 0;
}
