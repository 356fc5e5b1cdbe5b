/* Bad input gets a clear error naming the file and the problem, never a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "io/safetensors.h"
#include "lmcore.h"
#include "test_util.h"

static char tmpdir[256];

static void write_file(const char *dir, const char *name, const void *data, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) {
        perror(p);
        exit(2);
    }
    fwrite(data, 1, n, f);
    fclose(f);
}

static void write_text(const char *dir, const char *name, const char *text) { write_file(dir, name, text, strlen(text)); }

/* A safetensors file from a header and a data section. */
static void write_st(const char *dir, const char *name, const char *hdr, size_t data_len, uint64_t claimed_hlen) {
    size_t hl = strlen(hdr);
    uint8_t *buf = calloc(1, 8 + hl + data_len);
    uint64_t h = claimed_hlen ? claimed_hlen : hl;
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(h >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    write_file(dir, name, buf, 8 + hl + data_len);
    free(buf);
}

static char *mkcase(const char *name) {
    static char d[512];
    snprintf(d, sizeof d, "%s/%s", tmpdir, name);
    mkdir(d, 0755);
    return d;
}

static void copy_fixture_file(const char *fixture, const char *file, const char *dst_dir) {
    char src[1024];
    snprintf(src, sizeof src, "%s/models/%s/%s", t_fixtures(), fixture, file);
    char *data;
    size_t n;
    if (lm_read_file(src, &data, &n) != LM_OK) {
        fprintf(stderr, "cannot read %s\n", src);
        exit(2);
    }
    write_file(dst_dir, file, data, n);
    free(data);
}

/* Expect lm_model_load(dir) to fail with `code` and a message containing each needle. */
static void expect_load_error(const char *dir, lm_status code, const char *needle1, const char *needle2) {
    lm_model *m = (lm_model *)1;
    lm_status st = lm_model_load(dir, NULL, &m);
    const char *msg = lm_last_error();
    CHECKF(st == code, "%s: status %d (%s), expected %d; message: %s", dir, st, lm_status_str(st), code, msg);
    CHECKF(m == NULL, "%s: out parameter not NULL after failure", dir);
    CHECKF(strstr(msg, needle1) != NULL, "%s: message '%s' lacks '%s'", dir, msg, needle1);
    if (needle2)
        CHECKF(strstr(msg, needle2) != NULL, "%s: message '%s' lacks '%s'", dir, msg, needle2);
    printf("  ok: %s\n", msg);
}

/* A valid tiny model (qwen3 fixture config) whose safetensors we rewrite with one change. */
static void rewrite_without(const char *dst, const char *drop, const char *reshape) {
    char src[1024];
    snprintf(src, sizeof src, "%s/models/qwen3/model.safetensors", t_fixtures());
    lm_st_set *s;
    if (lm_st_open_file(src, &s) != LM_OK)
        exit(2);
    lm_st_out *outs = calloc((size_t)s->n_tensors, sizeof *outs);
    int n = 0;
    for (int i = 0; i < s->n_tensors; i++) {
        const lm_st_tensor *t = &s->tensors[i];
        if (drop && strcmp(t->name, drop) == 0)
            continue;
        lm_st_out o = {t->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(o.shape, t->shape, sizeof o.shape);
        if (reshape && strcmp(t->name, reshape) == 0) { /* same bytes, transposed shape */
            o.shape[0] = t->shape[1];
            o.shape[1] = t->shape[0];
        }
        outs[n++] = o;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dst);
    if (lm_st_write(path, outs, n, "{\"format\":\"pt\"}") != LM_OK)
        exit(2);
    free(outs);
    lm_st_close(s);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lmcore_errors_%d", (int)getpid());
    mkdir(tmpdir, 0755);
    const char *cfg_llama = "{\"model_type\":\"llama\",\"hidden_size\":8,\"num_hidden_layers\":1,"
                            "\"num_attention_heads\":2,\"intermediate_size\":16,\"vocab_size\":4}";
    char *d;

    /* config.json */
    d = mkcase("no_config");
    expect_load_error(d, LM_ERR_MISSING, "config.json", NULL);
    d = mkcase("bad_json");
    write_text(d, "config.json", "{\"model_type\": \"llama\",\n  \"hidden_size\": 64,,}");
    expect_load_error(d, LM_ERR_FORMAT, "config.json", "line 2");
    d = mkcase("unknown_type");
    write_text(d, "config.json", "{\"model_type\":\"frobnicator\",\"hidden_size\":8,\"num_hidden_layers\":1,"
                                 "\"num_attention_heads\":2,\"intermediate_size\":16,\"vocab_size\":4}");
    expect_load_error(d, LM_ERR_UNSUPPORTED, "frobnicator", "llama, mistral");
    d = mkcase("bad_heads");
    write_text(d, "config.json", "{\"model_type\":\"llama\",\"hidden_size\":8,\"num_hidden_layers\":1,"
                                 "\"num_attention_heads\":3,\"num_key_value_heads\":2,\"vocab_size\":4}");
    expect_load_error(d, LM_ERR_FORMAT, "num_key_value_heads", NULL);
    d = mkcase("wrong_type_value");
    write_text(d, "config.json", "{\"model_type\":\"llama\",\"hidden_size\":\"big\",\"num_hidden_layers\":1}");
    expect_load_error(d, LM_ERR_FORMAT, "hidden_size", NULL);

    /* safetensors structure */
    d = mkcase("no_weights");
    write_text(d, "config.json", cfg_llama);
    expect_load_error(d, LM_ERR_MISSING, "safetensors", NULL);
    d = mkcase("short_file");
    write_text(d, "config.json", cfg_llama);
    write_file(d, "model.safetensors", "abc", 3);
    expect_load_error(d, LM_ERR_FORMAT, "model.safetensors", "too short");
    d = mkcase("header_past_eof");
    write_text(d, "config.json", cfg_llama);
    write_st(d, "model.safetensors", "{}", 0, 1000000);
    expect_load_error(d, LM_ERR_FORMAT, "model.safetensors", "past the end");
    d = mkcase("header_not_json");
    write_text(d, "config.json", cfg_llama);
    write_st(d, "model.safetensors", "{\"a\": [1,2", 0, 0);
    expect_load_error(d, LM_ERR_FORMAT, "model.safetensors", "malformed JSON");
    d = mkcase("offsets_out_of_range");
    write_text(d, "config.json", cfg_llama);
    write_st(d, "model.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, 0);
    expect_load_error(d, LM_ERR_FORMAT, "'w'", "past the end");
    d = mkcase("overlap");
    write_text(d, "config.json", cfg_llama);
    write_st(d, "model.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16, 0);
    expect_load_error(d, LM_ERR_FORMAT, "overlap", NULL);
    d = mkcase("size_mismatch");
    write_text(d, "config.json", cfg_llama);
    write_st(d, "model.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,8]}}", 8, 0);
    expect_load_error(d, LM_ERR_SHAPE, "'a'", "16 bytes");
    d = mkcase("bad_dtype");
    write_text(d, "config.json", cfg_llama);
    write_st(d, "model.safetensors", "{\"a\":{\"dtype\":\"Q17\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0);
    expect_load_error(d, LM_ERR_UNSUPPORTED, "Q17", NULL);
    d = mkcase("negative_shape");
    write_text(d, "config.json", cfg_llama);
    write_st(d, "model.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, 0);
    expect_load_error(d, LM_ERR_FORMAT, "invalid shape", NULL);
    d = mkcase("truncated_data");
    copy_fixture_file("qwen3", "config.json", d);
    {
        char src[1024], *data;
        size_t n;
        snprintf(src, sizeof src, "%s/models/qwen3/model.safetensors", t_fixtures());
        if (lm_read_file(src, &data, &n) != LM_OK)
            return 2;
        write_file(d, "model.safetensors", data, n / 2);
        free(data);
    }
    expect_load_error(d, LM_ERR_FORMAT, "model.safetensors", "truncated");

    /* tensors the definition needs */
    d = mkcase("missing_tensor");
    copy_fixture_file("qwen3", "config.json", d);
    rewrite_without(d, "model.layers.1.mlp.up_proj.weight", NULL);
    expect_load_error(d, LM_ERR_MISSING, "model.layers.1.mlp.up_proj.weight", NULL);
    d = mkcase("wrong_shape");
    copy_fixture_file("qwen3", "config.json", d);
    rewrite_without(d, NULL, "model.layers.0.mlp.down_proj.weight");
    expect_load_error(d, LM_ERR_SHAPE, "model.layers.0.mlp.down_proj.weight", "expected [64, 128]");

    /* sharded checkpoints */
    d = mkcase("index_malformed");
    write_text(d, "config.json", cfg_llama);
    write_text(d, "model.safetensors.index.json", "{\"weight_map\": [1, 2]}");
    expect_load_error(d, LM_ERR_FORMAT, "model.safetensors.index.json", "weight_map");
    d = mkcase("index_bad_json");
    write_text(d, "config.json", cfg_llama);
    write_text(d, "model.safetensors.index.json", "{\"weight_map\": {");
    expect_load_error(d, LM_ERR_FORMAT, "model.safetensors.index.json", "malformed JSON");
    d = mkcase("index_missing_shard");
    write_text(d, "config.json", cfg_llama);
    write_text(d, "model.safetensors.index.json", "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\"}}");
    expect_load_error(d, LM_ERR_IO, "model-00001-of-00002.safetensors", NULL);
    d = mkcase("index_path_escape");
    write_text(d, "config.json", cfg_llama);
    write_text(d, "model.safetensors.index.json", "{\"weight_map\": {\"a\": \"../../etc/passwd\"}}");
    expect_load_error(d, LM_ERR_FORMAT, "not a shard file name", NULL);
    d = mkcase("index_wrong_shard");
    write_text(d, "config.json", cfg_llama);
    write_st(d, "s1.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0);
    write_text(d, "model.safetensors.index.json", "{\"weight_map\": {\"b\": \"s1.safetensors\"}}");
    expect_load_error(d, LM_ERR_FORMAT, "'b'", "s1.safetensors");

    /* an expert count in config.json that the weights contradict */
    {
        static const struct { const char *fixture, *key; int experts; lm_status code; const char *n1, *n2; } MOE[] = {
            {"qwen3_moe", "num_local_experts", 6, LM_ERR_SHAPE, "layers.0.mlp.gate.weight", "expected [6, 64]"},
            {"qwen3_moe", "num_local_experts", 10, LM_ERR_SHAPE, "layers.0.mlp.gate.weight", "expected [10, 64]"},
            {"qwen3_moe_mlx_q4", "num_local_experts", 6, LM_ERR_SHAPE, "layers.0.mlp.gate.weight", "expected [6, 32]"},
            {"gpt_oss", "num_local_experts", 3, LM_ERR_SHAPE, "router.weight", "expected [3, 64]"},
        };
        for (size_t k = 0; k < sizeof MOE / sizeof MOE[0]; k++) {
            char cname[64], cmd[2048];
            snprintf(cname, sizeof cname, "experts_%zu", k);
            d = mkcase(cname);
            /* link the checkpoint's files, rewrite the expert count in config.json */
            snprintf(cmd, sizeof cmd,
                     "for f in %s/models/%s/*.safetensors %s/models/%s/*.json; do ln -sf \"$f\" %s/; done; "
                     "rm -f %s/config.json; sed -E 's/\"%s\": *[0-9]+/\"%s\": %d/' %s/models/%s/config.json > %s/config.json",
                     t_fixtures(), MOE[k].fixture, t_fixtures(), MOE[k].fixture, d, d, MOE[k].key, MOE[k].key,
                     MOE[k].experts, t_fixtures(), MOE[k].fixture, d);
            CHECK(system(cmd) == 0);
            expect_load_error(d, MOE[k].code, MOE[k].n1, MOE[k].n2);
        }
    }

    /* API misuse */
    lm_model *m = NULL;
    CHECK(lm_model_load(NULL, NULL, &m) == LM_ERR_INVALID_ARG && m == NULL);
    CHECK(lm_model_load("x", NULL, NULL) == LM_ERR_INVALID_ARG);
    CHECK(strcmp(lm_status_str(LM_ERR_MISSING), "missing") == 0);
    CHECK(strcmp(lm_status_str(12345), "unknown status") == 0);

    /* the model runs, but rejects bad token ids and context overflow */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/qwen3", t_fixtures());
    lm_ctx *ctx = NULL;
    lm_ctx_params cp = lm_ctx_default_params();
    cp.max_tokens = 4;
    if (lm_model_load(dir, NULL, &m) == LM_OK && lm_ctx_new(m, &cp, &ctx) == LM_OK) {
        int32_t bad[2] = {1, 100000}, ok[4] = {1, 2, 3, 4};
        float logits[512];
        CHECK(lm_ctx_eval(ctx, bad, 2, logits, 0) == LM_ERR_INVALID_ARG);
        CHECK(strstr(lm_last_error(), "100000") != NULL);
        CHECK(lm_ctx_eval(ctx, ok, 4, logits, 0) == LM_OK);
        CHECK(lm_ctx_eval(ctx, ok, 1, logits, 0) == LM_ERR_CONTEXT);
        CHECK(lm_ctx_n_past(ctx) == 4);
    } else {
        CHECKF(0, "qwen3 fixture failed to load: %s", lm_last_error());
    }
    lm_ctx_free(ctx);
    lm_model_free(m);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_done("errors");
}
