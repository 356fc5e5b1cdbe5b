/* lmcore generate / chat / cache-prompt through the CLI: streamed text equals the API's greedy
 * output, bad flag values name their range, chat handles /reset and /quit. */
#include <sys/wait.h>
#include <unistd.h>

#include "lmcore.h"
#include "test_util.h"

static const char *cli(void) {
    const char *c = getenv("LMCORE_CLI");
    return c ? c : "./lmcore";
}

/* Run a shell command; stdout (and stderr when `both`) into out. Returns the exit status. */
static int run(const char *cmd, int both, char *out, size_t cap) {
    char full[8192];
    snprintf(full, sizeof full, "%s%s", cmd, both ? " 2>&1" : " 2>/dev/null");
    FILE *p = popen(full, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

typedef struct {
    char text[8192];
    size_t len;
} acc;

static int collect(void *user, const char *t, size_t len, int32_t tok, float lp) {
    (void)tok;
    (void)lp;
    acc *a = user;
    if (a->len + len < sizeof a->text) {
        memcpy(a->text + a->len, t, len);
        a->len += len;
        a->text[a->len] = 0;
    }
    return 0;
}

int main(void) {
    char dir[1024], cmd[4096], out[16384];
    const char *src = getenv("LMCORE_SRC");
    snprintf(dir, sizeof dir, "%s/models/default", src ? src : ".");

    /* the API's greedy continuation of 30 tokens */
    lm_llm *llm;
    if (lm_llm_load(dir, NULL, &llm) != LM_OK) {
        CHECKF(0, "%s", lm_last_error());
        return test_done("generate_cli");
    }
    lm_session *s;
    int32_t *ids;
    int n;
    static acc a;
    CHECK(lm_session_new(llm, NULL, &s) == LM_OK);
    CHECK(lm_llm_encode_raw(llm, "Once upon a time", 16, &ids, &n) == LM_OK);
    lm_gen_params p = lm_gen_default_params();
    p.max_tokens = 30;
    p.on_token = collect;
    p.user = &a;
    CHECK(lm_session_generate(s, ids, n, &p, NULL) == LM_OK);
    lm_free_tokens(ids);
    lm_session_free(s);
    lm_llm_free(llm);

    /* -m given; then the bundled default found next to the executable / in the source tree */
    char expect[8300];
    snprintf(expect, sizeof expect, "%s\n", a.text);
    snprintf(cmd, sizeof cmd, "%s generate -m %s -p 'Once upon a time' -n 30", cli(), dir);
    CHECK(run(cmd, 0, out, sizeof out) == 0);
    CHECKF(strcmp(out, expect) == 0, "got '%s'\nexpected '%s'", out, expect);
    snprintf(cmd, sizeof cmd, "cd / && LMCORE_DEFAULT_MODEL= %s generate -p 'Once upon a time' -n 30", cli());
    CHECK(run(cmd, 0, out, sizeof out) == 0 && strcmp(out, expect) == 0);
    /* the prompt from stdin, and the stats line with --verbose */
    snprintf(cmd, sizeof cmd, "printf 'Once upon a time' | %s generate -m %s -p - -n 30 --verbose", cli(), dir);
    CHECK(run(cmd, 1, out, sizeof out) == 0 && strncmp(out, expect, strlen(expect)) == 0);
    CHECKF(strstr(out, "Prompt: 6 tokens") && strstr(out, "Generation: 30 tokens") && strstr(out, "tokens-per-sec") &&
               strstr(out, "Peak memory:") && strstr(out, "finish: length"),
           "%s", out);
    /* an f16 KV cache: the same greedy text on the bundled model */
    snprintf(cmd, sizeof cmd, "%s generate -m %s -p 'Once upon a time' -n 30 --kv-type f16", cli(), dir);
    CHECKF(run(cmd, 0, out, sizeof out) == 0 && strcmp(out, expect) == 0, "--kv-type f16: '%s'", out);
    /* a missing default model is named */
    snprintf(cmd, sizeof cmd, "LMCORE_DEFAULT_MODEL=/nonexistent %s generate -p hi", cli());
    CHECK(run(cmd, 1, out, sizeof out) == 1 && strstr(out, "/nonexistent"));

    /* bad values are rejected with their range */
    struct {
        const char *args, *needle;
    } bad[] = {
        {"--top-p 1.5", "[0, 1]"},
        {"--temp -1", ">= 0"},
        {"--top-k x", "--top-k"},
        {"--xtc-threshold 0.9", "[0, 0.5]"},
        {"-n -5", "-1"},
        {"--kv-bits 7", "2, 3, 4, 5, 6 or 8"},
        {"--kv-type q8", "f32 or f16"},
        {"--kv-group-size 48", "32, 64 or 128"},
        {"--max-kv-size 0", ">= 1"},
        {"--prompt-cache-file /nonexistent/pc.safetensors", "/nonexistent/pc.safetensors"},
        {"--top-k 9000", "top_k must be in [0, 8191]"},
        {"--bogus 1", "unknown option"},
        {"--logit-bias 5", "ID:BIAS"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s generate -m %s -p hi %s", cli(), dir, bad[i].args);
        int rc = run(cmd, 1, out, sizeof out);
        CHECKF(rc == 1 && strstr(out, bad[i].needle) && strchr(out, '\n') == out + strlen(out) - 1,
               "%s -> rc %d: %s", bad[i].args, rc, out);
    }
    snprintf(cmd, sizeof cmd, "%s generate -m %s", cli(), dir);
    CHECK(run(cmd, 1, out, sizeof out) == 1 && strstr(out, "-p"));
    snprintf(cmd, sizeof cmd, "%s cache-prompt -m %s -p hi", cli(), dir);
    CHECK(run(cmd, 1, out, sizeof out) == 1 && strstr(out, "--prompt-cache-file"));
    /* cache-prompt + generate --prompt-cache-file prints what the whole prompt would */
    {
        char pc[128], whole[4096];
        snprintf(pc, sizeof pc, "/tmp/lmcore_cli_pc_%d.safetensors", (int)getpid());
        snprintf(cmd, sizeof cmd, "%s generate -m %s -p 'Once upon a time there' -n 20", cli(), dir);
        CHECK(run(cmd, 0, whole, sizeof whole) == 0);
        snprintf(cmd, sizeof cmd, "%s cache-prompt -m %s -p 'Once upon a time' --prompt-cache-file %s", cli(), dir, pc);
        CHECK(run(cmd, 0, out, sizeof out) == 0);
        snprintf(cmd, sizeof cmd, "%s generate -m %s --prompt-cache-file %s -p ' there' -n 20", cli(), dir, pc);
        CHECKF(run(cmd, 0, out, sizeof out) == 0 && strcmp(out, whole) == 0, "cached: '%s' whole: '%s'", out, whole);
        /* a cache made with other KV settings is refused */
        snprintf(cmd, sizeof cmd, "%s generate -m %s --prompt-cache-file %s --max-kv-size 64 -p x", cli(), dir, pc);
        CHECK(run(cmd, 1, out, sizeof out) == 1 && strstr(out, "cache setting"));
        unlink(pc);
    }
    snprintf(cmd, sizeof cmd, "%s generate --help", cli());
    CHECK(run(cmd, 0, out, sizeof out) == 0 && strstr(out, "--max-tokens") && strstr(out, "--top-p"));

    /* chat: the first answer equals generate's (no template: the raw text); /reset; /quit */
    snprintf(cmd, sizeof cmd, "printf 'Once upon a time\\n/reset\\nOnce upon a time\\n/quit\\nignored\\n' | %s chat -m %s -n 30",
             cli(), dir);
    CHECK(run(cmd, 0, out, sizeof out) == 0);
    char twice[17000];
    snprintf(twice, sizeof twice, "%s\n(conversation reset)\n%s\n", a.text, a.text);
    CHECKF(strcmp(out, twice) == 0, "chat printed '%s'", out);
    /* a second turn continues the conversation (the history is part of the prompt) */
    snprintf(cmd, sizeof cmd, "printf 'Once upon a time\\nThe end\\n' | %s chat -m %s -n 8 --verbose", cli(), dir);
    CHECK(run(cmd, 1, out, sizeof out) == 0);
    const char *second = strstr(out, "Prompt: ");
    second = second ? strstr(second + 1, "Prompt: ") : NULL;
    int second_prompt = second ? atoi(second + 8) : 0;
    CHECKF(second_prompt > 10, "second turn prompt of %d tokens: %s", second_prompt, out);
    return test_done("generate_cli");
}
