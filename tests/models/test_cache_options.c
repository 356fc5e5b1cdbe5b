/* KV cache options: --max-kv-size (keep 4 + most recent), truncation for prefix reuse, and
 * prompt cache save/load (exactly the same continuation). */
#include <unistd.h>

#include "core/util.h"
#include "fixture_runner.h"
#include "models/model.h"

static lm_model *load(const char *name) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/%s", t_fixtures(), name);
    lm_model *m = NULL;
    if (lm_model_load(dir, NULL, &m) != LM_OK)
        CHECKF(0, "%s: %s", name, lm_last_error());
    return m;
}

static void fill_ids(int32_t *ids, int n, int seed) {
    for (int i = 0; i < n; i++)
        ids[i] = 3 + (seed * 131 + i * 37) % 500;
}

static void test_max_kv(void) {
    lm_model *m = load("llama");
    if (!m)
        return;
    int V = m->cfg.vocab, M = 32, K = 4;
    lm_ctx *plain = NULL, *rot = NULL;
    lm_ctx_params p = lm_ctx_default_params();
    p.max_kv_size = M;
    CHECK(p.kv_keep == 4);
    CHECK(lm_ctx_new(m, NULL, &plain) == LM_OK && lm_ctx_new(m, &p, &rot) == LM_OK);
    float *a = malloc((size_t)V * sizeof *a), *b = malloc((size_t)V * sizeof *b);
    int32_t ids[100];
    fill_ids(ids, 100, 1);
    /* within max_kv_size the rotating cache must equal the plain one */
    CHECK(lm_ctx_eval(plain, ids, 20, a, 0) == LM_OK && lm_ctx_eval(rot, ids, 20, b, 0) == LM_OK);
    double d = max_abs_diff(a, b, (size_t)V);
    for (int i = 20; i < M; i++) {
        CHECK(lm_ctx_eval(plain, ids + i, 1, a, 0) == LM_OK && lm_ctx_eval(rot, ids + i, 1, b, 0) == LM_OK);
        double di = max_abs_diff(a, b, (size_t)V);
        d = di > d ? di : d;
    }
    CHECKF(d <= 1e-6, "max_kv_size: differs from the plain cache before it fills (%g)", d);
    /* beyond it: every layer holds exactly the first K positions and the latest M-K */
    int ok = 1;
    for (int i = M; i < 100; i++) {
        CHECK(lm_ctx_eval(rot, ids + i, 1, b, 0) == LM_OK);
        for (int l = 0; l < m->cfg.n_layers; l++) {
            const lm_kv_layer *L = &rot->kv.layers[l];
            int seen[100] = {0}, live = 0;
            for (int r = 0; r < L->n; r++)
                if (L->pos[r] >= 0) {
                    seen[L->pos[r]]++;
                    live++;
                }
            for (int q = 0; q <= i; q++)
                ok &= seen[q] == ((q < K || q > i - (M - K)) ? 1 : 0);
            ok &= live == M && L->cap <= M;
        }
    }
    CHECKF(ok, "max_kv_size: the cache does not hold exactly the first %d and the last %d positions", K, M - K);
    CHECK(lm_ctx_n_past(rot) == 100); /* the sequence grows past the cache */
    /* a prefill chunk longer than the cache */
    lm_ctx_reset(rot);
    CHECK(lm_ctx_eval(rot, ids, 60, b, 0) == LM_OK);
    CHECK(lm_ctx_eval(rot, ids + 60, 1, b, 0) == LM_OK && rot->kv.layers[0].n <= 60);
    printf("  max_kv_size %d: equal to the plain cache until full (max |diff| %.1e), then first %d + last %d kept\n",
           M, d, K, M - K);
    free(a);
    free(b);
    lm_ctx_free(plain);
    lm_ctx_free(rot);
    lm_model_free(m);
}

static void test_truncate(void) {
    lm_model *m = load("qwen3");
    if (!m)
        return;
    int V = m->cfg.vocab;
    lm_ctx *a = NULL, *b = NULL;
    CHECK(lm_ctx_new(m, NULL, &a) == LM_OK && lm_ctx_new(m, NULL, &b) == LM_OK);
    float *la = malloc((size_t)V * sizeof *la), *lb = malloc((size_t)V * sizeof *lb);
    int32_t ids[24], other[24];
    fill_ids(ids, 24, 2);
    fill_ids(other, 24, 3);
    memcpy(other, ids, 12 * sizeof *ids); /* shares a 12-token prefix */
    CHECK(lm_ctx_eval(a, ids, 24, la, 0) == LM_OK);
    CHECK(lm_ctx_truncate(a, 12) == LM_OK && lm_ctx_n_past(a) == 12);
    CHECK(lm_ctx_eval(a, other + 12, 12, la, 0) == LM_OK);
    CHECK(lm_ctx_eval(b, other, 24, lb, 0) == LM_OK);
    double d = max_abs_diff(la, lb, (size_t)V);
    CHECKF(d <= 1e-5, "truncate + re-eval differs from a fresh run (%g)", d);
    free(la);
    free(lb);
    lm_ctx_free(a);
    lm_ctx_free(b);
    lm_model_free(m);
    /* a rotating cache that has dropped tokens cannot be truncated */
    m = load("gemma3_text");
    if (!m)
        return;
    CHECK(lm_ctx_new(m, NULL, &a) == LM_OK);
    CHECK(lm_ctx_eval(a, ids, 6, NULL, 0) == LM_OK);
    CHECK(lm_ctx_truncate(a, 3) == LM_OK); /* nothing evicted yet (window 8) */
    CHECK(lm_ctx_eval(a, ids, 20, NULL, 0) == LM_OK);
    CHECK(lm_ctx_eval(a, ids, 1, NULL, 0) == LM_OK); /* this step drops rows out of the window */
    CHECK(lm_ctx_truncate(a, 10) == LM_ERR_UNSUPPORTED && strstr(lm_last_error(), "rotating"));
    printf("  truncate: prefix reuse equals a fresh run (max |diff| %.1e); refused after eviction\n", d);
    lm_ctx_free(a);
    lm_model_free(m);
}

static void test_save_load(const char *name) {
    lm_model *m = load(name), *other = load("llama");
    if (!m || !other)
        return;
    int V = m->cfg.vocab;
    char path[256];
    snprintf(path, sizeof path, "/tmp/lmcore_pc_%d_%s.safetensors", (int)getpid(), name);
    lm_ctx *a = NULL, *b = NULL, *c = NULL;
    CHECK(lm_ctx_new(m, NULL, &a) == LM_OK && lm_ctx_new(m, NULL, &b) == LM_OK && lm_ctx_new(other, NULL, &c) == LM_OK);
    int32_t ids[21];
    fill_ids(ids, 21, 4);
    float *la = malloc((size_t)V * sizeof *la), *lb = malloc((size_t)V * sizeof *lb);
    CHECK(lm_ctx_eval(a, ids, 20, NULL, 0) == LM_OK);
    CHECK(lm_ctx_save(a, path, ids, 20) == LM_OK);
    int32_t *tok = NULL;
    int nt = 0;
    CHECK(lm_ctx_eval(b, ids, 3, NULL, 0) == LM_OK); /* loading replaces whatever b held */
    CHECK(lm_ctx_load(b, path, &tok, &nt) == LM_OK);
    CHECK(nt == 20 && tok && memcmp(tok, ids, 20 * sizeof *ids) == 0 && lm_ctx_n_past(b) == 20);
    lm_free_tokens(tok);
    CHECK(lm_ctx_eval(a, ids + 20, 1, la, 0) == LM_OK && lm_ctx_eval(b, ids + 20, 1, lb, 0) == LM_OK);
    CHECKF(memcmp(la, lb, (size_t)V * sizeof *la) == 0, "%s: continuation from a loaded prompt cache differs", name);
    /* another model's context refuses the file */
    CHECK(lm_ctx_load(c, path, &tok, &nt) == LM_ERR_INVALID_ARG && tok == NULL);
    /* a file that is not a prompt cache */
    char exp[1100];
    snprintf(exp, sizeof exp, "%s/models/%s/expected.safetensors", t_fixtures(), name);
    CHECK(lm_ctx_load(b, exp, &tok, &nt) == LM_ERR_FORMAT && tok == NULL);
    printf("  prompt cache (%s): save/load continues bit for bit\n", name);
    unlink(path);
    free(la);
    free(lb);
    lm_ctx_free(a);
    lm_ctx_free(b);
    lm_ctx_free(c);
    lm_model_free(m);
    lm_model_free(other);
}

/* Quantized KV cache: close to the f32 cache (difference printed), identical before
 * quantized_kv_start, smaller, and a quantized prompt cache continues bit for bit. */
static void test_quantized_kv(void) {
    lm_model *m = load("qwen3"); /* head_dim 32 */
    if (!m)
        return;
    int V = m->cfg.vocab;
    float *a = malloc((size_t)V * sizeof *a), *b = malloc((size_t)V * sizeof *b);
    int32_t ids[40];
    fill_ids(ids, 40, 5);
    lm_ctx_params bad = lm_ctx_default_params();
    lm_ctx *x = NULL;
    bad.kv_bits = 8; /* group 64 does not divide head_dim 32 */
    CHECK(lm_ctx_new(m, &bad, &x) == LM_ERR_INVALID_ARG && strstr(lm_last_error(), "kv_group_size"));
    bad.kv_bits = 7;
    bad.kv_group_size = 32;
    CHECK(lm_ctx_new(m, &bad, &x) == LM_ERR_INVALID_ARG && strstr(lm_last_error(), "kv_bits"));
    static const int BITS[2] = {8, 4};
    double worst[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        lm_ctx *plain = NULL, *q = NULL;
        lm_ctx_params p = lm_ctx_default_params();
        p.kv_bits = BITS[k];
        p.kv_group_size = 32;
        p.quantized_kv_start = 12;
        CHECK(lm_ctx_new(m, NULL, &plain) == LM_OK && lm_ctx_new(m, &p, &q) == LM_OK);
        CHECK(lm_ctx_eval(plain, ids, 8, a, 0) == LM_OK && lm_ctx_eval(q, ids, 8, b, 0) == LM_OK);
        double before = max_abs_diff(a, b, (size_t)V);
        int i = 8;
        for (; i <= 12; i++) { /* the cache turns quantized after the step that passes 12 tokens */
            CHECK(lm_ctx_eval(plain, ids + i, 1, a, 0) == LM_OK && lm_ctx_eval(q, ids + i, 1, b, 0) == LM_OK);
            double d = max_abs_diff(a, b, (size_t)V);
            before = d > before ? d : before;
        }
        CHECKF(before == 0.0, "kv_bits %d: differs before quantized_kv_start (%g)", BITS[k], before);
        CHECK(q->kv.bits == BITS[k] && lm_kv_bytes(&q->kv) < lm_kv_bytes(&plain->kv));
        for (; i < 40; i++) {
            CHECK(lm_ctx_eval(plain, ids + i, 1, a, 0) == LM_OK && lm_ctx_eval(q, ids + i, 1, b, 0) == LM_OK);
            double d = max_abs_diff(a, b, (size_t)V);
            worst[k] = d > worst[k] ? d : worst[k];
        }
        printf("  quantized KV %d-bit g32: max |logit diff| vs f32 cache %.4f over 28 steps; cache %zu vs %zu bytes\n",
               BITS[k], worst[k], lm_kv_bytes(&q->kv), lm_kv_bytes(&plain->kv));
        /* a quantized prompt cache continues exactly */
        char path[128];
        snprintf(path, sizeof path, "/tmp/lmcore_qkv_%d_%d.safetensors", (int)getpid(), BITS[k]);
        lm_ctx *r = NULL;
        int32_t *tok = NULL;
        int nt = 0;
        CHECK(lm_ctx_new(m, &p, &r) == LM_OK);
        CHECK(lm_ctx_save(q, path, ids, 40) == LM_OK && lm_ctx_load(r, path, &tok, &nt) == LM_OK && nt == 40);
        lm_free_tokens(tok);
        CHECK(lm_ctx_eval(q, ids, 1, a, 0) == LM_OK && lm_ctx_eval(r, ids, 1, b, 0) == LM_OK);
        CHECK(memcmp(a, b, (size_t)V * sizeof *a) == 0);
        unlink(path);
        lm_ctx_free(r);
        lm_ctx_free(plain);
        lm_ctx_free(q);
    }
    CHECKF(worst[0] < 0.05 && worst[1] < 1.0 && worst[0] < worst[1],
           "quantized KV differences out of range: 8-bit %g, 4-bit %g", worst[0], worst[1]);
    free(a);
    free(b);
    lm_model_free(m);
}

/* f16 KV cache: every fixture still matches transformers (F16_KV_TOL, greedy identical); layer 0's
 * rows are the f32 cache's rounded to f16; half the bytes; a reset starts in f16 again;
 * quantizing later starts from the f16 rows; an f16 prompt cache continues bit for bit and an f32
 * context refuses it. */
#define F16_KV_TOL 5e-3
static void test_f16_kv(void) {
    static const char *const ALL[] = {"llama", "llama_long", "qwen2", "qwen3", "mistral", "mistral3", "phi3", "smollm3",
                                      "gemma3_text", "gemma3n_text", "qwen3_moe", "gpt_oss", "qwen3_mlx_q4",
                                      "llama_mlx_q8_g32", "llama_mlx_mixed_3_6", "qwen3_moe_mlx_q4",
                                      "gpt_oss_mlx_mxfp4_q8", "gpt_oss_hf_mxfp4"};
    lm_ctx_params p16 = lm_ctx_default_params();
    p16.kv_f16 = 1;
    for (size_t i = 0; i < sizeof ALL / sizeof ALL[0]; i++)
        run_fixture_ctx(ALL[i], NULL, &p16, F16_KV_TOL, F16_KV_TOL);
    lm_model *m = load("qwen3");
    if (!m)
        return;
    int V = m->cfg.vocab;
    float *a = malloc((size_t)V * sizeof *a), *b = malloc((size_t)V * sizeof *b);
    int32_t ids[40];
    fill_ids(ids, 40, 6);
    lm_ctx *x = NULL, *h = NULL;
    lm_ctx_params two = p16;
    two.kv_f16 = 2;
    CHECK(lm_ctx_new(m, &two, &x) == LM_ERR_INVALID_ARG && strstr(lm_last_error(), "kv_f16") && !x);
    CHECK(lm_ctx_new(m, NULL, &x) == LM_OK && lm_ctx_new(m, &p16, &h) == LM_OK);
    CHECK(lm_ctx_eval(x, ids, 20, a, 0) == LM_OK && lm_ctx_eval(h, ids, 20, b, 0) == LM_OK);
    const lm_kv_layer *L32 = &x->kv.layers[0], *L16 = &h->kv.layers[0];
    CHECK(h->kv.bits == LM_KV_F16 && L16->n == 20 && L32->n == 20);
    size_t n = (size_t)L16->n * L16->dim, bad = 0;
    for (size_t i = 0; i < n; i++) /* (the CPU backend's memory is the host's) */
        bad += lm_f32_to_f16(((const float *)L32->k)[i]) != ((const uint16_t *)L16->k)[i] ||
               lm_f32_to_f16(((const float *)L32->v)[i]) != ((const uint16_t *)L16->v)[i];
    CHECKF(bad == 0, "f16 KV: %zu of layer 0's values are not the f32 cache's rounded to f16", bad);
    CHECK(2 * lm_kv_bytes(&h->kv) == lm_kv_bytes(&x->kv));
    double d = max_abs_diff(a, b, (size_t)V);
    for (int i = 20; i < 30; i++) {
        CHECK(lm_ctx_eval(x, ids + i, 1, a, 0) == LM_OK && lm_ctx_eval(h, ids + i, 1, b, 0) == LM_OK);
        double di = max_abs_diff(a, b, (size_t)V);
        d = di > d ? di : d;
    }
    CHECKF(d < F16_KV_TOL, "f16 KV: max |logit diff| vs the f32 cache %g", d);
    /* an f16 prompt cache */
    char path[128];
    snprintf(path, sizeof path, "/tmp/lmcore_f16kv_%d.safetensors", (int)getpid());
    lm_ctx *r = NULL;
    int32_t *tok = NULL;
    int nt = 0;
    CHECK(lm_ctx_new(m, &p16, &r) == LM_OK);
    CHECK(lm_ctx_save(h, path, ids, 30) == LM_OK && lm_ctx_load(r, path, &tok, &nt) == LM_OK && nt == 30);
    lm_free_tokens(tok);
    CHECK(lm_ctx_eval(h, ids + 30, 1, a, 0) == LM_OK && lm_ctx_eval(r, ids + 30, 1, b, 0) == LM_OK);
    CHECKF(memcmp(a, b, (size_t)V * sizeof *a) == 0, "f16 KV: continuation from a loaded prompt cache differs");
    CHECK(lm_ctx_load(x, path, &tok, &nt) == LM_ERR_INVALID_ARG && tok == NULL); /* an f32 context */
    unlink(path);
    lm_ctx_reset(h);
    CHECK(h->kv.bits == LM_KV_F16 && lm_ctx_eval(h, ids, 4, NULL, 0) == LM_OK);
    /* f16 rows, then 8-bit from token 13 on: close to the f32 cache */
    lm_ctx_params pq = p16;
    pq.kv_bits = 8, pq.kv_group_size = 32, pq.quantized_kv_start = 12;
    lm_ctx *q = NULL;
    CHECK(lm_ctx_new(m, &pq, &q) == LM_OK);
    lm_ctx_reset(x);
    CHECK(lm_ctx_eval(x, ids, 8, a, 0) == LM_OK && lm_ctx_eval(q, ids, 8, b, 0) == LM_OK);
    double dq = 0;
    for (int i = 8; i < 30; i++) {
        CHECK(lm_ctx_eval(x, ids + i, 1, a, 0) == LM_OK && lm_ctx_eval(q, ids + i, 1, b, 0) == LM_OK);
        double di = max_abs_diff(a, b, (size_t)V);
        dq = di > dq ? di : dq;
    }
    CHECK(q->kv.bits == 8);
    CHECKF(dq < 0.05, "f16 then 8-bit KV: max |logit diff| vs the f32 cache %g", dq);
    printf("  f16 KV (qwen3): layer 0 rows = f32 rows rounded; max |logit diff| vs f32 cache %.2e over 10 steps; "
           "then 8-bit: %.2e; half the bytes\n", d, dq);
    free(a);
    free(b);
    lm_ctx_free(x);
    lm_ctx_free(h);
    lm_ctx_free(r);
    lm_ctx_free(q);
    lm_model_free(m);
}

int main(void) {
    test_f16_kv();
    test_quantized_kv();
    test_max_kv();
    test_truncate();
    test_save_load("qwen3");
    test_save_load("gemma3_text"); /* rotating sliding layers */
    return test_done("cache_options");
}
