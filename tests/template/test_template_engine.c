/* Jinja engine: every case of cases.json (rendered by Python Jinja2 as transformers configures
 * it; see jinja_reference.py) must render to the same bytes; error cases must fail with
 * LM_ERR_TEMPLATE and a message naming the line and column; hostile templates hit limits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/util.h"
#include "lmcore.h"
#include "test_util.h"

/* render src with a JSON object context (messages taken from it, default []) */
static lm_status render(const char *src, const char *ctx_json, char **out) {
    lm_chat_template *t = NULL;
    *out = NULL;
    lm_status st = lm_chat_template_from_string(src, NULL, NULL, &t);
    if (st != LM_OK)
        return st;
    cJSON *ctx = cJSON_Parse(ctx_json ? ctx_json : "{}");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(ctx, "messages");
    char *ms = m ? cJSON_PrintUnformatted(m) : NULL;
    st = lm_chat_template_render(t, ms ? ms : "[]", 0, ctx_json, out);
    free(ms);
    cJSON_Delete(ctx);
    lm_chat_template_free(t);
    return st;
}

static void check_render(const char *name, const char *src, const char *ctx, const char *want) {
    char *out;
    lm_status st = render(src, ctx, &out);
    CHECKF(st == LM_OK, "%s: %s", name, lm_last_error());
    if (st == LM_OK)
        CHECKF(strcmp(out, want) == 0, "%s:\n  got  [%s]\n  want [%s]", name, out, want);
    lm_free_string(out);
}

static void check_error(const char *name, const char *src, const char *ctx, const char *want) {
    char *out;
    lm_status st = render(src, ctx, &out);
    CHECKF(st == LM_ERR_TEMPLATE, "%s: status %d (%s)", name, st, out ? out : "");
    CHECKF(out == NULL, "%s: output after an error", name);
    CHECKF(strstr(lm_last_error(), want) != NULL, "%s:\n  error [%s]\n  want  [%s]", name, lm_last_error(), want);
    lm_free_string(out);
}

static void reference_cases(void) {
    char path[1024];
    const char *src = getenv("LMCORE_SRC");
    snprintf(path, sizeof path, "%s/tests/template/cases.json", src && *src ? src : ".");
    char *text;
    if (lm_read_file(path, &text, NULL) != LM_OK) {
        CHECKF(0, "cannot read %s", path);
        return;
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    CHECK(root != NULL);
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
        char *ctx = cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "context"));
        check_render(cJSON_GetObjectItem(c, "name")->valuestring, cJSON_GetObjectItem(c, "template")->valuestring, ctx,
                     cJSON_GetObjectItem(c, "expected")->valuestring);
        free(ctx);
        n++;
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "errors")) {
        char *ctx = cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "context"));
        check_error(cJSON_GetObjectItem(c, "name")->valuestring, cJSON_GetObjectItem(c, "template")->valuestring, ctx,
                    cJSON_GetObjectItem(c, "error")->valuestring);
        free(ctx);
        n++;
    }
    printf("reference cases: %d\n", n);
    cJSON_Delete(root);
}

/* hostile templates stop with an error instead of hanging or exhausting memory */
static void limits(void) {
    check_error("step_limit", "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", NULL,
                "step limit");
    check_error("macro_depth", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, "nested too deeply");
    check_error("huge_repeat", "{{ 'x' * 1000000000000 }}", NULL, "too large");
    check_error("huge_range", "{{ range(10000000000) | length }}", NULL, "range too large");
    check_error("int_overflow", "{{ 9223372036854775807 + 1 }}", NULL, "integer overflow");
    check_error("big_literal", "{{ 99999999999999999999 }}", NULL, "integer literal too large");
    check_error("doubling", "{% set ns = namespace(s='xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx') %}"
                "{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}", NULL,
                "too large");
    /* deep nesting: parentheses, unary minus, not, lists, if blocks */
    size_t n = 100000;
    char *deep = malloc(3 * n);
    const char *opens[] = {"(", "-", "not ", "[", "{% if 1 %}"}, *closes[] = {")", "", "", "]", ""};
    for (size_t k = 0; k < sizeof opens / sizeof opens[0]; k++) {
        size_t o = 0, ol = strlen(opens[k]), cl = strlen(closes[k]), count = n / (ol + cl);
        if (k < 4)
            o += (size_t)sprintf(deep, "{{ ");
        for (size_t i = 0; i < count; i++, o += ol)
            memcpy(deep + o, opens[k], ol);
        deep[o++] = '1';
        for (size_t i = 0; i < count; i++, o += cl)
            memcpy(deep + o, closes[k], cl);
        strcpy(deep + o, k < 4 ? " }}" : "");
        check_error(opens[k], deep, NULL, "too deeply");
    }
    free(deep);
}

static void hand_cases(void) {
    check_render("generation", "{% generation %}kept{% endgeneration %}", NULL, "kept");
    check_render("defaults", "{{ tools is none }} {{ documents is none }} {{ add_generation_prompt }}", NULL,
                 "True True False");
    check_render("bos_undefined", "[{{ bos_token }}]{{ bos_token is defined }}", NULL, "[]False");
    check_render("extra_override", "{{ enable_thinking }} {{ tools | length }}", "{\"enable_thinking\": false, \"tools\": [1, 2]}",
                 "False 2");
    check_render("json_numbers", "{{ n }} {{ f }} {{ n | tojson }}", "{\"n\": 3, \"f\": 0.5}", "3 0.5 3");
    check_render("empty", "", NULL, "");
    check_render("empty_concat", "{{ ([] + []) | length }} {{ ('' + '') | length }} {{ ([] + [1]) | length }}", NULL,
                 "0 0 1");
    check_render("empty_seqs", "{{ ({} | list) | length }} {{ ('' * 3) | length }} {{ ([] | sort) | length }}", NULL,
                 "0 0 0");
    check_error("line_col", "line1\nline2 {{ 1 +* 2 }}", NULL, ":2:13: unexpected '*'");
    check_error("unknown_tag_generation_like", "{% assistant %}x{% endassistant %}", NULL, "unknown or unsupported tag 'assistant'");

    lm_chat_template *t = NULL;
    char *out = NULL;
    CHECK(lm_chat_template_from_string("{{ bos_token }}{{ messages[0].content }}{{ eos_token }}", "<s>", "</s>", &t) == LM_OK);
    CHECK(lm_chat_template_render(t, "[{\"role\": \"user\", \"content\": \"hi\"}]", 1, NULL, &out) == LM_OK);
    CHECK(out && strcmp(out, "<s>hi</s>") == 0);
    lm_free_string(out);
    CHECK(lm_chat_template_render(t, "{\"not\": \"a list\"}", 1, NULL, &out) == LM_ERR_INVALID_ARG && !out);
    CHECK(lm_chat_template_render(t, "[1,", 1, NULL, &out) == LM_ERR_FORMAT && !out);
    CHECK(lm_chat_template_render(t, "[]", 1, "[1]", &out) == LM_ERR_INVALID_ARG && !out);
    lm_chat_template_free(t);
    CHECK(lm_chat_template_from_string("{% if %}", NULL, NULL, &t) == LM_ERR_TEMPLATE && t == NULL);
    CHECK(lm_chat_template_from_string(NULL, NULL, NULL, &t) == LM_ERR_INVALID_ARG);
}

int main(void) {
    setenv("LMCORE_STRFTIME_NOW", "1700000000", 1);
    reference_cases();
    hand_cases();
    limits();
    return test_done("test_template_engine");
}
