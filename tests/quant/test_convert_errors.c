/* Issue 4 errors: bad convert options and sources fail with messages naming the problem; the
 * loader rejects packed shapes that do not fit bits/group size, unsupported bits, and scales
 * without biases (checkpoints made by lm_convert, then edited); the CLI exits non-zero. */
#include <sys/stat.h>

#include "convert_util.h"
#include "core/util.h"

static char *tmp;

static void expect_convert(const char *src, const char *dst, const lm_convert_params *p, lm_status code,
                           const char *needle) {
    lm_status st = lm_convert(src, dst, p, NULL);
    const char *msg = lm_last_error();
    CHECKF(st == code && strstr(msg, needle), "status %d (want %d), message '%s' lacks '%s'", st, code, msg, needle);
    printf("  ok: %s\n", msg);
}

static void expect_load(const char *dir, lm_status code, const char *needle) {
    lm_model *m = (lm_model *)1;
    lm_status st = lm_model_load(dir, NULL, &m);
    const char *msg = lm_last_error();
    CHECKF(st == code && m == NULL && strstr(msg, needle), "status %d (want %d), message '%s' lacks '%s'", st, code,
           msg, needle);
    printf("  ok: %s\n", msg);
}

/* Replace `from` by `to` in DIR/config.json. */
static void edit_config(const char *dir, const char *from, const char *to) {
    char p[700], *text;
    size_t n;
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (lm_read_file(p, &text, &n) != LM_OK)
        return;
    char *at = strstr(text, from);
    FILE *f = fopen(p, "wb");
    if (at && f) {
        fwrite(text, 1, (size_t)(at - text), f);
        fputs(to, f);
        fputs(at + strlen(from), f);
    }
    if (f)
        fclose(f);
    CHECKF(at != NULL, "'%s' not in %s", from, p);
    free(text);
}

int main(void) {
    tmp = make_tmpdir();
    if (!tmp)
        return 2;
    char src[600], dst[600], q[600];
    snprintf(src, sizeof src, "%s/models/qwen3", t_fixtures());
    snprintf(dst, sizeof dst, "%s/out", tmp);
    lm_convert_params p = lm_convert_default_params();
    p.quantize = 1;
    p.bits = 7;
    expect_convert(src, dst, &p, LM_ERR_INVALID_ARG, "unsupported bits 7");
    p.bits = 4;
    p.group_size = 48;
    expect_convert(src, dst, &p, LM_ERR_INVALID_ARG, "group size 48");
    p.group_size = 0;
    p.mode = LM_QUANT_MXFP4;
    p.bits = 8;
    expect_convert(src, dst, &p, LM_ERR_INVALID_ARG, "mxfp4 quantization needs bits 4");
    p.bits = 0;
    p.recipe = "mixed_3_6";
    expect_convert(src, dst, &p, LM_ERR_INVALID_ARG, "needs affine");
    p.mode = LM_QUANT_AFFINE;
    p.recipe = "mixed_5_7";
    expect_convert(src, dst, &p, LM_ERR_INVALID_ARG, "unknown recipe 'mixed_5_7'");
    p.recipe = NULL;
    p.dequantize = 1;
    expect_convert(src, dst, &p, LM_ERR_INVALID_ARG, "either quantize or dequantize");
    p.dequantize = 0;
    expect_convert("/nonexistent/model", dst, &p, LM_ERR_MISSING, "/nonexistent/model");
    char mq[600];
    snprintf(mq, sizeof mq, "%s/models/qwen3_mlx_q4", t_fixtures());
    expect_convert(mq, dst, &p, LM_ERR_INVALID_ARG, "already quantized");
    lm_convert_params d = lm_convert_default_params();
    d.dequantize = 1;
    expect_convert(src, dst, &d, LM_ERR_INVALID_ARG, "nothing to dequantize");
    snprintf(mq, sizeof mq, "%s/models/gpt_oss_hf_mxfp4", t_fixtures());
    expect_convert(mq, dst, &d, LM_ERR_UNSUPPORTED, "_blocks");
    struct stat sb;
    CHECKF(stat(dst, &sb) != 0, "%s left behind by failed conversions", dst);
    /* a non-empty destination is refused and left alone */
    snprintf(q, sizeof q, "%s/q4", tmp);
    p = lm_convert_default_params();
    p.quantize = 1;
    p.group_size = 32;
    CHECKF(lm_convert(src, q, &p, NULL) == LM_OK, "%s", lm_last_error());
    expect_convert(src, q, &p, LM_ERR_INVALID_ARG, "not empty");
    /* the loader: packed shape vs bits, unsupported bits, scales without biases */
    edit_config(q, "\"bits\":\t4", "\"bits\":\t8");
    expect_load(q, LM_ERR_SHAPE, "packed weight for the configured bits");
    edit_config(q, "\"bits\":\t8", "\"bits\":\t7");
    expect_load(q, LM_ERR_UNSUPPORTED, "unsupported bits 7");
    edit_config(q, "\"bits\":\t7", "\"bits\":\t4");
    edit_config(q, "\"group_size\":\t32", "\"group_size\":\t64");
    expect_load(q, LM_ERR_SHAPE, "scales");
    edit_config(q, "\"group_size\":\t64", "\"group_size\":\t32");
    char qb[700];
    snprintf(qb, sizeof qb, "%s/qb", tmp);
    d = lm_convert_default_params(); /* copy, then drop one biases tensor from the index */
    CHECK(lm_convert(q, qb, &d, NULL) == LM_OK);
    char ip[800];
    snprintf(ip, sizeof ip, "%s/model.safetensors.index.json", qb);
    unlink(ip);
    lm_st_set *s = NULL;
    snprintf(ip, sizeof ip, "%s/model.safetensors", qb);
    if (lm_st_open_file(ip, &s) == LM_OK) {
        lm_st_out *outs = calloc((size_t)s->n_tensors, sizeof *outs);
        int n = 0;
        for (int i = 0; i < s->n_tensors; i++) {
            const lm_st_tensor *t = &s->tensors[i];
            if (strcmp(t->name, "model.layers.0.self_attn.k_proj.biases") == 0)
                continue;
            outs[n] = (lm_st_out){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .data = t->data};
            memcpy(outs[n].shape, t->shape, sizeof t->shape);
            n++;
        }
        char np[800];
        snprintf(np, sizeof np, "%s/qb2", tmp);
        mkdir(np, 0755);
        char cp[900], *text;
        size_t len;
        snprintf(cp, sizeof cp, "%s/model.safetensors", np);
        CHECK(lm_st_write(cp, outs, n, NULL) == LM_OK);
        snprintf(cp, sizeof cp, "%s/config.json", qb);
        if (lm_read_file(cp, &text, &len) == LM_OK) {
            snprintf(cp, sizeof cp, "%s/config.json", np);
            FILE *f = fopen(cp, "wb");
            if (f) {
                fwrite(text, 1, len, f);
                fclose(f);
            }
            free(text);
        }
        free(outs);
        lm_st_close(s);
        expect_load(np, LM_ERR_MISSING, "has scales but no 'model.layers.0.self_attn.k_proj.biases'");
    }
    /* the CLI: one-line error, non-zero exit; success prints a summary */
    const char *cli = getenv("LMCORE_CLI");
    if (cli) {
        char cmd[2000];
        snprintf(cmd, sizeof cmd, "'%s' convert -m '%s' -o '%s/cli_bad' -q --bits 9 2>/dev/null", cli, src, tmp);
        CHECK(system(cmd) != 0);
        snprintf(cmd, sizeof cmd, "'%s' convert -m '%s' -o '%s/cli_q8' --q-bits 8 --q-group-size 32 -q > '%s/cli.txt'",
                 cli, src, tmp, tmp);
        CHECK(system(cmd) == 0);
        snprintf(cmd, sizeof cmd, "grep -q '15 modules quantized' '%s/cli.txt'", tmp);
        CHECK(system(cmd) == 0);
        snprintf(cmd, sizeof cmd, "'%s' convert --help | grep -q -- '--recipe'", cli);
        CHECK(system(cmd) == 0);
    }
    remove_tree(tmp);
    return test_done("convert_errors");
}
