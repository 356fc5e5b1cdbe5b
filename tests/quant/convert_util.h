/* Helpers for the convert tests: temp dirs, running a model on a fixture's prompt, logit diffs. */
#ifndef LM_TEST_CONVERT_UTIL_H
#define LM_TEST_CONVERT_UTIL_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "lmcore.h"
#include "test_util.h"

#define CV_MAX_T 512
#define CV_MAX_N 64

typedef struct run_out {
    int T, N, V;
    float *logits;  /* [T, V] prefill */
    float *decode;  /* [N, V] */
    int32_t pick[CV_MAX_N]; /* argmax after the prompt, then after each decode step but the last */
} run_out;

static inline void run_free(run_out *r) {
    free(r->logits);
    free(r->decode);
    memset(r, 0, sizeof *r);
}

static inline int cv_argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

/* The fixture's input_ids. */
static inline int fixture_ids(const char *fixture, int32_t *ids, int cap) {
    char p[1024];
    snprintf(p, sizeof p, "%s/models/%s/expected.safetensors", t_fixtures(), fixture);
    lm_st_set *s;
    if (lm_st_open_file(p, &s) != LM_OK)
        return -1;
    const lm_st_tensor *t = lm_st_find(s, "input_ids");
    int n = t && t->numel <= cap ? (int)t->numel : -1;
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)((const int64_t *)t->data)[i];
    lm_st_close(s);
    return n;
}

/* Prefill `ids`, then decode N tokens one at a time: its own greedy picks, or `follow` (another
 * run's picks, so that both runs see the same history and their logits stay comparable).
 * 0 on success. */
static inline int run_model_follow(const char *dir, const int32_t *ids, int T, int N, const int32_t *follow,
                                   run_out *r) {
    memset(r, 0, sizeof *r);
    lm_model *m = NULL;
    lm_ctx *ctx = NULL;
    if (lm_model_load(dir, NULL, &m) != LM_OK || lm_ctx_new(m, NULL, &ctx) != LM_OK) {
        fprintf(stderr, "%s: %s\n", dir, lm_last_error());
        lm_model_free(m);
        return 1;
    }
    lm_model_info info;
    lm_model_get_info(m, &info);
    r->T = T;
    r->N = N;
    r->V = info.vocab_size;
    r->logits = malloc((size_t)T * r->V * sizeof(float));
    r->decode = malloc((size_t)(N ? N : 1) * r->V * sizeof(float));
    int rc = lm_ctx_eval(ctx, ids, T, r->logits, 1) != LM_OK;
    int32_t next = cv_argmax(r->logits + (size_t)(T - 1) * r->V, r->V);
    for (int i = 0; !rc && i < N; i++) {
        r->pick[i] = next;
        int32_t feed = follow ? follow[i] : next;
        rc = lm_ctx_eval(ctx, &feed, 1, r->decode + (size_t)i * r->V, 0) != LM_OK;
        next = cv_argmax(r->decode + (size_t)i * r->V, r->V);
    }
    if (rc)
        fprintf(stderr, "%s: eval failed: %s\n", dir, lm_last_error());
    lm_ctx_free(ctx);
    lm_model_free(m);
    return rc;
}

static inline int run_model(const char *dir, const int32_t *ids, int T, int N, run_out *r) {
    return run_model_follow(dir, ids, T, N, NULL, r);
}

static inline void diff_stats(const float *a, const float *b, size_t n, double *max_d, double *mean_d) {
    double mx = 0, sum = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= mx))
            mx = isnan(d) ? INFINITY : d;
        sum += d;
    }
    *max_d = mx;
    *mean_d = n ? sum / (double)n : 0;
}

static inline char *make_tmpdir(void) {
    static char buf[256];
    snprintf(buf, sizeof buf, "/tmp/lmcore_convert_XXXXXX");
    return mkdtemp(buf);
}

/* rm -r of a directory holding only files. */
static inline void remove_tree(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

static inline int convert_to(const char *src, const char *dst, const lm_convert_params *p) {
    lm_convert_stats s;
    if (lm_convert(src, dst, p, &s) != LM_OK) {
        CHECKF(0, "convert %s -> %s: %s", src, dst, lm_last_error());
        return 1;
    }
    return 0;
}

#endif
