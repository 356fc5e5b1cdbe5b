/* libFuzzer target: the input is a chat template; it is parsed and rendered against a small
 * fixed context with tight limits. Any input must give LM_OK or an error, never a crash, hang
 * or leak. Seeds: fuzz/seeds_template (chat-like templates). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "text/jinja.h"

static const char CONTEXT[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \"hi <b> é\"},"
    " {\"role\": \"assistant\", \"content\": \"<think>x</think>ok\", \"tool_calls\": [{\"type\": \"function\","
    " \"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1.5, \"b\": [true, null]}}}]},"
    " {\"role\": \"tool\", \"content\": [{\"type\": \"text\", \"text\": \"t\"}]}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}],"
    " \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"n\": 3}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    jj_template t;
    if (jj_parse("fuzz", (const char *)data, size, &t) == LM_OK) {
        cJSON *ctx = cJSON_Parse(CONTEXT);
        jj_limits lim = {.max_memory = (size_t)32 << 20, .max_output = (size_t)1 << 20, .max_steps = 20000, .max_depth = 16};
        char *out = NULL;
        if (jj_render_template(&t, ctx, &lim, 1700000000, &out, NULL) == LM_OK)
            free(out);
        cJSON_Delete(ctx);
    }
    jj_template_free(&t);
    return 0;
}
