/* Where one decode step's time goes: prefill P tokens, then D single-token steps with every
 * backend op timed (the model's op table is wrapped). Prints per op kind the milliseconds per
 * step, and per linear shape its GB/s; the rest of the step (host code between ops) is "other".
 *   cpu_prof MODEL_DIR [-t THREADS=2] [-p 512] [-n 64]
 * Timing adds ~50 ns per op; compare variants in one run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/util.h"
#include "lmcore.h"
#include "models/model.h"

enum { P_LINEAR, P_ATTN, P_NORM, P_ROPE, P_GLU, P_ADD, P_EMBED, P_COPY, P_OTHER_OP, P_COUNT };
static const char *const NAMES[P_COUNT] = {"linear", "attention", "rmsnorm", "rope", "glu",
                                           "add", "embed", "up/download", "other ops"};
#define MAXSHAPES 16
static struct {
    double t[P_COUNT];
    long n[P_COUNT];
    struct {
        int out, in;
        double t, bytes;
        long n;
    } sh[MAXSHAPES];
    int nsh;
    const lm_backend_ops *inner;
} P;

#define TIMED(kind, call)                                                                                          \
    do {                                                                                                           \
        double t0_ = lm_time_s();                                                                                  \
        call;                                                                                                      \
        P.t[kind] += lm_time_s() - t0_;                                                                            \
        P.n[kind]++;                                                                                               \
    } while (0)

static void p_linear(lm_backend *be, const lm_linear *w, const float *x, int T, float *y) {
    double t0 = lm_time_s();
    P.inner->linear(be, w, x, T, y);
    double dt = lm_time_s() - t0;
    P.t[P_LINEAR] += dt;
    P.n[P_LINEAR]++;
    int i = 0;
    while (i < P.nsh && !(P.sh[i].out == w->out && P.sh[i].in == w->in))
        i++;
    if (i == P.nsh && P.nsh < MAXSHAPES)
        P.sh[P.nsh++] = (__typeof__(P.sh[0])){.out = w->out, .in = w->in};
    if (i < MAXSHAPES) {
        P.sh[i].t += dt;
        P.sh[i].bytes += (double)lm_linear_bytes(w);
        P.sh[i].n++;
    }
}
static void p_linear_n(lm_backend *be, int n, const lm_linear *const *w, const float *x, int T, float *const *y) {
    double t0 = lm_time_s();
    P.inner->linear_n(be, n, w, x, T, y);
    double dt = lm_time_s() - t0, b = 0;
    for (int k = 0; k < n; k++)
        b += (double)lm_linear_bytes(w[k]);
    P.t[P_LINEAR] += dt;
    P.n[P_LINEAR]++;
    int i = 0, out = 0;
    for (int k = 0; k < n; k++)
        out += w[k]->out;
    while (i < P.nsh && !(P.sh[i].out == -out && P.sh[i].in == w[0]->in))
        i++;
    if (i == P.nsh && P.nsh < MAXSHAPES)
        P.sh[P.nsh++] = (__typeof__(P.sh[0])){.out = -out, .in = w[0]->in};
    if (i < MAXSHAPES) {
        P.sh[i].t += dt;
        P.sh[i].bytes += b;
        P.sh[i].n++;
    }
}
static void p_linear_glu(lm_backend *be, const lm_linear *g, const lm_linear *u, const float *x, int T, lm_act act,
                         float limit, float *gb, float *ub, float *out) {
    double t0 = lm_time_s();
    P.inner->linear_glu(be, g, u, x, T, act, limit, gb, ub, out);
    double dt = lm_time_s() - t0;
    P.t[P_LINEAR] += dt;
    P.n[P_LINEAR]++;
    int i = 0;
    while (i < P.nsh && !(P.sh[i].out == -2 * g->out && P.sh[i].in == g->in))
        i++;
    if (i == P.nsh && P.nsh < MAXSHAPES)
        P.sh[P.nsh++] = (__typeof__(P.sh[0])){.out = -2 * g->out, .in = g->in};
    if (i < MAXSHAPES) {
        P.sh[i].t += dt;
        P.sh[i].bytes += (double)lm_linear_bytes(g) + (double)lm_linear_bytes(u);
        P.sh[i].n++;
    }
}
static void p_attention(lm_backend *be, const lm_attn_args *a) { TIMED(P_ATTN, P.inner->attention(be, a)); }
static void p_rmsnorm(lm_backend *be, const float *x, const float *w, int rows, int n, float eps, float *y) {
    TIMED(P_NORM, P.inner->rmsnorm(be, x, w, rows, n, eps, y));
}
static void p_add_rmsnorm(lm_backend *be, float *x, const float *y, const float *w, int rows, int n, float eps,
                          float *h) {
    TIMED(P_NORM, P.inner->add_rmsnorm(be, x, y, w, rows, n, eps, h));
}
static void p_rope(lm_backend *be, float *x, int T, int nh, int hd, int rot, const float *cs) {
    TIMED(P_ROPE, P.inner->rope(be, x, T, nh, hd, rot, cs));
}
static void p_glu(lm_backend *be, const float *g, const float *u, int ld, int T, int n, lm_act act, float limit,
                  float *out) {
    TIMED(P_GLU, P.inner->glu(be, g, u, ld, T, n, act, limit, out));
}
static void p_add(lm_backend *be, float *x, const float *y, size_t n) { TIMED(P_ADD, P.inner->add(be, x, y, n)); }
static void p_embed(lm_backend *be, const lm_linear *t, const int32_t *ids, int T, float s, float *out) {
    TIMED(P_EMBED, P.inner->embed(be, t, ids, T, s, out));
}
static void p_upload(lm_backend *be, void *d, const void *s, size_t n) { TIMED(P_COPY, P.inner->upload(be, d, s, n)); }
static void p_download(lm_backend *be, void *d, const void *s, size_t n) {
    TIMED(P_COPY, P.inner->download(be, d, s, n));
}
static int p_kv_put(lm_backend *be, void *kd, void *vd, const float *k, const float *v, int T, int dim,
                    int32_t *pos_d, int32_t p0, const lm_rope_args *rope, int f16) {
    int r;
    TIMED(P_OTHER_OP, r = P.inner->kv_put(be, kd, vd, k, v, T, dim, pos_d, p0, rope, f16));
    return r;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: cpu_prof MODEL_DIR [-t THREADS] [-p PROMPT] [-n DECODE]\n");
        return 2;
    }
    int threads = 2, Pn = 512, D = 64;
    for (int i = 2; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "-t"))
            threads = v;
        else if (!strcmp(argv[i], "-p"))
            Pn = v;
        else if (!strcmp(argv[i], "-n"))
            D = v;
    }
    lm_model_params mp = lm_model_default_params();
    mp.n_threads = threads;
    lm_model *m = NULL;
    lm_ctx *ctx = NULL;
    if (lm_model_load(argv[1], &mp, &m) != LM_OK) {
        fprintf(stderr, "cpu_prof: %s\n", lm_last_error());
        return 1;
    }
    lm_ctx_params cp = lm_ctx_default_params();
    cp.max_tokens = Pn + D + 8;
    if (lm_ctx_new(m, &cp, &ctx) != LM_OK) {
        fprintf(stderr, "cpu_prof: %s\n", lm_last_error());
        return 1;
    }
    int V = m->cfg.vocab;
    int32_t *ids = malloc((size_t)(Pn + D) * sizeof *ids);
    float *logits = malloc((size_t)V * sizeof *logits);
    for (int i = 0; i < Pn + D; i++)
        ids[i] = (int32_t)((1000 + (int64_t)i * 7919) % 120000 % V);
    if (lm_ctx_eval(ctx, ids, Pn, logits, 0) != LM_OK)
        return 1;
    for (int i = 0; i < 4; i++) /* warm-up steps, untimed */
        lm_ctx_eval(ctx, ids + Pn, 1, logits, 0);
    lm_ctx_truncate(ctx, Pn);

    static lm_backend_ops wrapped;
    P.inner = m->be->ops;
    wrapped = *P.inner;
    wrapped.linear = p_linear;
    wrapped.linear_n = P.inner->linear_n ? p_linear_n : NULL;
    wrapped.linear_glu = P.inner->linear_glu ? p_linear_glu : NULL;
    wrapped.attention = p_attention;
    wrapped.rmsnorm = p_rmsnorm;
    wrapped.add_rmsnorm = P.inner->add_rmsnorm ? p_add_rmsnorm : NULL;
    wrapped.rope = p_rope;
    wrapped.glu = p_glu;
    wrapped.add = p_add;
    wrapped.embed = p_embed;
    wrapped.upload = p_upload;
    wrapped.download = p_download;
    wrapped.kv_put = P.inner->kv_put ? p_kv_put : NULL;
    m->be->ops = &wrapped;

    double t0 = lm_time_s();
    for (int i = 0; i < D; i++)
        if (lm_ctx_eval(ctx, ids + Pn + i, 1, logits, 0) != LM_OK)
            return 1;
    double total = lm_time_s() - t0;
    m->be->ops = P.inner;

    double ops = 0;
    printf("%s: %d decode steps after %d tokens, %.2f ms/step (%.1f tok/s)\n", argv[1], D, Pn, 1e3 * total / D,
           D / total);
    for (int k = 0; k < P_COUNT; k++) {
        ops += P.t[k];
        if (P.n[k])
            printf("  %-12s %7.3f ms/step %5.1f%%  (%ld calls/step, %.1f us/call)\n", NAMES[k], 1e3 * P.t[k] / D,
                   100 * P.t[k] / total, P.n[k] / D, 1e6 * P.t[k] / P.n[k]);
    }
    printf("  %-12s %7.3f ms/step %5.1f%%\n", "host/other", 1e3 * (total - ops) / D, 100 * (total - ops) / total);
    printf("  linear by shape (out<0: fused ops, total rows):\n");
    for (int i = 0; i < P.nsh; i++)
        printf("    %6d x %-6d %7.3f ms/step %5.1f%%  %6.1f GB/s  (%ld calls/step)\n", P.sh[i].out, P.sh[i].in,
               1e3 * P.sh[i].t / D, 100 * P.sh[i].t / total, P.sh[i].bytes / P.sh[i].t / 1e9, P.sh[i].n / D);
    free(ids);
    free(logits);
    lm_ctx_free(ctx);
    lm_model_free(m);
    return 0;
}
