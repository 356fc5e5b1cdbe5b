/* Writes a synthetic bf16 checkpoint of Llama-3.2-1B's shape (hidden 2048, 16 layers, 32 heads /
 * 8 KV heads, intermediate 8192, vocab 128256, tied embeddings) with random weights:
 *   bench_gen_synth OUT_DIR [n_layers]
 * Weights are uniform in +-0.02 (norms 1), streamed to disk in chunks (~2.5 GB for 16 layers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/util.h"
#include "io/st_stream.h"

enum { H = 2048, L_MAX = 64, NH = 32, NKV = 8, HD = 64, FF = 8192, VOCAB = 128256 };

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static inline uint32_t next_u32(void) { /* xorshift64* */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545F4914F6CDD1Dull) >> 32);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_gen_synth OUT_DIR [n_layers (16)]\n");
        return 1;
    }
    const char *dir = argv[1];
    int L = argc > 2 ? atoi(argv[2]) : 16;
    if (L < 1 || L > L_MAX) {
        fprintf(stderr, "bench_gen_synth: n_layers must be 1..%d\n", L_MAX);
        return 1;
    }
    mkdir(dir, 0755);
    static const struct {
        const char *name;
        int64_t out, in; /* in == 0: a norm vector of `out` */
    } PER_LAYER[] = {
        {"input_layernorm.weight", H, 0},          {"post_attention_layernorm.weight", H, 0},
        {"self_attn.q_proj.weight", NH * HD, H},   {"self_attn.k_proj.weight", NKV * HD, H},
        {"self_attn.v_proj.weight", NKV * HD, H},  {"self_attn.o_proj.weight", H, NH * HD},
        {"mlp.gate_proj.weight", FF, H},           {"mlp.up_proj.weight", FF, H},
        {"mlp.down_proj.weight", H, FF},
    };
    int np = (int)(sizeof PER_LAYER / sizeof PER_LAYER[0]), n = 2 + L * np;
    lm_st_out *t = calloc((size_t)n, sizeof *t);
    char (*names)[96] = calloc((size_t)n, sizeof *names);
    uint64_t *off = calloc((size_t)n, sizeof *off);
    if (!t || !names || !off)
        return 1;
    snprintf(names[0], 96, "model.embed_tokens.weight");
    t[0] = (lm_st_out){.name = names[0], .dtype = LM_DT_BF16, .ndim = 2, .shape = {VOCAB, H}};
    snprintf(names[1], 96, "model.norm.weight");
    t[1] = (lm_st_out){.name = names[1], .dtype = LM_DT_BF16, .ndim = 1, .shape = {H}};
    for (int l = 0; l < L; l++)
        for (int k = 0; k < np; k++) {
            int i = 2 + l * np + k;
            snprintf(names[i], 96, "model.layers.%d.%s", l, PER_LAYER[k].name);
            t[i] = (lm_st_out){.name = names[i], .dtype = LM_DT_BF16, .ndim = PER_LAYER[k].in ? 2 : 1,
                               .shape = {PER_LAYER[k].out, PER_LAYER[k].in}};
        }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    lm_st_stream s;
    if (lm_st_stream_create(path, t, n, "{\"format\":\"pt\"}", off, &s) != LM_OK) {
        fprintf(stderr, "bench_gen_synth: %s\n", lm_last_error());
        return 1;
    }
    enum { CHUNK = 1 << 22 };
    uint16_t *buf = malloc(CHUNK * sizeof *buf);
    const uint16_t one = lm_f32_to_bf16(1.0f);
    for (int i = 0; i < n; i++) {
        uint64_t total = lm_st_out_bytes(&t[i]) / 2, done = 0;
        int norm = t[i].ndim == 1;
        while (done < total) {
            size_t m = total - done < CHUNK ? (size_t)(total - done) : CHUNK;
            for (size_t j = 0; j < m; j++)
                buf[j] = norm ? one : lm_f32_to_bf16(((float)(next_u32() >> 8) * (1.0f / 16777216.0f) - 0.5f) * 0.04f);
            if (lm_st_stream_write(&s, off[i] + done * 2, buf, m * 2) != LM_OK) {
                fprintf(stderr, "bench_gen_synth: %s\n", lm_last_error());
                return 1;
            }
            done += m;
        }
    }
    free(buf);
    if (lm_st_stream_close(&s, 1) != LM_OK)
        return 1;
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return 1;
    fprintf(f,
            "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
            "  \"hidden_size\": %d,\n  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
            "  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n  \"intermediate_size\": %d,\n"
            "  \"vocab_size\": %d,\n  \"max_position_embeddings\": 131072,\n  \"rms_norm_eps\": 1e-05,\n"
            "  \"hidden_act\": \"silu\",\n  \"tie_word_embeddings\": true,\n  \"rope_theta\": 500000.0,\n"
            "  \"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,\n"
            "    \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},\n"
            "  \"bos_token_id\": 128000,\n  \"eos_token_id\": 128001,\n  \"torch_dtype\": \"bfloat16\"\n}\n",
            H, L, NH, NKV, HD, FF, VOCAB);
    fclose(f);
    free(t);
    free(names);
    free(off);
    return 0;
}
