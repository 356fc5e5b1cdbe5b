/* Tokenizer benchmark: load time of each tokenizer directory and single-core encode speed
 * on a text file. Prints one line per tokenizer:
 *   name  load_s  MB/s  tokens  bytes
 * usage: tokenizer_bench TEXT_FILE DIR [DIR...]  (see tokenizer_bench.sh, which compares
 * with Hugging Face tokenizers in the same run). Text is encoded in chunks of about 64 KB
 * split at newlines, as a server would encode requests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lmcore.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long k = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)k + 1);
    if (b && fread(b, 1, (size_t)k, f) != (size_t)k) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b)
        b[k] = 0;
    *n = (size_t)k;
    return b;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TEXT_FILE DIR [DIR...]\n", argv[0]);
        return 1;
    }
    size_t n;
    char *text = read_all(argv[1], &n);
    if (!text) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    int32_t cap = (int32_t)(n + 16);
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    for (int a = 2; a < argc; a++) {
        lm_tokenizer *tok = NULL;
        double t0 = now();
        if (lm_tokenizer_load(argv[a], &tok) != LM_OK) {
            fprintf(stderr, "%s: %s\n", argv[a], lm_last_error());
            return 1;
        }
        double t_load = now() - t0;
        long long total = 0;
        double best = 1e30;
        for (int rep = 0; rep < 3; rep++) {
            total = 0;
            t0 = now();
            for (size_t off = 0; off < n;) {
                size_t len = n - off < 65536 ? n - off : 65536;
                while (off + len < n && text[off + len - 1] != '\n' && len < n - off)
                    len++;
                int32_t k;
                if (lm_tokenizer_encode(tok, text + off, len, 0, ids, cap, &k) != LM_OK || k < 0) {
                    fprintf(stderr, "encode failed: %s\n", lm_last_error());
                    return 1;
                }
                total += k;
                off += len;
            }
            double t = now() - t0;
            if (t < best)
                best = t;
        }
        const char *name = strrchr(argv[a], '/');
        printf("%s\t%.3f\t%.2f\t%lld\t%zu\n", name ? name + 1 : argv[a], t_load, (double)n / best / 1e6, total, n);
        fflush(stdout);
        lm_tokenizer_free(tok);
    }
    free(ids);
    free(text);
    return 0;
}
