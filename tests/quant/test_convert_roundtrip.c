/* Issue 4 round trip: `lm_convert` bf16/f16/f32 fixtures to MLX 4-bit, 8-bit, MXFP4 and a mixed
 * recipe, load the result, and compare its logits with the unquantized model's (max and mean
 * |Δ| per bit width are printed). */
#include <cjson/cJSON.h>

#include "convert_util.h"
#include "core/util.h"
#include "quant/quant.h"

static char *tmp;

typedef struct q_result {
    double max_p, mean_p, max_d, mean_d;
    int same_greedy; /* greedy decisions equal to the unquantized model's (same history) */
    int n;
    double flip_margin; /* the largest top-1/top-2 margin of the unquantized model at a changed decision */
} q_result;

static double top2_margin(const float *x, int n) {
    int a = cv_argmax(x, n), b = a == 0 ? 1 : 0;
    for (int i = 0; i < n; i++)
        if (i != a && x[i] > x[b])
            b = i;
    return (double)x[a] - (double)x[b];
}

/* Convert `fixture` with params into tmp/<tag>, run it, compare with `base`. */
static int quantized_run(const char *fixture, const char *tag, const lm_convert_params *p, const run_out *base,
                         const int32_t *ids, q_result *res) {
    char src[1024], dst[1024];
    snprintf(src, sizeof src, "%s/models/%s", t_fixtures(), fixture);
    snprintf(dst, sizeof dst, "%s/%s_%s", tmp, fixture, tag);
    memset(res, 0, sizeof *res);
    if (convert_to(src, dst, p))
        return 1;
    run_out r;
    if (run_model_follow(dst, ids, base->T, base->N, base->pick, &r)) {
        CHECKF(0, "%s: the converted model does not run", dst);
        return 1;
    }
    diff_stats(r.logits, base->logits, (size_t)base->T * base->V, &res->max_p, &res->mean_p);
    diff_stats(r.decode, base->decode, (size_t)base->N * base->V, &res->max_d, &res->mean_d);
    res->n = base->N;
    for (int i = 0; i < base->N; i++) {
        res->same_greedy += r.pick[i] == base->pick[i];
        const float *row = i == 0 ? base->logits + (size_t)(base->T - 1) * base->V : base->decode + (size_t)(i - 1) * base->V;
        double mg = top2_margin(row, base->V);
        if (r.pick[i] != base->pick[i] && mg > res->flip_margin)
            res->flip_margin = mg;
    }
    printf("  %-12s %-10s prefill max|d| %.4f mean|d| %.5f   decode max|d| %.4f mean|d| %.5f   greedy %2d/%d same",
           fixture, tag, res->max_p, res->mean_p, res->max_d, res->mean_d, res->same_greedy, res->n);
    if (res->same_greedy < res->n)
        printf(" (changed at bf16 margins <= %.4f)", res->flip_margin);
    printf("\n");
    run_free(&r);
    return 0;
}

static lm_convert_params qparams(int bits, int group) {
    lm_convert_params p = lm_convert_default_params();
    p.quantize = 1;
    p.bits = bits;
    p.group_size = group;
    p.n_threads = 2;
    return p;
}

static int base_run(const char *fixture, int32_t *ids, run_out *base) {
    char src[1024];
    snprintf(src, sizeof src, "%s/models/%s", t_fixtures(), fixture);
    int T = fixture_ids(fixture, ids, CV_MAX_T);
    CHECKF(T > 0, "%s: no input_ids", fixture);
    if (T <= 0 || run_model(src, ids, T, 12, base)) {
        CHECKF(0, "%s: the bf16 model does not run", fixture);
        return 1;
    }
    return 0;
}

/* 4-bit and 8-bit (group 32: every linear of the tiny fixtures is quantized): 8-bit is far
 * closer than 4-bit and keeps the greedy continuation. */
static void test_bits(const char *fixture) {
    int32_t ids[CV_MAX_T];
    run_out base;
    if (base_run(fixture, ids, &base))
        return;
    q_result r4, r8;
    lm_convert_params p4 = qparams(4, 32), p8 = qparams(8, 32);
    if (!quantized_run(fixture, "q4_g32", &p4, &base, ids, &r4) &&
        !quantized_run(fixture, "q8_g32", &p8, &base, ids, &r8)) {
        CHECKF(r8.mean_p * 8 < r4.mean_p, "%s: 8-bit mean |d| %.5f is not well below 4-bit's %.5f", fixture,
               r8.mean_p, r4.mean_p);
        CHECKF(r8.max_p < 0.15 && r8.max_d < 0.15 && r8.mean_p < 0.03, "%s: 8-bit |d| max %.4f / %.4f mean %.4f",
               fixture, r8.max_p, r8.max_d, r8.mean_p);
        CHECKF(r4.mean_p < 0.3 && r4.max_p < 2.0, "%s: 4-bit |d| mean %.4f max %.4f", fixture, r4.mean_p, r4.max_p);
        CHECKF(r4.mean_p > 1e-3, "%s: 4-bit logits equal the bf16 ones (nothing quantized?)", fixture);
        CHECKF(r8.same_greedy == r8.n || (strcmp(fixture, "llama") != 0 && r8.flip_margin < 0.03),
               "%s: 8-bit greedy %d/%d, changed at margin %.4f", fixture, r8.same_greedy, r8.n, r8.flip_margin);
    }
    run_free(&base);
}

static cJSON *load_config(const char *dir) {
    char p[1100], *text;
    size_t n;
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (lm_read_file(p, &text, &n) != LM_OK)
        return NULL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    return j;
}

static int qbits(const cJSON *q, const char *module) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(q, module);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "bits");
    return cJSON_IsNumber(b) ? b->valueint : 0;
}

/* The written config: quantization == quantization_config, defaults, side files copied; a
 * quantized tensor equals the quantizer applied to the source row. */
static void test_layout(void) {
    char dst[600], path[700];
    snprintf(dst, sizeof dst, "%s/qwen3_q4_g32", tmp);
    cJSON *c = load_config(dst);
    CHECKF(c != NULL, "%s: no config.json", dst);
    if (!c)
        return;
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(c, "quantization");
    CHECK(cJSON_Compare(q, cJSON_GetObjectItemCaseSensitive(c, "quantization_config"), 1));
    CHECK(qbits(c, "quantization") == 4 && cJSON_GetObjectItemCaseSensitive(q, "group_size")->valueint == 32);
    CHECK(strcmp(cJSON_GetObjectItemCaseSensitive(q, "mode")->valuestring, "affine") == 0);
    CHECK(cJSON_GetObjectItemCaseSensitive(c, "_name_or_path") == NULL);
    cJSON_Delete(c);
    snprintf(path, sizeof path, "%s/generation_config.json", dst);
    CHECKF(lm_file_exists(path), "%s not copied", path);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dst);
    CHECKF(lm_file_exists(path), "%s missing", path);

    lm_st_set *in = NULL, *out = NULL;
    snprintf(path, sizeof path, "%s/models/qwen3/model.safetensors", t_fixtures());
    lm_st_open_file(path, &in);
    snprintf(path, sizeof path, "%s/model.safetensors", dst);
    lm_st_open_file(path, &out);
    CHECK(in && out);
    if (in && out) {
        const lm_st_tensor *w = lm_st_find(in, "model.layers.1.mlp.up_proj.weight");
        const lm_st_tensor *qw = lm_st_find(out, "model.layers.1.mlp.up_proj.weight");
        const lm_st_tensor *qs = lm_st_find(out, "model.layers.1.mlp.up_proj.scales");
        const lm_st_tensor *qb = lm_st_find(out, "model.layers.1.mlp.up_proj.biases");
        const lm_st_tensor *nrm = lm_st_find(out, "model.norm.weight");
        CHECK(w && qw && qs && qb && nrm && nrm->dtype == LM_DT_BF16);
        CHECK(lm_st_find(out, "model.norm.scales") == NULL);
        if (w && qw && qs && qb) {
            int in_dim = (int)w->shape[1], rows = (int)w->shape[0], bad = 0;
            CHECK(qw->dtype == LM_DT_U32 && qw->shape[0] == rows && qw->shape[1] == in_dim * 4 / 32);
            CHECK(qs->dtype == LM_DT_BF16 && qs->shape[1] == in_dim / 32 && qb->dtype == LM_DT_BF16);
            float *row = malloc((size_t)in_dim * sizeof *row), sc[64], bi[64];
            uint8_t *packed = malloc((size_t)in_dim);
            for (int r = 0; r < rows; r++) {
                for (int i = 0; i < in_dim; i++)
                    row[i] = lm_scalar_to_f32(w->data, LM_DT_BF16, (size_t)r * in_dim + i);
                lm_affine_quantize_row(row, in_dim, 4, 32, packed, sc, bi);
                bad += memcmp(packed, (const uint8_t *)qw->data + (size_t)r * in_dim / 2, (size_t)in_dim / 2) != 0;
                for (int g = 0; g < in_dim / 32; g++) {
                    size_t k = (size_t)r * (in_dim / 32) + g;
                    bad += lm_scalar_to_f32(qs->data, LM_DT_BF16, k) != lm_round_to_dtype(sc[g], LM_DT_BF16);
                    bad += lm_scalar_to_f32(qb->data, LM_DT_BF16, k) != lm_round_to_dtype(bi[g], LM_DT_BF16);
                }
            }
            CHECKF(bad == 0, "up_proj: %d rows/groups differ from lm_affine_quantize_row", bad);
            free(row);
            free(packed);
        }
    }
    lm_st_close(in);
    lm_st_close(out);
}

/* mlx-lm's mixed_3_6 on a 3-layer llama: layer 2 (>= 7*3/8) gets 6-bit v_proj (down_proj is
 * 160 wide: not a multiple of 64, left unquantized), lm_head 6 bits, everything else 3. */
static void test_recipe(void) {
    int32_t ids[CV_MAX_T];
    run_out base;
    if (base_run("llama", ids, &base))
        return;
    lm_convert_params p = lm_convert_default_params();
    p.recipe = "mixed_3_6";
    p.quantize = 1;
    q_result r;
    if (quantized_run("llama", "mixed_3_6", &p, &base, ids, &r) == 0) {
        char dst[600];
        snprintf(dst, sizeof dst, "%s/llama_mixed_3_6", tmp);
        cJSON *c = load_config(dst);
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(c, "quantization");
        CHECK(qbits(c, "quantization") == 3);
        CHECK(qbits(q, "model.layers.2.self_attn.v_proj") == 6 && qbits(q, "lm_head") == 6);
        CHECK(qbits(q, "model.layers.0.self_attn.v_proj") == 3 && qbits(q, "model.layers.1.self_attn.v_proj") == 3);
        CHECK(qbits(q, "model.layers.2.self_attn.q_proj") == 3 && qbits(q, "model.embed_tokens") == 3);
        CHECK(cJSON_GetObjectItemCaseSensitive(q, "model.layers.2.mlp.down_proj") == NULL);
        cJSON_Delete(c);
        CHECKF(r.mean_p < 0.4 && r.mean_p > 1e-3, "mixed_3_6 mean |d| %.4f", r.mean_p);
    }
    run_free(&base);
}

/* MXFP4 and small shards: the sharded 4-bit model gives exactly the unsharded one's logits. */
static void test_mxfp4_and_shards(void) {
    int32_t ids[CV_MAX_T];
    run_out base;
    if (base_run("qwen3", ids, &base))
        return;
    lm_convert_params p = lm_convert_default_params();
    p.quantize = 1;
    p.mode = LM_QUANT_MXFP4;
    q_result r;
    if (quantized_run("qwen3", "mxfp4", &p, &base, ids, &r) == 0)
        CHECKF(r.mean_p < 0.35 && r.mean_p > 1e-3, "mxfp4 mean |d| %.4f", r.mean_p);
    p = qparams(4, 32);
    p.max_shard_bytes = 40000;
    lm_convert_stats st;
    char src[600], dst[600], one[700];
    snprintf(src, sizeof src, "%s/models/qwen3", t_fixtures());
    snprintf(dst, sizeof dst, "%s/qwen3_sharded", tmp);
    CHECKF(lm_convert(src, dst, &p, &st) == LM_OK, "sharded: %s", lm_last_error());
    snprintf(one, sizeof one, "%s/model-00001-of-%05d.safetensors", dst, st.n_shards);
    CHECKF(st.n_shards >= 3 && lm_file_exists(one), "%d shards", st.n_shards);
    run_out a, b;
    snprintf(one, sizeof one, "%s/qwen3_q4_g32", tmp);
    if (!run_model(dst, ids, base.T, 4, &a) && !run_model(one, ids, base.T, 4, &b))
        CHECK(memcmp(a.logits, b.logits, (size_t)base.T * base.V * sizeof(float)) == 0);
    run_free(&a);
    run_free(&b);
    run_free(&base);
}

/* MoE: qwen3_moe (8 source shards, per-expert weights -> switch_mlp, 8-bit router) and gpt_oss
 * (fused [E, H, 2I] experts -> MLX gate/up/down, 8-bit router). */
static void test_moe(void) {
    static const char *const F[] = {"qwen3_moe", "gpt_oss"};
    static const char *const SW[] = {"model.layers.0.mlp.switch_mlp.gate_proj.weight",
                                     "model.layers.0.mlp.experts.down_proj.weight"};
    static const char *const ROUTER[] = {"model.layers.0.mlp.gate", "model.layers.0.mlp.router"};
    for (int f = 0; f < 2; f++) {
        int32_t ids[CV_MAX_T];
        run_out base;
        if (base_run(F[f], ids, &base))
            continue;
        q_result r4, r8;
        lm_convert_params p4 = qparams(4, 32), p8 = qparams(8, 32);
        if (!quantized_run(F[f], "q4_g32", &p4, &base, ids, &r4) && !quantized_run(F[f], "q8_g32", &p8, &base, ids, &r8)) {
            /* a router decision near a tie may pick another expert: larger max |d| than dense */
            CHECKF(r8.mean_p < 0.05 && r8.max_p < 1.5, "%s: 8-bit |d| mean %.4f max %.4f", F[f], r8.mean_p, r8.max_p);
            CHECKF(r8.mean_p * 4 < r4.mean_p && r4.mean_p < 0.3, "%s: mean |d| 8-bit %.5f 4-bit %.5f", F[f], r8.mean_p,
                   r4.mean_p);
            CHECKF(r8.same_greedy == r8.n || r8.flip_margin < 0.03, "%s: 8-bit greedy changed at margin %.4f", F[f],
                   r8.flip_margin);
            char dst[600];
            snprintf(dst, sizeof dst, "%s/%s_q4_g32", tmp, F[f]);
            lm_st_set *s = NULL;
            CHECK(lm_st_open_dir(dst, &s) == LM_OK);
            const lm_st_tensor *t = s ? lm_st_find(s, SW[f]) : NULL;
            CHECKF(t && t->ndim == 3 && t->dtype == LM_DT_U32, "%s: no stacked '%s'", F[f], SW[f]);
            lm_st_close(s);
            cJSON *c = load_config(dst);
            const cJSON *q = cJSON_GetObjectItemCaseSensitive(c, "quantization");
            CHECKF(qbits(q, ROUTER[f]) == 8, "%s: router '%s' not at 8 bits", F[f], ROUTER[f]);
            cJSON_Delete(c);
        }
        run_free(&base);
    }
}

/* Every other dense fixture (f16, f32 storage, fused qkv, VLM prefix, ...) converts to 8 bits
 * and keeps its greedy continuation. */
static void test_sweep(void) {
    static const char *const F[] = {"llama_long", "qwen2", "mistral", "mistral3", "phi3", "smollm3", "gemma3_text"};
    for (size_t f = 0; f < sizeof F / sizeof F[0]; f++) {
        int32_t ids[CV_MAX_T];
        run_out base;
        if (base_run(F[f], ids, &base))
            continue;
        q_result r;
        lm_convert_params p = qparams(8, 32);
        if (!quantized_run(F[f], "q8_g32", &p, &base, ids, &r))
            CHECKF(r.max_p < 0.2 && r.mean_p < 0.03 && r.mean_p > 1e-4 && (r.same_greedy == r.n || r.flip_margin < 0.03),
                   "%s: 8-bit |d| max %.4f mean %.4f, greedy %d/%d", F[f], r.max_p, r.mean_p, r.same_greedy, r.n);
        run_free(&base);
    }
}

int main(void) {
    tmp = make_tmpdir();
    if (!tmp) {
        fprintf(stderr, "cannot create a temp dir\n");
        return 2;
    }
    test_bits("llama");
    test_bits("qwen3");
    test_layout();
    test_recipe();
    test_mxfp4_and_shards();
    test_moe();
    test_sweep();
    remove_tree(tmp);
    return test_done("convert_roundtrip");
}
