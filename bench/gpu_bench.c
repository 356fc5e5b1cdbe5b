/* Decode and prefill speed of one checkpoint on a device (the GPU benchmark's timing program;
 * bench/gpu_bench.py drives it):
 *   gpu_bench DIR [--device cuda|cpu] [--prefill N (2048)] [--ctx A,B (128,4096)] [--decode N (64)]
 *             [--profile N: decode steps 2..2+N of the first context inside cudaProfilerStart/Stop]
 *             [--trace FILE: with --profile, those steps' kernel timeline into FILE (CUPTI; gpu_trace.c)]
 *             [--profile-prefill 1: one more prefill of N tokens, inside cudaProfilerStart/Stop]
 *             [--sample device|host: decode sampling at temp 0.8 (and --top-k, --min-p) instead of
 *              greedily, on the device (the sample op) or on the host from downloaded logits]
 *             [--penalty R: with --sample, a repetition penalty R and a frequency penalty 0.1
 *              over the last 64 tokens (on the device: the edit_logits op)]
 *             [--top-k K (50) --min-p P (0.05): the sampler chain of --sample (0 0: temperature alone)]
 *             [--kv-type f32|f16: the KV cache's rows (f32)]
 * Prompt ids are fixed pseudo-random values (no tokenizer); decode steps run as greedy generation
 * does: each step evaluates one token through the KV cache with lm_ctx_eval_greedy (the token is
 * picked on the device; only its id and logprob come back, not the logits) and feeds the picked
 * token back as the next input. Prints one JSON object on stdout:
 *   {"load_s", "prefill": {"tokens", "tok_s"}, "decode": [{"ctx", "tokens", "tok_s",
 *    "ms_median"}...]}
 * where decode at context C runs after a prompt of C tokens (evaluated in chunks of the prefill
 * size; the first chunk of the largest context is the prefill timing). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "generate/sampler.h"
#include "lmcore.h"
#include "models/model.h"
#ifdef LM_HAVE_CUDA
#include <cuda_profiler_api.h> /* --profile: a range of decode steps for ncu --profile-from-start off */
#endif
#ifdef LM_HAVE_CUPTI
#include "gpu_trace.h"
#endif

#define MAX_CTX 8

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int fail(const char *what) {
    fprintf(stderr, "gpu_bench: %s: %s\n", what, lm_last_error());
    return 1;
}

typedef struct bench_opts {
    const char *dir;
    lm_device device;
    int prefill, decode, n_ctx, profile, profile_prefill;
    const char *trace; /* with profile: the kernel timeline's file */
    int sample; /* 0: greedy, 1: sampled on the device, 2: on the host */
    float penalty; /* with sample: repetition penalty (0: none) */
    int top_k;     /* with sample: the chain's top-k and min-p */
    int kv_f16;
    float min_p;
    int ctx[MAX_CTX];
} bench_opts;

static int parse(int argc, char **argv, bench_opts *o) {
    memset(o, 0, sizeof *o);
    o->device = LM_DEVICE_CUDA;
    o->prefill = 2048;
    o->decode = 64;
    o->top_k = 50, o->min_p = 0.05f;
    o->n_ctx = 2;
    o->ctx[0] = 128;
    o->ctx[1] = 4096;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-') {
            o->dir = a;
            continue;
        }
        if (!v) {
            fprintf(stderr, "gpu_bench: %s needs a value\n", a);
            return 0;
        }
        i++;
        if (!strcmp(a, "--device"))
            o->device = !strcmp(v, "cpu") ? LM_DEVICE_CPU : LM_DEVICE_CUDA;
        else if (!strcmp(a, "--prefill"))
            o->prefill = atoi(v);
        else if (!strcmp(a, "--decode"))
            o->decode = atoi(v);
        else if (!strcmp(a, "--profile"))
            o->profile = atoi(v);
        else if (!strcmp(a, "--trace"))
            o->trace = v;
        else if (!strcmp(a, "--profile-prefill"))
            o->profile_prefill = atoi(v);
        else if (!strcmp(a, "--sample") && (!strcmp(v, "device") || !strcmp(v, "host")))
            o->sample = !strcmp(v, "device") ? 1 : 2;
        else if (!strcmp(a, "--penalty"))
            o->penalty = (float)atof(v);
        else if (!strcmp(a, "--top-k"))
            o->top_k = atoi(v);
        else if (!strcmp(a, "--min-p"))
            o->min_p = (float)atof(v);
        else if (!strcmp(a, "--kv-type") && (!strcmp(v, "f32") || !strcmp(v, "f16")))
            o->kv_f16 = !strcmp(v, "f16");
        else if (!strcmp(a, "--ctx")) {
            o->n_ctx = 0;
            for (char *s = (char *)v; *s && o->n_ctx < MAX_CTX;) {
                o->ctx[o->n_ctx++] = (int)strtol(s, &s, 10);
                if (*s == ',')
                    s++;
                else
                    break;
            }
        } else {
            fprintf(stderr, "gpu_bench: unknown option %s\n", a);
            return 0;
        }
    }
    if (o->trace && o->profile < 1) {
        fprintf(stderr, "gpu_bench: --trace records the steps of --profile N\n");
        return 0;
    }
#ifndef LM_HAVE_CUPTI
    if (o->trace) {
        fprintf(stderr, "gpu_bench: --trace needs a build with CUDA and CUPTI\n");
        return 0;
    }
#endif
    if (!o->dir || o->prefill < 1 || o->decode < 1 || o->n_ctx < 1) {
        fprintf(stderr, "usage: gpu_bench DIR [--device cuda|cpu] [--prefill N] [--ctx A,B] [--decode N] [--profile N] [--trace FILE] [--profile-prefill 1] [--sample device|host] [--penalty R] [--top-k K] [--min-p P] [--kv-type f32|f16]\n");
        return 0;
    }
    for (int i = 0; i < o->n_ctx; i++)
        if (o->ctx[i] < 1) {
            fprintf(stderr, "gpu_bench: --ctx values must be positive\n");
            return 0;
        }
    return 1;
}

/* Evaluate ctx prompt tokens in chunks of `chunk`; *first_s receives the first chunk's time. */
static lm_status prompt(lm_ctx *ctx, const int32_t *ids, int n, int chunk, float *logits, double *first_s) {
    for (int t0 = 0; t0 < n; t0 += chunk) {
        int nt = n - t0 < chunk ? n - t0 : chunk;
        double t = lm_time_s();
        LM_TRY(lm_ctx_eval(ctx, ids + t0, nt, logits, 0));
        if (t0 == 0 && first_s)
            *first_s = lm_time_s() - t;
    }
    return LM_OK;
}

int main(int argc, char **argv) {
    bench_opts o;
    if (!parse(argc, argv, &o))
        return 2;
    int max_ctx = o.prefill;
    for (int i = 0; i < o.n_ctx; i++)
        if (o.ctx[i] > max_ctx)
            max_ctx = o.ctx[i];
    lm_model_params mp = lm_model_default_params();
    mp.device = o.device;
    lm_model *m;
    double t0 = lm_time_s();
    if (lm_model_load(o.dir, &mp, &m) != LM_OK)
        return fail(o.dir);
    double load_s = lm_time_s() - t0;
    lm_model_info info;
    lm_model_get_info(m, &info);
    lm_ctx_params cp = lm_ctx_default_params();
    cp.max_tokens = max_ctx + o.decode + 8;
    cp.kv_f16 = o.kv_f16;
    lm_ctx *ctx;
    if (lm_ctx_new(m, &cp, &ctx) != LM_OK)
        return fail("context");
    float *logits = malloc((size_t)info.vocab_size * sizeof *logits);
    int32_t *ids = malloc((size_t)(max_ctx + o.decode) * sizeof *ids);
    int32_t *hist = malloc((size_t)(max_ctx + o.decode) * sizeof *hist); /* the penalties' history */
    double *step = malloc((size_t)o.decode * sizeof *step);
    if (!logits || !ids || !hist || !step)
        return 1;
    uint64_t r = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < max_ctx + o.decode; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((r >> 33) % (uint64_t)info.vocab_size);
    }
    /* warm-up: module loading, library handles, buffers for the largest chunk */
    int32_t tok;
    if (lm_ctx_eval(ctx, ids, o.prefill < 256 ? o.prefill : 256, logits, 0) != LM_OK ||
        lm_ctx_eval(ctx, ids, 1, logits, 0) != LM_OK || lm_ctx_eval_greedy(ctx, ids, 1, &tok, NULL) != LM_OK)
        return fail("warm-up");
    lm_ctx_reset(ctx);
    if (prompt(ctx, ids, o.prefill, o.prefill, logits, NULL) != LM_OK) /* sizes every buffer once */
        return fail("warm-up prefill");
    lm_gen_params gp = lm_gen_default_params();
    gp.temp = 0.8f, gp.min_p = o.min_p, gp.top_k = o.top_k, gp.seed = 1;
    if (o.penalty != 0) {
        gp.repetition_penalty = o.penalty, gp.repetition_context_size = 64;
        gp.frequency_penalty = 0.1f, gp.frequency_context_size = 64;
    }
    lm_sampler samp;
    lm_sample_args chain;
    if (lm_sampler_init(&samp, info.vocab_size, &gp, NULL, 0) != LM_OK || !lm_sampler_chain_args(&samp, &chain))
        return fail("sampler");

    printf("{\"model\": \"%s\", \"weights\": \"%s\", \"device\": \"%s\", \"load_s\": %.3f", o.dir, info.weight_dtype,
           o.device == LM_DEVICE_CUDA ? "cuda" : "cpu", load_s);
    double prefill_s = 0;
    printf(", \"decode\": [");
    for (int c = 0; c < o.n_ctx; c++) {
        lm_ctx_reset(ctx);
        double first = 0;
        if (prompt(ctx, ids, o.ctx[c], o.prefill, logits, &first) != LM_OK)
            return fail("prompt");
        if (o.ctx[c] >= o.prefill)
            prefill_s = first;
        tok = ids[o.ctx[c]]; /* the first decode input; then each step's greedy token */
        int nh = o.ctx[c];
        memcpy(hist, ids, (size_t)nh * sizeof *hist);
        double d0 = lm_time_s();
        for (int i = 0; i < o.decode; i++) {
#ifdef LM_HAVE_CUDA
            if (c == 0 && o.profile > 0 && i == 2) /* steps 2 .. 2+N of the first context */
                (void)cudaProfilerStart();
            if (c == 0 && o.profile > 0 && i == 2 + o.profile)
                (void)cudaProfilerStop();
#endif
#ifdef LM_HAVE_CUPTI
            if (c == 0 && o.profile > 0 && o.trace && i == 2 && gpu_trace_start() != 0)
                return 1;
            if (c == 0 && o.profile > 0 && o.trace && i == 2 + o.profile && gpu_trace_stop(o.trace) != 0)
                return 1;
#endif
            double s = lm_time_s();
            int32_t in = tok;
            lm_status st;
            hist[nh++] = in;
            if (o.sample == 1) {
                const lm_logit_op *ops = NULL;
                int n_ops = o.penalty != 0 ? lm_sampler_logit_ops(&samp, hist, nh, &ops) : 0;
                chain.u = lm_rng_uniform(&samp.rng);
                st = n_ops < 0 ? LM_ERR_NOMEM : lm_ctx_eval_pick(ctx, &in, 1, &chain, ops, n_ops, &tok, NULL);
            } else if (o.sample == 2) {
                if ((st = lm_ctx_eval(ctx, &in, 1, logits, 0)) == LM_OK &&
                    (tok = lm_sampler_sample(&samp, logits, hist, nh, NULL)) < 0)
                    st = LM_ERR_NOMEM;
            } else {
                st = lm_ctx_eval_greedy(ctx, &in, 1, &tok, NULL);
            }
            if (st != LM_OK)
                return fail("decode");
            step[i] = lm_time_s() - s;
        }
        double total = lm_time_s() - d0;
        qsort(step, (size_t)o.decode, sizeof *step, cmp_d);
        printf("%s{\"ctx\": %d, \"tokens\": %d, \"tok_s\": %.3f, \"ms_median\": %.4f}", c ? ", " : "", o.ctx[c],
               o.decode, o.decode / total, 1e3 * step[o.decode / 2]);
        fflush(stdout);
    }
    printf("]");
    if (prefill_s == 0) { /* no context reached the prefill size: time it alone */
        lm_ctx_reset(ctx);
        if (prompt(ctx, ids, o.prefill, o.prefill, logits, &prefill_s) != LM_OK)
            return fail("prefill");
    }
    printf(", \"prefill\": {\"tokens\": %d, \"tok_s\": %.1f}}\n", o.prefill, o.prefill / prefill_s);
#ifdef LM_HAVE_CUDA
    if (o.profile_prefill) {
        lm_ctx_reset(ctx);
        (void)cudaProfilerStart();
        if (prompt(ctx, ids, o.prefill, o.prefill, logits, NULL) != LM_OK)
            return fail("prefill");
        (void)cudaProfilerStop();
    }
#endif
    lm_sampler_free(&samp);
    free(step);
    free(ids);
    free(hist);
    free(logits);
    lm_ctx_free(ctx);
    lm_model_free(m);
    return 0;
}
