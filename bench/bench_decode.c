/* Load a model, report resident memory, and time greedy-free decode steps:
 *   bench_decode DIR [n_tokens (32)] [runs (3)] [threads (0: physical cores)]
 * Prints one line: file_bytes rss_load_bytes rss_decode_bytes tok_s_median tok_s_min tok_s_max
 * weight_bytes_per_token. VmRSS is read from /proc/self/status. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/util.h"
#include "lmcore.h"

static long long vmrss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = atoll(line + 6);
    if (f)
        fclose(f);
    return kb * 1024;
}

static long long dir_safetensors_bytes(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    long long total = 0;
    while (d && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 12 && strcmp(e->d_name + n - 12, ".safetensors") == 0) {
            char p[4096];
            struct stat sb;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (stat(p, &sb) == 0)
                total += sb.st_size;
        }
    }
    if (d)
        closedir(d);
    return total;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_decode DIR [n_tokens] [runs] [threads]\n");
        return 1;
    }
    int n_tok = argc > 2 ? atoi(argv[2]) : 32, runs = argc > 3 ? atoi(argv[3]) : 3;
    if (n_tok < 1 || runs < 1 || runs > 64) {
        fprintf(stderr, "bench_decode: bad n_tokens or runs\n");
        return 1;
    }
    lm_model_params mp = lm_model_default_params();
    mp.n_threads = argc > 4 ? atoi(argv[4]) : 0;
    lm_model *m;
    if (lm_model_load(argv[1], &mp, &m) != LM_OK) {
        fprintf(stderr, "bench_decode: %s\n", lm_last_error());
        return 1;
    }
    long long rss_load = vmrss();
    lm_ctx_params cp = lm_ctx_default_params();
    cp.max_tokens = n_tok + 8;
    lm_ctx *ctx;
    if (lm_ctx_new(m, &cp, &ctx) != LM_OK) {
        fprintf(stderr, "bench_decode: %s\n", lm_last_error());
        return 1;
    }
    lm_model_info info;
    lm_model_get_info(m, &info);
    float *logits = malloc((size_t)info.vocab_size * sizeof *logits);
    double tps[64];
    for (int r = 0; r < runs; r++) {
        lm_ctx_reset(ctx);
        int32_t id = 1;
        if (lm_ctx_eval(ctx, &id, 1, logits, 0) != LM_OK) /* first token outside the timing */
            return 1;
        double t0 = lm_time_s();
        for (int i = 0; i < n_tok; i++) {
            id = (int32_t)((i * 7919 + 13) % info.vocab_size); /* fixed ids: no sampling in the timing */
            if (lm_ctx_eval(ctx, &id, 1, logits, 0) != LM_OK) {
                fprintf(stderr, "bench_decode: %s\n", lm_last_error());
                return 1;
            }
        }
        tps[r] = n_tok / (lm_time_s() - t0);
    }
    long long rss_decode = vmrss();
    qsort(tps, (size_t)runs, sizeof *tps, cmp_d);
    printf("%lld %lld %lld %.3f %.3f %.3f\n", dir_safetensors_bytes(argv[1]), rss_load, rss_decode, tps[runs / 2],
           tps[0], tps[runs - 1]);
    free(logits);
    lm_ctx_free(ctx);
    lm_model_free(m);
    return 0;
}
