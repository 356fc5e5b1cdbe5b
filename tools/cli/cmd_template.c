/* lmcore template -t DIR: render the directory's chat template for a JSON message list on
 * stdin and print the prompt exactly (no trailing newline added). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "lmcore.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lmcore template -t DIR [options] < messages.json\n"
            "\n"
            "Render DIR's chat template (chat_template.jinja or tokenizer_config.json) for the\n"
            "messages on stdin: a JSON array of {role, content} objects, or an object\n"
            "{\"messages\": [...], \"add_generation_prompt\": bool, \"tools\": [...], other keys}\n"
            "whose other keys become template variables.\n"
            "\n"
            "options:\n"
            "  -t, --tokenizer DIR          model or tokenizer directory (-m, --model also work)\n"
            "  --add-generation-prompt      end with the assistant header (default)\n"
            "  --no-add-generation-prompt   do not\n"
            "  --config JSON                extra template variables, e.g. '{\"enable_thinking\": false}'\n"
            "  --name NAME                  a named template (tokenizer_config.json list)\n"
            "  -h, --help                   this help\n");
}

/* Merge `src`'s keys into `dst` (replacing). */
static int merge(cJSON *dst, const cJSON *src) {
    for (const cJSON *e = src->child; e; e = e->next) {
        cJSON *dup = cJSON_Duplicate(e, 1);
        if (!dup)
            return 0;
        cJSON_DeleteItemFromObjectCaseSensitive(dst, e->string);
        cJSON_AddItemToObject(dst, e->string, dup);
    }
    return 1;
}

int cmd_template(int argc, char **argv) {
    const char *dir = NULL, *config = NULL, *name = NULL;
    int agp = -1; /* -1: not given */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is(a, "--help", "-h")) {
            usage(stdout);
            return 0;
        } else if (cli_is(a, "-t", "--tokenizer") || cli_is(a, "-m", "--model")) {
            if (++i >= argc)
                return cli_fail("template", "-t needs a directory");
            dir = argv[i];
        } else if (cli_is(a, "--config", NULL)) {
            if (++i >= argc)
                return cli_fail("template", "--config needs a JSON object");
            config = argv[i];
        } else if (cli_is(a, "--name", NULL)) {
            if (++i >= argc)
                return cli_fail("template", "--name needs a template name");
            name = argv[i];
        } else if (cli_is(a, "--add-generation-prompt", NULL)) {
            agp = 1;
        } else if (cli_is(a, "--no-add-generation-prompt", NULL)) {
            agp = 0;
        } else {
            fprintf(stderr, "lmcore template: unknown option '%s' (see --help)\n", a);
            return 1;
        }
    }
    if (!dir)
        return cli_fail("template", "missing -t DIR (see --help)");

    size_t len;
    char *in = cli_read_stdin(&len);
    if (!in)
        return cli_fail("template", "cannot read stdin");
    cJSON *root = cJSON_ParseWithLength(in, len);
    free(in);
    if (!root || (!cJSON_IsArray(root) && !cJSON_IsObject(root))) {
        cJSON_Delete(root);
        return cli_fail("template", "stdin: expected a JSON array of messages or an object with \"messages\"");
    }
    cJSON *extra = cJSON_CreateObject(), *msgs = root;
    int rc = 1;
    char *msgs_s = NULL, *extra_s = NULL, *out = NULL;
    lm_chat_template *t = NULL;
    if (!extra)
        goto done;
    if (cJSON_IsObject(root)) {
        msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
        if (!cJSON_IsArray(msgs)) {
            rc = cli_fail("template", "stdin: \"messages\" must be a JSON array");
            goto done;
        }
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(root, "add_generation_prompt");
        if (g && !cJSON_IsBool(g)) {
            rc = cli_fail("template", "stdin: \"add_generation_prompt\" must be true or false");
            goto done;
        }
        if (g && agp < 0)
            agp = cJSON_IsTrue(g);
        for (const cJSON *e = root->child; e; e = e->next) {
            if (strcmp(e->string, "messages") == 0 || strcmp(e->string, "add_generation_prompt") == 0)
                continue;
            cJSON *dup = cJSON_Duplicate(e, 1);
            if (!dup)
                goto done;
            cJSON_AddItemToObject(extra, e->string, dup);
        }
    }
    if (config) {
        cJSON *c = cJSON_Parse(config);
        if (!cJSON_IsObject(c)) {
            cJSON_Delete(c);
            rc = cli_fail("template", "--config: expected a JSON object");
            goto done;
        }
        int ok = merge(extra, c);
        cJSON_Delete(c);
        if (!ok)
            goto done;
    }
    msgs_s = cJSON_PrintUnformatted(msgs);
    extra_s = cJSON_PrintUnformatted(extra);
    if (!msgs_s || !extra_s) {
        rc = cli_fail("template", "out of memory");
        goto done;
    }
    if (lm_chat_template_load(dir, name, &t) != LM_OK ||
        lm_chat_template_render(t, msgs_s, agp < 0 ? 1 : agp, extra_s, &out) != LM_OK) {
        rc = cli_fail("template", NULL);
        goto done;
    }
    fwrite(out, 1, strlen(out), stdout);
    rc = fflush(stdout) == 0 ? 0 : cli_fail("template", "cannot write stdout");
done:
    lm_free_string(out);
    lm_chat_template_free(t);
    free(msgs_s);
    free(extra_s);
    cJSON_Delete(extra);
    cJSON_Delete(root);
    return rc;
}
