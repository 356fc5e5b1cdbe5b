/* lmcore generate / perplexity / cache-prompt */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "gen_common.h"

static const char GENERATE_USAGE[] =
    "usage: lmcore generate [-m DIR] -p PROMPT [options]\n"
    "  Streams the model's continuation of PROMPT to stdout. Without -m it uses the bundled model\n"
    "  (models/default; or $LMCORE_DEFAULT_MODEL). With a chat template the prompt becomes a user\n"
    "  message (plus --system-prompt) rendered with add_generation_prompt; otherwise it is raw.\n"
    "  -m, --model DIR             model directory (config.json, safetensors, tokenizer.json)\n"
    "  -p, --prompt TEXT           the prompt ('-': read stdin; \\n and \\t are unescaped)\n"
    "      --system-prompt TEXT    a system message for the chat template\n"
    "  -n, --max-tokens N          tokens to generate (256; -1: until EOS or a full context)\n"
    "      --temp T                temperature (0: greedy argmax, the default)\n"
    "      --top-p P               nucleus sampling in [0, 1] (1: off)\n"
    "      --min-p P               min-p in [0, 1] (0: off); --min-tokens-to-keep N (1)\n"
    "      --top-k K               keep the K most likely tokens (0: off)\n"
    "      --xtc-probability P     XTC in [0, 1] (0: off); --xtc-threshold T in [0, 0.5] (0.1)\n"
    "      --repetition-penalty R  (0: off) over --repetition-context-size N (20) tokens\n"
    "      --presence-penalty X    --frequency-penalty X  (0: off; 20 tokens of context)\n"
    "      --logit-bias ID:B,...   add B to the logit of token ID\n"
    "      --stop STRING           stop at STRING (not printed; repeatable)\n"
    "      --seed N                random seed (default: from the clock)\n"
    "      --ignore-chat-template  use the raw prompt\n"
    "      --chat-template-config JSON   template variables, e.g. '{\"enable_thinking\": false}'\n"
    "      --chat-template NAME    a named template of the tokenizer\n"
    "      --prefill-step-size N   prompt tokens per forward (2048)\n"
    "  -t, --threads N             CPU threads (0: one per core)\n"
    "  -v, --verbose               print a stats line on stderr (tokens, tokens/s, peak memory)\n"
    "      --max-kv-size N         keep at most N tokens in the KV cache (the first 4 and the latest)\n"
    "      --kv-type T             KV cache rows as f32 (default) or f16 (half the memory)\n"
    "      --kv-bits B             quantize the KV cache to B bits (2-6, 8) once it holds more than\n"
    "      --quantized-kv-start S  S tokens (5000), in groups of --kv-group-size G (64) per head\n"
    "      --prompt-cache-file F   start from a cache written by `lmcore cache-prompt`; PROMPT is\n"
    "                              appended to the cached prompt as raw text\n";

/* mlx-lm replaces the two-character escapes \n and \t in -p. */
static void unescape(char *s) {
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (r[0] == '\\' && (r[1] == 'n' || r[1] == 't')) {
            *w++ = r[1] == 'n' ? '\n' : '\t';
            r++;
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
}

static int print_text(void *user, const char *text, size_t len, int32_t token, float logprob) {
    (void)user;
    (void)token;
    (void)logprob;
    if (len) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    return 0;
}

/* The session's cached tokens followed by `text` encoded without special tokens. 0 or 1. */
static int cached_plus_raw(lm_llm *llm, lm_session *sess, const char *text, int32_t **ids, int *n_ids) {
    int n_c = 0, n_t = 0;
    const int32_t *cached = lm_session_tokens(sess, &n_c);
    const lm_tokenizer *tok = lm_llm_tokenizer(llm);
    size_t len = strlen(text);
    if (lm_tokenizer_encode(tok, text, len, 0, NULL, 0, &n_t) != LM_OK)
        return 1;
    n_t = n_t < 0 ? -n_t : n_t;
    int32_t *out = malloc(((size_t)n_c + (size_t)n_t + 1) * sizeof *out);
    if (!out)
        return 1;
    memcpy(out, cached, (size_t)n_c * sizeof *out);
    int32_t got = 0;
    if (lm_tokenizer_encode(tok, text, len, 0, out + n_c, n_t, &got) != LM_OK) {
        free(out);
        return 1;
    }
    *ids = out;
    *n_ids = n_c + got;
    return 0;
}

/* -p's text (or stdin for "-"), with mlx-lm's two-character escapes \\n and \\t replaced. */
static char *read_prompt(const gen_opts *o) {
    int from_stdin = strcmp(o->prompt, "-") == 0;
    char *p = from_stdin ? cli_read_stdin(NULL) : strdup(o->prompt);
    if (p && !from_stdin)
        unescape(p);
    return p;
}

/* The prompt's ids as generate builds them: a user message (after --system-prompt) through the
 * chat template when the model has one and it is not ignored, else the raw text. */
static lm_status prompt_ids(lm_llm *llm, const gen_opts *o, const char *prompt, int32_t **ids, int *n_ids) {
    lm_chat_message msgs[2];
    int n_msgs = 0;
    int use_template = !o->ignore_chat_template && lm_llm_chat_template(llm);
    if (use_template && o->system_prompt)
        msgs[n_msgs++] = (lm_chat_message){"system", o->system_prompt};
    msgs[n_msgs++] = (lm_chat_message){"user", prompt};
    return lm_llm_encode_chat(llm, msgs, n_msgs, use_template, o->chat_template_config, ids, n_ids);
}

int cmd_generate(int argc, char **argv) {
    gen_opts o;
    int r = gen_parse("generate", argc, argv, GENERATE_USAGE, &o);
    if (r)
        return r == 2 ? 0 : 1;
    if (!o.prompt)
        return cli_fail("generate", "missing -p PROMPT (or -p - to read stdin; see --help)");
    char *prompt = read_prompt(&o);
    if (!prompt)
        return cli_fail("generate", "cannot read the prompt");
    lm_llm *llm = NULL;
    lm_session *sess = NULL;
    int32_t *ids = NULL;
    int n_ids = 0, rc = 1;
    if (gen_load("generate", &o, &llm))
        goto done;
    if (lm_session_new(llm, &o.sess, &sess) != LM_OK) {
        cli_fail("generate", NULL);
        goto done;
    }
    if (o.prompt_cache_file) { /* cached tokens, then the prompt as a raw continuation */
        if (lm_session_load(sess, o.prompt_cache_file) != LM_OK) {
            cli_fail("generate", NULL);
            goto done;
        }
        if (cached_plus_raw(llm, sess, prompt, &ids, &n_ids)) {
            cli_fail("generate", n_ids ? NULL : "cannot encode the prompt");
            goto done;
        }
    } else if (prompt_ids(llm, &o, prompt, &ids, &n_ids) != LM_OK) {
        cli_fail("generate", NULL);
        goto done;
    }
    gen_progress prog = {.enabled = isatty(2)};
    o.gen.on_token = print_text;
    o.gen.on_progress = gen_progress_cb;
    o.gen.progress_user = &prog;
    lm_gen_result res = {.size = sizeof res};
    lm_status st = lm_session_generate(sess, ids, n_ids, &o.gen, &res);
    if (st == LM_OK || res.generation_tokens)
        fputc('\n', stdout);
    fflush(stdout);
    if (st != LM_OK) {
        cli_fail("generate", NULL);
        goto done;
    }
    if (o.verbose)
        gen_print_stats(&res);
    rc = 0;
done:
    lm_free_tokens(ids);
    lm_session_free(sess);
    lm_llm_free(llm);
    free(prompt);
    return rc;
}

/* --- perplexity ---------------------------------------------------------------------------------- */

static const char PERPLEXITY_USAGE[] =
    "usage: lmcore perplexity [-m DIR] -f FILE [--context 512] [--max-windows N] [-t THREADS]\n"
    "  Tokenizes FILE without special tokens, prepends one BOS, runs windows of --context tokens\n"
    "  each from an empty cache, and prints exp(mean NLL) of tokens 1..n-1 of every window.\n";

static int ppl_progress(void *user, int done, int total) {
    if (*(int *)user) {
        fprintf(stderr, "\rwindow %d/%d", done, total);
        if (done == total)
            fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    return 0;
}

int cmd_perplexity(int argc, char **argv) {
    const char *file = NULL;
    lm_perplexity_params pp = lm_perplexity_default_params();
    /* take -f/--context/--max-windows out, hand the rest to the shared parser */
    char **rest = malloc(((size_t)argc + 1) * sizeof *rest);
    if (!rest)
        return cli_fail("perplexity", "out of memory");
    int nr = 0;
    rest[nr++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int takes = cli_is(a, "-f", "--file") || cli_is(a, "--context", NULL) || cli_is(a, "--max-windows", NULL);
        if (!takes) {
            rest[nr++] = argv[i];
            continue;
        }
        if (i + 1 >= argc) {
            free(rest);
            fprintf(stderr, "lmcore perplexity: %s needs a value (see --help)\n", a);
            return 1;
        }
        const char *v = argv[++i];
        char *end;
        long l = strtol(v, &end, 10);
        if (cli_is(a, "-f", "--file")) {
            file = v;
        } else if (cli_is(a, "--context", NULL)) {
            if (*end || end == v || l < 2 || l > 1 << 20) {
                free(rest);
                fprintf(stderr, "lmcore perplexity: --context takes a number of tokens >= 2 (got '%s')\n", v);
                return 1;
            }
            pp.context = (int)l;
        } else {
            if (*end || end == v || l < 0 || l > 1 << 30) {
                free(rest);
                fprintf(stderr, "lmcore perplexity: --max-windows takes a number >= 0 (0: all; got '%s')\n", v);
                return 1;
            }
            pp.max_windows = (int)l;
        }
    }
    gen_opts o;
    int r = gen_parse("perplexity", nr, rest, PERPLEXITY_USAGE, &o);
    free(rest);
    if (r)
        return r == 2 ? 0 : 1;
    if (!file)
        return cli_fail("perplexity", "missing -f FILE (see --help)");
    FILE *f = fopen(file, "rb");
    if (!f) {
        fprintf(stderr, "lmcore perplexity: %s: cannot open\n", file);
        return 1;
    }
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    for (;;) {
        if (!text)
            break;
        if (len + 1 >= cap) {
            char *nt = realloc(text, cap *= 2);
            if (!nt) {
                free(text);
                text = NULL;
                break;
            }
            text = nt;
        }
        size_t got = fread(text + len, 1, cap - len - 1, f);
        if (!got)
            break;
        len += got;
    }
    fclose(f);
    if (!text)
        return cli_fail("perplexity", "out of memory");
    text[len] = 0;
    lm_llm *llm = NULL;
    int rc = 1, tty = isatty(2);
    if (gen_load("perplexity", &o, &llm) == 0) {
        pp.on_progress = ppl_progress;
        pp.user = &tty;
        lm_perplexity_result res;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (lm_llm_perplexity(llm, text, len, &pp, &res) != LM_OK) {
            cli_fail("perplexity", NULL);
        } else {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
            printf("perplexity %.4f (mean NLL %.6f over %lld predicted tokens, %d windows of %d; %.1f s, %.0f "
                   "tokens/s)\n",
                   res.perplexity, res.mean_nll, (long long)res.predicted_tokens, res.windows, pp.context, secs,
                   secs > 0 ? (double)(res.predicted_tokens + res.windows) / secs : 0.0);
            rc = 0;
        }
    }
    lm_llm_free(llm);
    free(text);
    return rc;
}

/* --- cache-prompt ---------------------------------------------------------------------------------- */

/* mlx-lm's cache_prompt: evaluate the prompt (chat template applied as in generate) and save
 * the session's KV cache; `generate --prompt-cache-file` continues from it. */
static const char CACHE_PROMPT_USAGE[] =
    "usage: lmcore cache-prompt [-m DIR] -p PROMPT --prompt-cache-file FILE [options]\n"
    "  Runs PROMPT through the model (as `generate` builds it: chat template, --system-prompt) and\n"
    "  saves the KV cache and its tokens to FILE. `lmcore generate --prompt-cache-file FILE -p TEXT`\n"
    "  then continues from it without evaluating the cached prompt again. The KV-cache options\n"
    "  (--max-kv-size, --kv-type, --kv-bits, --kv-group-size, --quantized-kv-start) must match between\n"
    "  the two.\n";

int cmd_cache_prompt(int argc, char **argv) {
    gen_opts o;
    int r = gen_parse("cache-prompt", argc, argv, CACHE_PROMPT_USAGE, &o);
    if (r)
        return r == 2 ? 0 : 1;
    if (!o.prompt || !o.prompt_cache_file)
        return cli_fail("cache-prompt", "needs -p PROMPT and --prompt-cache-file FILE (see --help)");
    char *prompt = read_prompt(&o);
    if (!prompt)
        return cli_fail("cache-prompt", "cannot read the prompt");
    lm_llm *llm = NULL;
    lm_session *sess = NULL;
    int32_t *ids = NULL;
    int n_ids = 0, rc = 1;
    if (gen_load("cache-prompt", &o, &llm))
        goto done;
    gen_progress prog = {.enabled = isatty(2)};
    o.gen.max_tokens = 0; /* prefill only */
    o.gen.on_progress = gen_progress_cb;
    o.gen.progress_user = &prog;
    lm_gen_result res = {.size = sizeof res};
    if (prompt_ids(llm, &o, prompt, &ids, &n_ids) != LM_OK || lm_session_new(llm, &o.sess, &sess) != LM_OK ||
        lm_session_generate(sess, ids, n_ids, &o.gen, &res) != LM_OK ||
        lm_session_save(sess, o.prompt_cache_file) != LM_OK) {
        cli_fail("cache-prompt", NULL);
        goto done;
    }
    if (o.verbose)
        fprintf(stderr, "cached %d prompt tokens (%.1f tokens/s) in %s\n", n_ids, res.prompt_tps, o.prompt_cache_file);
    rc = 0;
done:
    lm_free_tokens(ids);
    lm_session_free(sess);
    lm_llm_free(llm);
    free(prompt);
    return rc;
}
