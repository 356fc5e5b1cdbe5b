/* lmcore speed on one model: prefill of P tokens, then D single-token decode steps, each
 * repetition from an empty cache; prints medians as JSON.
 *   cpu_bench MODEL_DIR [-t THREADS=2] [-p 512] [-n 128] [-r 5]
 * Token ids are the same deterministic sequence the llama.cpp script feeds. Logits of the last
 * prompt token and of every decode step are computed (as a generator would). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/cpu/cpu_simd.h"
#include "core/util.h"
#include "lmcore.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: cpu_bench MODEL_DIR [-t THREADS] [-p PROMPT] [-n DECODE] [-r REPS]\n");
        return 2;
    }
    int threads = 2, P = 512, D = 128, reps = 5;
    for (int i = 2; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "-t"))
            threads = v;
        else if (!strcmp(argv[i], "-p"))
            P = v;
        else if (!strcmp(argv[i], "-n"))
            D = v;
        else if (!strcmp(argv[i], "-r"))
            reps = v;
        else {
            fprintf(stderr, "cpu_bench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (threads < 1 || P < 1 || D < 1 || reps < 1 || reps > 99) {
        fprintf(stderr, "cpu_bench: -t, -p, -n must be >= 1 and -r in 1..99\n");
        return 2;
    }
    lm_model_params mp = lm_model_default_params();
    mp.n_threads = threads;
    lm_model *m = NULL;
    lm_ctx *ctx = NULL;
    double t_load = lm_time_s();
    if (lm_model_load(argv[1], &mp, &m) != LM_OK) {
        fprintf(stderr, "cpu_bench: %s\n", lm_last_error());
        return 1;
    }
    t_load = lm_time_s() - t_load;
    lm_ctx_params cp = lm_ctx_default_params();
    cp.max_tokens = P + D + 8;
    if (lm_ctx_new(m, &cp, &ctx) != LM_OK) {
        fprintf(stderr, "cpu_bench: %s\n", lm_last_error());
        return 1;
    }
    lm_model_info info;
    lm_model_get_info(m, &info);
    int32_t *ids = malloc((size_t)(P + D) * sizeof *ids);
    float *logits = malloc((size_t)info.vocab_size * sizeof *logits);
    for (int i = 0; i < P + D; i++)
        ids[i] = (int32_t)((1000 + (int64_t)i * 7919) % 120000);
    double pp[99], tg[99];
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up (page faults of the mapped weights) */
        lm_ctx_reset(ctx);
        double t0 = lm_time_s();
        lm_status st = lm_ctx_eval(ctx, ids, P, logits, 0);
        double t1 = lm_time_s();
        for (int i = 0; i < (r < 0 ? 4 : D) && st == LM_OK; i++)
            st = lm_ctx_eval(ctx, ids + P + i, 1, logits, 0);
        double t2 = lm_time_s();
        if (st != LM_OK) {
            fprintf(stderr, "cpu_bench: %s\n", lm_last_error());
            return 1;
        }
        if (r < 0)
            continue;
        pp[r] = P / (t1 - t0);
        tg[r] = D / (t2 - t1);
    }
    qsort(pp, (size_t)reps, sizeof pp[0], cmp_d);
    qsort(tg, (size_t)reps, sizeof tg[0], cmp_d);
    /* bytes read per decode step: every weight once (tied head = embedding) + the f32 KV cache
     * at the middle of the decode */
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", argv[1]);
    struct stat sb;
    double wbytes = stat(path, &sb) == 0 ? (double)sb.st_size : 0;
    double kv = 2.0 * info.n_layers * info.n_kv_heads * info.head_dim * 4.0 * (P + D / 2);
    printf("{\"pp_tps\": %.2f, \"tg_tps\": %.2f, \"weight_bytes\": %.0f, \"kv_bytes\": %.0f, \"load_s\": %.3f, "
           "\"threads\": %d, \"isa\": \"%s\"}\n",
           pp[reps / 2], tg[reps / 2], wbytes, kv, t_load, threads, lm_cpu_kernels_best()->name);
    free(ids);
    free(logits);
    lm_ctx_free(ctx);
    lm_model_free(m);
    return 0;
}
