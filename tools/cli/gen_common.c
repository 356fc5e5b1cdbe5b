/* Shared option parsing and helpers for the generation commands. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "gen_common.h"

static int bad(const char *cmd, const char *opt, const char *range, const char *got) {
    fprintf(stderr, "lmcore %s: %s takes %s (got '%s')\n", cmd, opt, range, got);
    return 1;
}

static int parse_float(const char *s, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return 0;
    *out = (float)v;
    return 1;
}

/* "ID:BIAS,ID:BIAS" */
static int parse_bias(const char *s, gen_opts *o) {
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long id = strtol(p, &end, 10);
        if (errno || end == p || *end != ':' || id < 0 || id > INT32_MAX)
            return 0;
        p = end + 1;
        double b = strtod(p, &end);
        if (end == p || !isfinite(b) || (*end && *end != ','))
            return 0;
        if (o->gen.n_logit_bias >= GEN_MAX_BIAS)
            return 0;
        o->bias[o->gen.n_logit_bias].token = (int32_t)id;
        o->bias[o->gen.n_logit_bias].bias = (float)b;
        o->gen.n_logit_bias++;
        p = *end ? end + 1 : end;
    }
    return o->gen.n_logit_bias > 0;
}

int gen_parse(const char *cmd, int argc, char **argv, const char *help, gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->gen = lm_gen_default_params();
    o->sess = lm_session_default_params();
    o->gen.logit_bias = o->bias;
    o->gen.stop_strings = o->stops;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is(a, "--help", "-h")) {
            fputs(help, stdout);
            return 2;
        }
        if (cli_is(a, "--ignore-chat-template", NULL)) {
            o->ignore_chat_template = 1;
            continue;
        }
        if (cli_is(a, "--verbose", "-v")) {
            o->verbose = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "lmcore %s: %s needs a value (see --help)\n", cmd, a);
            return 1;
        }
        const char *v = argv[++i];
        long l;
        float f;
        if (cli_is(a, "-m", "--model"))
            o->model = v;
        else if (cli_is(a, "-p", "--prompt"))
            o->prompt = v;
        else if (cli_is(a, "--system-prompt", NULL))
            o->system_prompt = v;
        else if (cli_is(a, "--chat-template-config", NULL))
            o->chat_template_config = v;
        else if (cli_is(a, "--chat-template", NULL))
            o->chat_template_name = v;
        else if (cli_is(a, "--prompt-cache-file", NULL))
            o->prompt_cache_file = v;
        else if (cli_is(a, "-n", "--max-tokens")) {
            if (!cli_parse_long(v, -1, INT_MAX, &l))
                return bad(cmd, a, "a number of tokens from -1 (no limit) up", v);
            o->gen.max_tokens = (int)l;
        } else if (cli_is(a, "--temp", NULL)) {
            if (!parse_float(v, 0, 1e6, &f))
                return bad(cmd, a, "a temperature >= 0 (0: greedy)", v);
            o->gen.temp = f;
        } else if (cli_is(a, "--top-p", NULL)) {
            if (!parse_float(v, 0, 1, &f))
                return bad(cmd, a, "a probability in [0, 1] (1: off)", v);
            o->gen.top_p = f;
        } else if (cli_is(a, "--min-p", NULL)) {
            if (!parse_float(v, 0, 1, &f))
                return bad(cmd, a, "a probability in [0, 1] (0: off)", v);
            o->gen.min_p = f;
        } else if (cli_is(a, "--top-k", NULL)) {
            if (!cli_parse_long(v, 0, INT_MAX, &l))
                return bad(cmd, a, "a number of tokens >= 0 (0: off) below the vocabulary size", v);
            o->gen.top_k = (int)l;
        } else if (cli_is(a, "--min-tokens-to-keep", NULL)) {
            if (!cli_parse_long(v, 1, INT_MAX, &l))
                return bad(cmd, a, "a number of tokens >= 1", v);
            o->gen.min_tokens_to_keep = (int)l;
        } else if (cli_is(a, "--xtc-probability", NULL)) {
            if (!parse_float(v, 0, 1, &f))
                return bad(cmd, a, "a probability in [0, 1] (0: off)", v);
            o->gen.xtc_probability = f;
        } else if (cli_is(a, "--xtc-threshold", NULL)) {
            if (!parse_float(v, 0, 0.5, &f))
                return bad(cmd, a, "a probability in [0, 0.5]", v);
            o->gen.xtc_threshold = f;
        } else if (cli_is(a, "--repetition-penalty", NULL)) {
            if (!parse_float(v, 0, 1e6, &f))
                return bad(cmd, a, "a factor >= 0 (0: off)", v);
            o->gen.repetition_penalty = f;
        } else if (cli_is(a, "--repetition-context-size", NULL)) {
            if (!cli_parse_long(v, 1, INT_MAX, &l))
                return bad(cmd, a, "a number of tokens >= 1", v);
            o->gen.repetition_context_size = (int)l;
        } else if (cli_is(a, "--presence-penalty", NULL)) {
            if (!parse_float(v, -1e6, 1e6, &f))
                return bad(cmd, a, "a number in [-1e6, 1e6] (0: off)", v);
            o->gen.presence_penalty = f;
        } else if (cli_is(a, "--frequency-penalty", NULL)) {
            if (!parse_float(v, -1e6, 1e6, &f))
                return bad(cmd, a, "a number in [-1e6, 1e6] (0: off)", v);
            o->gen.frequency_penalty = f;
        } else if (cli_is(a, "--logit-bias", NULL)) {
            if (!parse_bias(v, o))
                return bad(cmd, a, "ID:BIAS pairs separated by commas (at most 64), e.g. 13:-5,198:2.5", v);
        } else if (cli_is(a, "--stop", NULL)) {
            if (!*v || o->gen.n_stop_strings >= GEN_MAX_STOPS)
                return bad(cmd, a, "a non-empty string (repeatable, at most 16)", v);
            o->stops[o->gen.n_stop_strings++] = v;
        } else if (cli_is(a, "--seed", NULL)) {
            if (!cli_parse_long(v, 0, LONG_MAX, &l))
                return bad(cmd, a, "a non-negative integer", v);
            o->gen.seed = l;
        } else if (cli_is(a, "-t", "--threads")) {
            if (!cli_parse_long(v, 0, 1024, &l))
                return bad(cmd, a, "a number from 0 (auto) to 1024", v);
            o->threads = (int)l;
        } else if (cli_is(a, "--prefill-step-size", NULL)) {
            if (!cli_parse_long(v, 1, INT_MAX, &l))
                return bad(cmd, a, "a number of tokens >= 1", v);
            o->gen.prefill_step_size = (int)l;
        } else if (cli_is(a, "--max-kv-size", NULL)) {
            if (!cli_parse_long(v, 1, INT_MAX, &l))
                return bad(cmd, a, "a number of tokens >= 1", v);
            o->sess.max_kv_size = (int)l;
        } else if (cli_is(a, "--kv-type", NULL)) {
            if (strcmp(v, "f32") != 0 && strcmp(v, "f16") != 0)
                return bad(cmd, a, "f32 or f16", v);
            o->sess.kv_f16 = strcmp(v, "f16") == 0;
        } else if (cli_is(a, "--kv-bits", NULL)) {
            if (!cli_parse_long(v, 2, 8, &l) || l == 7)
                return bad(cmd, a, "2, 3, 4, 5, 6 or 8", v);
            o->sess.kv_bits = (int)l;
        } else if (cli_is(a, "--kv-group-size", NULL)) {
            if (!cli_parse_long(v, 32, 128, &l) || (l != 32 && l != 64 && l != 128))
                return bad(cmd, a, "32, 64 or 128", v);
            o->sess.kv_group_size = (int)l;
        } else if (cli_is(a, "--quantized-kv-start", NULL)) {
            if (!cli_parse_long(v, 0, INT_MAX, &l))
                return bad(cmd, a, "a number of tokens >= 0", v);
            o->sess.quantized_kv_start = (int)l;
        } else {
            fprintf(stderr, "lmcore %s: unknown option '%s' (see --help)\n", cmd, a);
            return 1;
        }
    }
    return 0;
}

/* --- the default model --------------------------------------------------------------------------- */

static int is_model_dir(const char *dir) {
    char p[4200];
    if (snprintf(p, sizeof p, "%s/config.json", dir) >= (int)sizeof p)
        return 0;
    return access(p, R_OK) == 0;
}

int gen_model_dir(const char *cmd, const gen_opts *o, char *buf, size_t cap) {
    if (o->model) {
        snprintf(buf, cap, "%s", o->model);
        return 0;
    }
    const char *env = getenv("LMCORE_DEFAULT_MODEL");
    if (env && *env) {
        if (!is_model_dir(env)) {
            fprintf(stderr, "lmcore %s: LMCORE_DEFAULT_MODEL=%s has no config.json\n", cmd, env);
            return 1;
        }
        snprintf(buf, cap, "%s", env);
        return 0;
    }
    char exe[4096], tried[3][4200];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = 0;
    /* the source tree this binary was built from (this file's path at compile time) */
    char src[4096];
    snprintf(src, sizeof src, "%s", __FILE__);
    char *cut = strstr(src, "/tools/cli/gen_common.c");
    if (cut)
        *cut = 0;
    snprintf(tried[0], sizeof tried[0], "%s/../models/default", exe);
    snprintf(tried[1], sizeof tried[1], "%s/models/default", cut ? src : ".");
    snprintf(tried[2], sizeof tried[2], "models/default");
    for (int i = 0; i < 3; i++)
        if ((i > 0 || exe[0]) && is_model_dir(tried[i])) {
            snprintf(buf, cap, "%s", tried[i]);
            return 0;
        }
    fprintf(stderr,
            "lmcore %s: no -m DIR and the bundled model is missing (looked in $LMCORE_DEFAULT_MODEL, %s, %s, "
            "%s)\n",
            cmd, tried[0], tried[1], tried[2]);
    return 1;
}

int gen_load(const char *cmd, const gen_opts *o, lm_llm **llm) {
    char dir[4096];
    if (gen_model_dir(cmd, o, dir, sizeof dir))
        return 1;
    lm_llm_params lp = lm_llm_default_params();
    lp.n_threads = o->threads;
    lp.chat_template = o->chat_template_name;
    if (lm_llm_load(dir, &lp, llm) != LM_OK)
        return cli_fail(cmd, NULL);
    return 0;
}

/* --- progress and stats --------------------------------------------------------------------------- */

int gen_progress_cb(void *user, int done, int total) {
    gen_progress *g = user;
    if (!g->enabled || total < 512)
        return 0;
    int width = 40, fill = total ? (int)((long long)done * width / total) : width;
    fprintf(stderr, "\rprefill [");
    for (int i = 0; i < width; i++)
        fputc(i < fill ? '#' : '.', stderr);
    fprintf(stderr, "] %d/%d tokens", done, total);
    g->shown = 1;
    if (done == total) {
        fputs("\r\033[K", stderr); /* clear the bar before the text starts */
        g->shown = 0;
    }
    fflush(stderr);
    return 0;
}

void gen_print_stats(const lm_gen_result *r) {
    fprintf(stderr, "Prompt: %d tokens, %.3f tokens-per-sec | Generation: %d tokens, %.3f tokens-per-sec | Peak memory: %.3f GB | finish: %s\n",
            r->prompt_tokens, r->prompt_tps, r->generation_tokens, r->generation_tps, r->peak_memory_gb,
            lm_finish_reason_str(r->finish_reason));
}
