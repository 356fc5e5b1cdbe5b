/* Issue 4: `--dequantize` reproduces the dequantized values exactly (f32: the engine's own
 * q * scale + bias; bf16: those values rounded), also for MLX-made fixtures (affine, mixed bits,
 * MXFP4 experts), whose dequantized models give the quantized models' logits. */
#include "convert_util.h"
#include "core/util.h"
#include "io/config.h"
#include "layers/linear.h"
#include "quant/quant.h"

static char *tmp;

/* Every quantized module of `qdir` against the dense tensors of `ddir`. */
static void compare_dequant(const char *qdir, const char *ddir, lm_dtype want_dt) {
    lm_st_set *q = NULL, *d = NULL;
    lm_config cfg;
    if (lm_st_open_dir(qdir, &q) != LM_OK || lm_st_open_dir(ddir, &d) != LM_OK || lm_config_load(qdir, &cfg) != LM_OK) {
        CHECKF(0, "%s / %s: %s", qdir, ddir, lm_last_error());
        lm_st_close(q);
        lm_st_close(d);
        return;
    }
    int modules = 0, bad = 0;
    for (int i = 0; i < q->n_tensors; i++) {
        const lm_st_tensor *sc = &q->tensors[i];
        size_t nl = strlen(sc->name);
        if (nl < 7 || strcmp(sc->name + nl - 7, ".scales") != 0)
            continue;
        char mod[512], name[600];
        snprintf(mod, sizeof mod, "%.*s", (int)(nl - 7), sc->name);
        snprintf(name, sizeof name, "%s.weight", mod);
        const lm_st_tensor *w = lm_st_find(q, name), *dw = lm_st_find(d, name);
        snprintf(name, sizeof name, "%s.biases", mod);
        const lm_st_tensor *bi = lm_st_find(q, name);
        snprintf(name, sizeof name, "%s.scales", mod);
        CHECKF(w && dw && !lm_st_find(d, name) && dw->dtype == want_dt, "%s: module %s not dequantized", ddir, mod);
        if (!w || !dw || dw->dtype != want_dt)
            continue;
        lm_quant_cfg qc = lm_config_quant_for(&cfg, mod);
        lm_linear l = {.kind = qc.mxfp4 ? LM_W_MXFP4 : LM_W_AFFINE, .dtype = sc->dtype, .w = w->data,
                       .scales = sc->data, .biases = bi ? bi->data : NULL, .bits = qc.mxfp4 ? 4 : qc.bits,
                       .group = qc.mxfp4 ? 32 : qc.group_size};
        l.in = (int)dw->shape[dw->ndim - 1];
        l.out = (int)(dw->numel / l.in);
        l.w_row_bytes = (size_t)w->shape[w->ndim - 1] * 4;
        l.s_row_bytes = (size_t)sc->shape[sc->ndim - 1] * LM_DTYPES[sc->dtype].size;
        float *row = malloc((size_t)l.in * sizeof *row);
        for (int r = 0; r < l.out; r++) {
            lm_linear_row_f32(&l, r, row);
            for (int c = 0; c < l.in; c++) {
                float got = lm_scalar_to_f32(dw->data, want_dt, (size_t)r * l.in + c);
                bad += got != lm_round_to_dtype(row[c], want_dt) && !(isnan(got) && isnan(row[c]));
            }
        }
        free(row);
        modules++;
    }
    printf("  %-44s %d modules dequantized (%s), %d values differ\n", ddir + strlen(tmp) + 1, modules,
           LM_DTYPES[want_dt].short_name, bad);
    CHECKF(modules > 0 && bad == 0, "%s: %d modules, %d values differ", ddir, modules, bad);
    lm_config_free(&cfg);
    lm_st_close(q);
    lm_st_close(d);
}

static lm_convert_params dq(lm_convert_dtype dt) {
    lm_convert_params p = lm_convert_default_params();
    p.dequantize = 1;
    p.dtype = dt;
    p.n_threads = 2;
    return p;
}

/* Our own 4-bit qwen3, dequantized to f32 and to bf16 (default: the scales' dtype). */
static void test_own(void) {
    char src[600], q4[600], d32[600], d16[600];
    snprintf(src, sizeof src, "%s/models/qwen3", t_fixtures());
    snprintf(q4, sizeof q4, "%s/q4", tmp);
    snprintf(d32, sizeof d32, "%s/q4_dequant_f32", tmp);
    snprintf(d16, sizeof d16, "%s/q4_dequant_default", tmp);
    lm_convert_params p = lm_convert_default_params();
    p.quantize = 1;
    p.group_size = 32;
    lm_convert_params p32 = dq(LM_CONVERT_DTYPE_F32), pd = dq(LM_CONVERT_DTYPE_AUTO);
    if (convert_to(src, q4, &p) || convert_to(q4, d32, &p32) || convert_to(q4, d16, &pd))
        return;
    compare_dequant(q4, d32, LM_DT_F32);
    compare_dequant(q4, d16, LM_DT_BF16);
    char cfgp[700];
    snprintf(cfgp, sizeof cfgp, "%s/config.json", d32);
    char *text;
    size_t n;
    if (lm_read_file(cfgp, &text, &n) == LM_OK) {
        CHECKF(!strstr(text, "\"quantization") && strstr(text, "\"float32\""), "%s: quantization block kept or "
               "dtype not float32", cfgp);
        free(text);
    }
}

/* MLX-made fixtures: dequantized (f32) they give the quantized model's logits. */
static void test_fixture(const char *fixture) {
    char src[600], dst[600];
    snprintf(src, sizeof src, "%s/models/%s", t_fixtures(), fixture);
    snprintf(dst, sizeof dst, "%s/%s_dequant_f32", tmp, fixture);
    lm_convert_params p = dq(LM_CONVERT_DTYPE_F32);
    if (convert_to(src, dst, &p))
        return;
    compare_dequant(src, dst, LM_DT_F32);
    int32_t ids[CV_MAX_T];
    int T = fixture_ids(fixture, ids, CV_MAX_T);
    run_out a, b;
    if (T > 0 && !run_model(src, ids, T, 4, &a) && !run_model_follow(dst, ids, T, 4, a.pick, &b)) {
        double mx, mean;
        diff_stats(a.logits, b.logits, (size_t)T * a.V, &mx, &mean);
        printf("  %-44s logits vs the quantized model: max|d| %.2e\n", fixture, mx);
        /* the same weights; the packed kernels quantize activations on the fly (int16), so the
         * results agree to the fixture tolerance rather than bit for bit */
        CHECKF(mx < 2e-3, "%s: dequantized logits differ by %.3g", fixture, mx);
        run_free(&b);
    }
    run_free(&a);
}

int main(void) {
    tmp = make_tmpdir();
    if (!tmp)
        return 2;
    test_own();
    test_fixture("qwen3_mlx_q4");
    test_fixture("llama_mlx_mixed_3_6");
    test_fixture("llama_mlx_q8_g32");
    test_fixture("qwen3_moe_mlx_q4");
    test_fixture("gpt_oss_mlx_mxfp4_q8");
    remove_tree(tmp);
    return test_done("convert_dequant");
}
