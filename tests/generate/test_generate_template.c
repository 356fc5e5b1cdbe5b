/* Prompts through a chat template: the bundled model's files plus a chat_template.jinja in a
 * temporary directory. Messages render with add_generation_prompt and encode without special
 * tokens; --system-prompt, --chat-template-config and --ignore-chat-template reach the CLI. */
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lmcore.h"
#include "test_util.h"

static const char TEMPLATE[] =
    "{% for m in messages %}<|endoftext|>{{ m.role }}: {{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}{{ greeting | default('assistant') }}:{% endif %}";

static int run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void encode(const lm_tokenizer *tok, const char *text, int special, int32_t *ids, int32_t *n) {
    CHECK(lm_tokenizer_encode(tok, text, strlen(text), special, ids, 256, n) == LM_OK && *n > 0);
}

int main(void) {
    const char *src = getenv("LMCORE_SRC"), *cli = getenv("LMCORE_CLI");
    char model[1024], tmp[256], path[1400], target[1400], cmd[4096], out[8192];
    snprintf(model, sizeof model, "%s/models/default", src ? src : ".");
    if (model[0] != '/') {
        char cwd[512];
        CHECK(getcwd(cwd, sizeof cwd) != NULL);
        snprintf(model, sizeof model, "%s/%s/models/default", cwd, src ? src : ".");
    }
    snprintf(tmp, sizeof tmp, "/tmp/lmcore_tmpl_%d", (int)getpid());
    CHECK(mkdir(tmp, 0700) == 0);
    const char *files[] = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                           "tokenizer_config.json"};
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, files[i]);
        snprintf(target, sizeof target, "%s/%s", model, files[i]);
        CHECK(symlink(target, path) == 0);
    }
    snprintf(path, sizeof path, "%s/chat_template.jinja", tmp);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(TEMPLATE, f);
        fclose(f);
    }

    lm_llm *llm;
    if (lm_llm_load(tmp, NULL, &llm) != LM_OK) {
        CHECKF(0, "%s", lm_last_error());
        return test_done("generate_template");
    }
    CHECK(lm_llm_chat_template(llm) != NULL);
    const lm_tokenizer *tok = lm_llm_tokenizer(llm);
    lm_chat_message msgs[2] = {{"system", "Be brief."}, {"user", "Once upon a time"}};
    int32_t *ids, want[256], n_want;
    int n;
    CHECK(lm_llm_encode_chat(llm, msgs, 2, 1, NULL, &ids, &n) == LM_OK);
    /* the rendered text, encoded without the post-processor's BOS (the template wrote it) */
    encode(tok, "<|endoftext|>system: Be brief.\n<|endoftext|>user: Once upon a time\nassistant:", 0, want, &n_want);
    CHECK(n == n_want && memcmp(ids, want, (size_t)n * sizeof *ids) == 0 && ids[0] == 0 && ids[1] != 0);
    lm_free_tokens(ids);
    /* template variables */
    CHECK(lm_llm_encode_chat(llm, msgs + 1, 1, 1, "{\"greeting\": \"bot\"}", &ids, &n) == LM_OK);
    encode(tok, "<|endoftext|>user: Once upon a time\nbot:", 0, want, &n_want);
    CHECK(n == n_want && memcmp(ids, want, (size_t)n * sizeof *ids) == 0);
    lm_free_tokens(ids);
    CHECK(lm_llm_encode_chat(llm, msgs + 1, 1, 1, "[1]", &ids, &n) != LM_OK);
    /* use_template = 0: raw, with BOS from the post-processor */
    CHECK(lm_llm_encode_chat(llm, msgs + 1, 1, 0, NULL, &ids, &n) == LM_OK);
    encode(tok, "Once upon a time", 1, want, &n_want);
    CHECK(n == n_want && memcmp(ids, want, (size_t)n * sizeof *ids) == 0);
    lm_free_tokens(ids);
    /* a raw prompt that already starts with the BOS text gets no second BOS (mlx-lm's rule) */
    CHECK(lm_llm_encode_raw(llm, "<|endoftext|>Hi", 15, &ids, &n) == LM_OK && ids[0] == 0 && ids[1] != 0);
    lm_free_tokens(ids);

    /* the CLI: prompt token counts from the stats line */
    const char *variants[3][2] = {
        {"--system-prompt 'Be brief.'", "<|endoftext|>system: Be brief.\n<|endoftext|>user: Hello\nassistant:"},
        {"--chat-template-config '{\"greeting\": \"bot\"}'", "<|endoftext|>user: Hello\nbot:"},
        {"--ignore-chat-template", NULL},
    };
    for (int v = 0; v < 3; v++) {
        int32_t expect_n;
        int32_t buf[256];
        if (variants[v][1])
            encode(tok, variants[v][1], 0, buf, &expect_n);
        else
            encode(tok, "Hello", 1, buf, &expect_n);
        snprintf(cmd, sizeof cmd, "%s generate -m %s -p Hello -n 3 -v %s 2>&1", cli ? cli : "./lmcore", tmp,
                 variants[v][0]);
        CHECK(run(cmd, out, sizeof out) == 0);
        char needle[64];
        snprintf(needle, sizeof needle, "Prompt: %d tokens", (int)expect_n);
        CHECKF(strstr(out, needle) != NULL, "%s: want '%s' in %s", variants[v][0], needle, out);
    }
    snprintf(cmd, sizeof cmd, "%s generate -m %s -p Hello --chat-template-config '[1]' 2>&1", cli ? cli : "./lmcore",
             tmp);
    CHECK(run(cmd, out, sizeof out) == 1);
    lm_llm_free(llm);

    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/chat_template.jinja", tmp);
    unlink(path);
    rmdir(tmp);
    return test_done("generate_template");
}
