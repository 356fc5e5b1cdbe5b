/* Synthetic checkpoints of real model shapes with random weights, written twice from the same
 * bf16 values: an lmcore/MLX model directory (config.json + model.safetensors: bf16, or MLX
 * affine 8/4-bit with group 64 and bf16 scales/biases) and a GGUF v3 file (F16, Q8_0 or Q4_0,
 * block 32, llama.cpp's documented layouts) carrying a real tokenizer (tokenizer.json converted
 * to tokenizer.ggml.* keys).
 *
 *   cpu_gen SHAPE FORMAT OUT_DIR OUT.gguf TOKENIZER.json
 *   SHAPE: llama-1b | qwen3-0.6b | tiny      FORMAT: bf16 | q8 | q4
 *
 * Tensors are produced one row at a time (RNG seeded per tensor) and written with pwrite, so
 * memory stays small. Llama q/k rows are permuted for GGUF the way llama.cpp's converter does
 * (rotate-half -> interleaved pairs), so both files describe the same model. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"

typedef struct shape {
    const char *name, *arch;
    int H, L, nh, nkv, hd, I, V, qk_norm;
    float theta;
} shape;

static const shape SHAPES[] = {
    {"llama-1b", "llama", 2048, 16, 32, 8, 64, 8192, 128256, 0, 500000.0f},
    {"qwen3-0.6b", "qwen3", 1024, 28, 16, 8, 128, 3072, 151936, 1, 1000000.0f},
    {"tiny", "llama", 256, 2, 4, 2, 64, 512, 128256, 0, 500000.0f},
};

enum { FMT_BF16, FMT_Q8, FMT_Q4 };
enum { GG_F32 = 0, GG_F16 = 1, GG_Q4_0 = 2, GG_Q8_0 = 8 }; /* ggml_type */

typedef struct tensor {
    char hf[96], gg[64];
    int out, in;   /* 1-D tensors: out = 1 */
    int linear;    /* quantized in the packed formats */
    int perm_heads; /* > 0: llama q/k row permutation for GGUF with this many heads */
    float value;   /* != 0: constant (norm weights) */
} tensor;

typedef struct out_file {
    int fd;
    const char *path;
} out_file;

static void die(const char *what) {
    fprintf(stderr, "cpu_gen: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(1);
}

static void pw(out_file *f, const void *p, size_t n, uint64_t off) {
    const uint8_t *b = p;
    while (n) {
        ssize_t k = pwrite(f->fd, b, n, (off_t)off);
        if (k <= 0)
            die(f->path);
        b += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
}

/* --- tensor list ------------------------------------------------------------------------------ */

static int add(tensor *t, int n, const char *hf, const char *gg, int out, int in, int linear, int perm, float v) {
    tensor *x = &t[n];
    snprintf(x->hf, sizeof x->hf, "%s", hf);
    snprintf(x->gg, sizeof x->gg, "%s", gg);
    x->out = out;
    x->in = in;
    x->linear = linear;
    x->perm_heads = perm;
    x->value = v;
    return n + 1;
}

static int build_tensors(const shape *s, tensor *t) {
    int n = 0, llama = strcmp(s->arch, "llama") == 0;
    char hf[96], gg[64];
    n = add(t, n, "model.embed_tokens.weight", "token_embd.weight", s->V, s->H, 1, 0, 0);
    for (int l = 0; l < s->L; l++) {
        struct {
            const char *hf, *gg;
            int out, in, linear, perm;
            float v;
        } parts[] = {
            {"input_layernorm", "attn_norm", 1, s->H, 0, 0, 1.0f},
            {"self_attn.q_proj", "attn_q", s->nh * s->hd, s->H, 1, llama ? s->nh : 0, 0},
            {"self_attn.k_proj", "attn_k", s->nkv * s->hd, s->H, 1, llama ? s->nkv : 0, 0},
            {"self_attn.v_proj", "attn_v", s->nkv * s->hd, s->H, 1, 0, 0},
            {"self_attn.o_proj", "attn_output", s->H, s->nh * s->hd, 1, 0, 0},
            {"self_attn.q_norm", "attn_q_norm", 1, s->hd, 0, 0, 1.0f},
            {"self_attn.k_norm", "attn_k_norm", 1, s->hd, 0, 0, 1.0f},
            {"post_attention_layernorm", "ffn_norm", 1, s->H, 0, 0, 1.0f},
            {"mlp.gate_proj", "ffn_gate", s->I, s->H, 1, 0, 0},
            {"mlp.up_proj", "ffn_up", s->I, s->H, 1, 0, 0},
            {"mlp.down_proj", "ffn_down", s->H, s->I, 1, 0, 0},
        };
        for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++) {
            if ((p == 5 || p == 6) && !s->qk_norm)
                continue;
            snprintf(hf, sizeof hf, "model.layers.%d.%s.weight", l, parts[p].hf);
            snprintf(gg, sizeof gg, "blk.%d.%s.weight", l, parts[p].gg);
            n = add(t, n, hf, gg, parts[p].out, parts[p].in, parts[p].linear, parts[p].perm, parts[p].v);
        }
    }
    return add(t, n, "model.norm.weight", "output_norm.weight", 1, s->H, 0, 0, 1.0f);
}

/* --- weights and quantizers --------------------------------------------------------------------- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* one row of bf16-representable weights, uniform with std 0.02 */
static void gen_row(uint64_t *st, float *w, int n) {
    const float a = 0.02f * 1.7320508f;
    for (int i = 0; i < n; i++) {
        *st ^= *st << 13, *st ^= *st >> 7, *st ^= *st << 17;
        float u = (float)(*st >> 40) / 16777216.0f * 2.0f - 1.0f;
        w[i] = lm_bf16_to_f32(lm_f32_to_bf16(u * a));
    }
}

/* MLX affine: per group of 64, scale = (max - min) / (2^bits - 1), bias = min, both bf16;
 * q = round((w - bias) / scale) clamped; packed LSB-first. */
static void mlx_quant_row(const float *w, int n, int bits, uint8_t *q, uint16_t *sc, uint16_t *bi) {
    int levels = (1 << bits) - 1;
    memset(q, 0, (size_t)n * bits / 8);
    for (int g = 0; g < n / 64; g++) {
        float mn = w[g * 64], mx = mn;
        for (int i = 1; i < 64; i++) {
            float v = w[g * 64 + i];
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
        float s = (mx - mn) / (float)levels;
        if (s == 0)
            s = 1e-8f;
        sc[g] = lm_f32_to_bf16(s);
        bi[g] = lm_f32_to_bf16(mn);
        float sr = lm_bf16_to_f32(sc[g]), br = lm_bf16_to_f32(bi[g]);
        for (int i = 0; i < 64; i++) {
            long v = lroundf((w[g * 64 + i] - br) / sr);
            v = v < 0 ? 0 : v > levels ? levels : v;
            size_t k = (size_t)(g * 64 + i) * bits;
            q[k / 8] |= (uint8_t)(v << (k % 8));
        }
    }
}

/* GGUF Q8_0: blocks of 32 = f16 d + int8[32], d = amax / 127 */
static void q8_0_row(const float *w, int n, uint8_t *out) {
    for (int b = 0; b < n / 32; b++, out += 34) {
        float amax = 0;
        for (int i = 0; i < 32; i++)
            amax = fmaxf(amax, fabsf(w[b * 32 + i]));
        float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        uint16_t h = lm_f32_to_f16(d);
        memcpy(out, &h, 2);
        for (int i = 0; i < 32; i++)
            out[2 + i] = (uint8_t)(int8_t)lroundf(w[b * 32 + i] * id);
    }
}

/* GGUF Q4_0: blocks of 32 = f16 d + 16 bytes; d = (value of largest magnitude) / -8,
 * q = x/d + 8 in [0, 15]; byte j holds elements j (low nibble) and j + 16 (high nibble) */
static void q4_0_row(const float *w, int n, uint8_t *out) {
    for (int b = 0; b < n / 32; b++, out += 18) {
        const float *x = w + b * 32;
        float amax = 0, mx = 0;
        for (int i = 0; i < 32; i++)
            if (fabsf(x[i]) > amax) {
                amax = fabsf(x[i]);
                mx = x[i];
            }
        float d = mx / -8.0f, id = d ? 1.0f / d : 0.0f;
        uint16_t h = lm_f32_to_f16(d);
        memcpy(out, &h, 2);
        for (int j = 0; j < 16; j++) {
            int a = (int)(x[j] * id + 8.5f), c = (int)(x[j + 16] * id + 8.5f);
            a = a < 0 ? 0 : a > 15 ? 15 : a;
            c = c < 0 ? 0 : c > 15 ? 15 : c;
            out[2 + j] = (uint8_t)(a | c << 4);
        }
    }
}

/* --- header buffers ------------------------------------------------------------------------------ */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 4096;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            die("out of memory");
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_gstr(buf *b, const char *s, size_t n) {
    put_u64(b, n);
    put(b, s, n);
}
enum { GV_U32 = 4, GV_I32 = 5, GV_F32 = 6, GV_STR = 8, GV_ARR = 9 };
static void kv_u32(buf *b, const char *k, uint32_t v) {
    put_gstr(b, k, strlen(k));
    put_u32(b, GV_U32);
    put_u32(b, v);
}
static void kv_f32(buf *b, const char *k, float v) {
    put_gstr(b, k, strlen(k));
    put_u32(b, GV_F32);
    put(b, &v, 4);
}
static void kv_str(buf *b, const char *k, const char *v) {
    put_gstr(b, k, strlen(k));
    put_u32(b, GV_STR);
    put_gstr(b, v, strlen(v));
}

/* --- tokenizer.json -> tokenizer.ggml.* ------------------------------------------------------------ */

/* Adds the tokenizer keys; returns how many keys were added. Vocab is padded to V with unused
 * tokens so the embedding and the vocabulary agree. */
static int kv_tokenizer(buf *b, const char *path, int V) {
    char *text = NULL;
    size_t len = 0;
    if (lm_read_file(path, &text, &len) != LM_OK)
        die(path);
    cJSON *root = cJSON_Parse(text);
    free(text);
    cJSON *model = root ? cJSON_GetObjectItem(root, "model") : NULL;
    cJSON *vocab = model ? cJSON_GetObjectItem(model, "vocab") : NULL;
    cJSON *merges = model ? cJSON_GetObjectItem(model, "merges") : NULL;
    if (!vocab || !merges) {
        errno = 0;
        die("tokenizer.json: no model.vocab / model.merges");
    }
    const char **tok = calloc((size_t)V, sizeof *tok);
    int32_t *type = calloc((size_t)V, sizeof *type);
    cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        int id = it->valueint;
        if (id >= 0 && id < V)
            tok[id] = it->string, type[id] = 1;
    }
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(root, "added_tokens")) {
        int id = cJSON_GetObjectItem(it, "id")->valueint;
        if (id >= 0 && id < V)
            tok[id] = cJSON_GetObjectItem(it, "content")->valuestring, type[id] = 3;
    }
    kv_str(b, "tokenizer.ggml.model", "gpt2");
    kv_str(b, "tokenizer.ggml.pre", "llama-bpe");
    put_gstr(b, "tokenizer.ggml.tokens", strlen("tokenizer.ggml.tokens"));
    put_u32(b, GV_ARR);
    put_u32(b, GV_STR);
    put_u64(b, (uint64_t)V);
    for (int i = 0; i < V; i++) {
        char pad[32];
        if (!tok[i]) {
            snprintf(pad, sizeof pad, "<|pad_%d|>", i);
            type[i] = 5;
        }
        const char *s = tok[i] ? tok[i] : pad;
        put_gstr(b, s, strlen(s));
    }
    put_gstr(b, "tokenizer.ggml.token_type", strlen("tokenizer.ggml.token_type"));
    put_u32(b, GV_ARR);
    put_u32(b, GV_I32);
    put_u64(b, (uint64_t)V);
    put(b, type, (size_t)V * 4);
    put_gstr(b, "tokenizer.ggml.merges", strlen("tokenizer.ggml.merges"));
    put_u32(b, GV_ARR);
    put_u32(b, GV_STR);
    put_u64(b, (uint64_t)cJSON_GetArraySize(merges));
    cJSON_ArrayForEach(it, merges) {
        if (cJSON_IsString(it)) {
            put_gstr(b, it->valuestring, strlen(it->valuestring));
        } else { /* ["a", "b"] */
            char m[512];
            snprintf(m, sizeof m, "%s %s", cJSON_GetArrayItem(it, 0)->valuestring,
                     cJSON_GetArrayItem(it, 1)->valuestring);
            put_gstr(b, m, strlen(m));
        }
    }
    kv_u32(b, "tokenizer.ggml.bos_token_id", 128000);
    kv_u32(b, "tokenizer.ggml.eos_token_id", 128001);
    free(tok);
    free(type);
    cJSON_Delete(root);
    return 7;
}

/* --- main ------------------------------------------------------------------------------------------- */

typedef struct st_entry {
    char name[112];
    const char *dtype;
    int64_t d0, d1; /* d0 = 0: 1-D [d1] */
    uint64_t off, bytes;
} st_entry;

static size_t gg_row_bytes(int type, int in) {
    return type == GG_F32 ? (size_t)in * 4 : type == GG_F16 ? (size_t)in * 2 : type == GG_Q8_0 ? (size_t)in / 32 * 34
                                                                                                : (size_t)in / 32 * 18;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: cpu_gen llama-1b|qwen3-0.6b|tiny bf16|q8|q4 OUT_DIR OUT.gguf TOKENIZER.json\n");
        return 2;
    }
    const shape *s = NULL;
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++)
        if (strcmp(argv[1], SHAPES[i].name) == 0)
            s = &SHAPES[i];
    int fmt = strcmp(argv[2], "bf16") == 0 ? FMT_BF16 : strcmp(argv[2], "q8") == 0 ? FMT_Q8
                                                      : strcmp(argv[2], "q4") == 0 ? FMT_Q4 : -1;
    if (!s || fmt < 0) {
        fprintf(stderr, "cpu_gen: unknown shape '%s' or format '%s'\n", argv[1], argv[2]);
        return 2;
    }
    int bits = fmt == FMT_Q8 ? 8 : 4, gtype = fmt == FMT_BF16 ? GG_F16 : fmt == FMT_Q8 ? GG_Q8_0 : GG_Q4_0;
    tensor *T = calloc(16 + (size_t)s->L * 16, sizeof *T);
    int nt = build_tensors(s, T);

    /* lmcore directory: config.json */
    mkdir(argv[3], 0755);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", argv[3]);
    FILE *cf = fopen(path, "w");
    if (!cf)
        die(path);
    fprintf(cf,
            "{\"model_type\": \"%s\", \"architectures\": [\"%s\"], \"hidden_size\": %d, \"num_hidden_layers\": %d,\n"
            " \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d, \"intermediate_size\": %d,\n"
            " \"vocab_size\": %d, \"rms_norm_eps\": 1e-06, \"rope_theta\": %.1f, \"max_position_embeddings\": 4096,\n"
            " \"tie_word_embeddings\": true, \"hidden_act\": \"silu\", \"torch_dtype\": \"bfloat16\"",
            s->arch, strcmp(s->arch, "llama") == 0 ? "LlamaForCausalLM" : "Qwen3ForCausalLM", s->H, s->L, s->nh,
            s->nkv, s->hd, s->I, s->V, (double)s->theta);
    if (fmt != FMT_BF16)
        fprintf(cf, ",\n \"quantization\": {\"group_size\": 64, \"bits\": %d}", bits);
    fprintf(cf, "}\n");
    fclose(cf);

    /* safetensors layout */
    st_entry *E = calloc((size_t)nt * 3, sizeof *E);
    int ne = 0;
    uint64_t off = 0;
    int *first = calloc((size_t)nt, sizeof *first);
    for (int i = 0; i < nt; i++) {
        tensor *t = &T[i];
        first[i] = ne;
        int q = t->linear && fmt != FMT_BF16;
        int64_t d0 = t->out == 1 ? 0 : t->out;
        if (!q) {
            E[ne] = (st_entry){.dtype = "BF16", .d0 = d0, .d1 = t->in, .off = off, .bytes = (uint64_t)t->out * t->in * 2};
            snprintf(E[ne].name, sizeof E[ne].name, "%s", t->hf);
            off += E[ne++].bytes;
            continue;
        }
        char base[96];
        snprintf(base, sizeof base, "%.*s", (int)(strlen(t->hf) - strlen(".weight")), t->hf);
        E[ne] = (st_entry){.dtype = "U32", .d0 = d0, .d1 = t->in * bits / 32, .off = off,
                           .bytes = (uint64_t)t->out * t->in * bits / 8};
        snprintf(E[ne].name, sizeof E[ne].name, "%s.weight", base);
        off += E[ne++].bytes;
        for (int k = 0; k < 2; k++) {
            E[ne] = (st_entry){.dtype = "BF16", .d0 = d0, .d1 = t->in / 64, .off = off,
                               .bytes = (uint64_t)t->out * (t->in / 64) * 2};
            snprintf(E[ne].name, sizeof E[ne].name, "%s.%s", base, k ? "biases" : "scales");
            off += E[ne++].bytes;
        }
    }
    buf sh = {0};
    static const char meta[] = "{\"__metadata__\":{\"format\":\"mlx\"}";
    put(&sh, meta, strlen(meta));
    for (int i = 0; i < ne; i++) {
        char j[512];
        int n = E[i].d0 ? snprintf(j, sizeof j, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],\"data_offsets\":[%llu,%llu]}",
                                   E[i].name, E[i].dtype, (long long)E[i].d0, (long long)E[i].d1,
                                   (unsigned long long)E[i].off, (unsigned long long)(E[i].off + E[i].bytes))
                        : snprintf(j, sizeof j, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],\"data_offsets\":[%llu,%llu]}",
                                   E[i].name, E[i].dtype, (long long)E[i].d1, (unsigned long long)E[i].off,
                                   (unsigned long long)(E[i].off + E[i].bytes));
        put(&sh, j, (size_t)n);
    }
    put(&sh, "}", 1);
    while (sh.n % 8)
        put(&sh, " ", 1);
    snprintf(path, sizeof path, "%s/model.safetensors", argv[3]);
    out_file st = {open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644), path};
    if (st.fd < 0)
        die(path);
    uint64_t hl = sh.n, st_base = 8 + sh.n;
    pw(&st, &hl, 8, 0);
    pw(&st, sh.p, sh.n, 8);

    /* GGUF header */
    buf gh = {0};
    put_u32(&gh, 0x46554747u); /* "GGUF" */
    put_u32(&gh, 3);
    put_u64(&gh, (uint64_t)nt);
    size_t nkv_at = gh.n;
    put_u64(&gh, 0);
    char key[128];
    int nkv = 0;
    kv_str(&gh, "general.architecture", s->arch), nkv++;
    kv_str(&gh, "general.name", s->name), nkv++;
    kv_u32(&gh, "general.alignment", 32), nkv++;
    kv_u32(&gh, "general.file_type", fmt == FMT_BF16 ? 1 : fmt == FMT_Q8 ? 7 : 2), nkv++;
#define ARCH_KEY(k) (snprintf(key, sizeof key, "%s.%s", s->arch, k), key)
    kv_u32(&gh, ARCH_KEY("context_length"), 4096), nkv++;
    kv_u32(&gh, ARCH_KEY("embedding_length"), (uint32_t)s->H), nkv++;
    kv_u32(&gh, ARCH_KEY("block_count"), (uint32_t)s->L), nkv++;
    kv_u32(&gh, ARCH_KEY("feed_forward_length"), (uint32_t)s->I), nkv++;
    kv_u32(&gh, ARCH_KEY("attention.head_count"), (uint32_t)s->nh), nkv++;
    kv_u32(&gh, ARCH_KEY("attention.head_count_kv"), (uint32_t)s->nkv), nkv++;
    kv_u32(&gh, ARCH_KEY("attention.key_length"), (uint32_t)s->hd), nkv++;
    kv_u32(&gh, ARCH_KEY("attention.value_length"), (uint32_t)s->hd), nkv++;
    kv_u32(&gh, ARCH_KEY("rope.dimension_count"), (uint32_t)s->hd), nkv++;
    kv_f32(&gh, ARCH_KEY("rope.freq_base"), s->theta), nkv++;
    kv_f32(&gh, ARCH_KEY("attention.layer_norm_rms_epsilon"), 1e-6f), nkv++;
    kv_u32(&gh, ARCH_KEY("vocab_size"), (uint32_t)s->V), nkv++;
    nkv += kv_tokenizer(&gh, argv[5], s->V);
    memcpy(gh.p + nkv_at, &(uint64_t){(uint64_t)nkv}, 8);
    uint64_t *gg_off = calloc((size_t)nt, sizeof *gg_off);
    int *gg_type = calloc((size_t)nt, sizeof *gg_type);
    off = 0;
    for (int i = 0; i < nt; i++) {
        gg_type[i] = T[i].linear ? gtype : GG_F32;
        put_gstr(&gh, T[i].gg, strlen(T[i].gg));
        put_u32(&gh, T[i].out == 1 ? 1 : 2);
        put_u64(&gh, (uint64_t)T[i].in);
        if (T[i].out != 1)
            put_u64(&gh, (uint64_t)T[i].out);
        put_u32(&gh, (uint32_t)gg_type[i]);
        put_u64(&gh, off);
        gg_off[i] = off;
        off += (gg_row_bytes(gg_type[i], T[i].in) * T[i].out + 31) / 32 * 32;
    }
    while (gh.n % 32)
        put(&gh, "", 1);
    out_file gg = {open(argv[4], O_CREAT | O_TRUNC | O_WRONLY, 0644), argv[4]};
    if (gg.fd < 0)
        die(argv[4]);
    pw(&gg, gh.p, gh.n, 0);
    uint64_t gg_base = gh.n;

    /* data, one row at a time */
    int maxin = s->I > s->H ? s->I : s->H;
    if (s->nh * s->hd > maxin)
        maxin = s->nh * s->hd;
    float *w = malloc((size_t)maxin * 4);
    uint16_t *h16 = malloc((size_t)maxin * 2), *sc = malloc((size_t)maxin / 64 * 2), *bi = malloc((size_t)maxin / 64 * 2);
    uint8_t *q = malloc((size_t)maxin * 4);
    for (int i = 0; i < nt; i++) {
        tensor *t = &T[i];
        uint64_t seed = hash_str(t->hf) | 1;
        int qz = t->linear && fmt != FMT_BF16, in = t->in;
        size_t grow = gg_row_bytes(gg_type[i], in);
        for (int r = 0; r < t->out; r++) {
            if (t->value != 0)
                for (int k = 0; k < in; k++)
                    w[k] = t->value;
            else
                gen_row(&seed, w, in);
            const st_entry *e = &E[first[i]];
            if (!qz) {
                for (int k = 0; k < in; k++)
                    h16[k] = lm_f32_to_bf16(w[k]);
                pw(&st, h16, (size_t)in * 2, st_base + e->off + (uint64_t)r * in * 2);
            } else {
                mlx_quant_row(w, in, bits, q, sc, bi);
                pw(&st, q, (size_t)in * bits / 8, st_base + e[0].off + (uint64_t)r * in * bits / 8);
                pw(&st, sc, (size_t)in / 64 * 2, st_base + e[1].off + (uint64_t)r * (in / 64) * 2);
                pw(&st, bi, (size_t)in / 64 * 2, st_base + e[2].off + (uint64_t)r * (in / 64) * 2);
            }
            int dst = r;
            if (t->perm_heads) { /* HF row h*hd + j*hd/2 + i  ->  GGUF row h*hd + 2i + j */
                int hd = t->out / t->perm_heads, hh = r / hd, rem = r % hd, j = rem / (hd / 2), ii = rem % (hd / 2);
                dst = hh * hd + 2 * ii + j;
            }
            if (gg_type[i] == GG_F32)
                memcpy(q, w, (size_t)in * 4);
            else if (gg_type[i] == GG_F16)
                for (int k = 0; k < in; k++)
                    ((uint16_t *)q)[k] = lm_f32_to_f16(w[k]);
            else if (gg_type[i] == GG_Q8_0)
                q8_0_row(w, in, q);
            else
                q4_0_row(w, in, q);
            pw(&gg, q, grow, gg_base + gg_off[i] + (uint64_t)dst * grow);
        }
    }
    /* pad the GGUF data section to its aligned end */
    uint8_t zero[32] = {0};
    pw(&gg, zero, (size_t)(off - (gg_off[nt - 1] + gg_row_bytes(gg_type[nt - 1], T[nt - 1].in) * T[nt - 1].out)),
       gg_base + gg_off[nt - 1] + gg_row_bytes(gg_type[nt - 1], T[nt - 1].in) * T[nt - 1].out);
    close(st.fd);
    close(gg.fd);
    free(w), free(h16), free(sc), free(bi), free(q), free(E), free(first), free(gg_off), free(gg_type), free(T);
    free(sh.p), free(gh.p);
    return 0;
}
