/* Chat templates: loading from a model directory (chat_template.jinja or
 * tokenizer_config.json's chat_template, plain or named) and rendering with the context
 * transformers' apply_chat_template builds (messages, tools, documents,
 * add_generation_prompt, the special tokens, extra kwargs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "io/json.h"
#include "lmcore.h"
#include "text/jinja.h"

struct lm_chat_template {
    jj_template tpl;
    cJSON *specials; /* {"bos_token": ..., "eos_token": ...} */
};

static const char *const SPECIAL_KEYS[] = {"bos_token", "eos_token", "unk_token", "pad_token"};

void lm_free_string(char *s) { free(s); }

void lm_chat_template_free(lm_chat_template *t) {
    if (!t)
        return;
    jj_template_free(&t->tpl);
    cJSON_Delete(t->specials);
    free(t);
}

static lm_status create(const char *name, const char *src, cJSON *specials, lm_chat_template **out) {
    lm_chat_template *t = calloc(1, sizeof *t);
    if (!t) {
        cJSON_Delete(specials);
        return lm_err(LM_ERR_NOMEM, "chat template: out of memory");
    }
    t->specials = specials;
    lm_status st = jj_parse(name, src, strlen(src), &t->tpl);
    if (st != LM_OK) {
        lm_chat_template_free(t);
        return st;
    }
    *out = t;
    return LM_OK;
}

lm_status lm_chat_template_from_string(const char *src, const char *bos, const char *eos, lm_chat_template **out) {
    if (!out)
        return lm_err(LM_ERR_INVALID_ARG, "chat template: out is NULL");
    *out = NULL;
    if (!src)
        return lm_err(LM_ERR_INVALID_ARG, "chat template: source is NULL");
    cJSON *sp = cJSON_CreateObject();
    if (!sp || (bos && !cJSON_AddStringToObject(sp, "bos_token", bos)) ||
        (eos && !cJSON_AddStringToObject(sp, "eos_token", eos))) {
        cJSON_Delete(sp);
        return lm_err(LM_ERR_NOMEM, "chat template: out of memory");
    }
    return create("<template>", src, sp, out);
}

/* special tokens of tokenizer_config.json: a string or an AddedToken {"content": ...} */
static cJSON *read_specials(const cJSON *cfg) {
    cJSON *sp = cJSON_CreateObject();
    for (size_t i = 0; sp && i < sizeof SPECIAL_KEYS / sizeof SPECIAL_KEYS[0]; i++) {
        const cJSON *v = lm_json_get(cfg, SPECIAL_KEYS[i]);
        if (v && cJSON_IsObject(v))
            v = lm_json_get(v, "content");
        if (v && cJSON_IsString(v) && !cJSON_AddStringToObject(sp, SPECIAL_KEYS[i], v->valuestring)) {
            cJSON_Delete(sp);
            return NULL;
        }
    }
    return sp;
}

static lm_status load_file_template(const char *path, const char *name, cJSON *sp, lm_chat_template **out) {
    char *src;
    lm_status st = lm_read_file(path, &src, NULL);
    if (st != LM_OK) {
        cJSON_Delete(sp);
        return st;
    }
    st = create(name, src, sp, out);
    free(src);
    return st;
}

/* the template named `name` ("default" when NULL) from tokenizer_config.json's chat_template */
static lm_status pick_config_template(const cJSON *ct, const char *path, const char *name, const char **src) {
    *src = NULL;
    if (!ct)
        return lm_err(LM_ERR_MISSING, "%s: no chat_template", path);
    if (cJSON_IsString(ct)) {
        if (name && strcmp(name, "default") != 0)
            return lm_err(LM_ERR_INVALID_ARG, "%s: no chat template named '%s' (only a default one)", path, name);
        *src = ct->valuestring;
        return LM_OK;
    }
    if (!cJSON_IsArray(ct))
        return lm_err(LM_ERR_FORMAT, "%s: chat_template must be a string or a list of {name, template}", path);
    const char *want = name ? name : "default";
    char avail[256] = "";
    for (const cJSON *e = ct->child; e; e = e->next) {
        const cJSON *n = lm_json_get(e, "name"), *t = lm_json_get(e, "template");
        if (!n || !t || !cJSON_IsString(n) || !cJSON_IsString(t))
            return lm_err(LM_ERR_FORMAT, "%s: chat_template entries need string 'name' and 'template'", path);
        if (strcmp(n->valuestring, want) == 0) {
            *src = t->valuestring;
            return LM_OK;
        }
        size_t l = strlen(avail);
        snprintf(avail + l, sizeof avail - l, "%s%s", l ? ", " : "", n->valuestring);
    }
    return lm_err(name ? LM_ERR_INVALID_ARG : LM_ERR_MISSING, "%s: no chat template named '%s' (available: %s)", path,
                  want, avail);
}

lm_status lm_chat_template_load(const char *dir, const char *name, lm_chat_template **out) {
    char cfg_path[4096], jinja_path[4096], named_path[4096], label[4200];
    if (!out)
        return lm_err(LM_ERR_INVALID_ARG, "chat template: out is NULL");
    *out = NULL;
    if (!dir)
        return lm_err(LM_ERR_INVALID_ARG, "chat template: directory is NULL");
    LM_TRY(lm_path_join(cfg_path, sizeof cfg_path, dir, "tokenizer_config.json"));
    LM_TRY(lm_path_join(jinja_path, sizeof jinja_path, dir, "chat_template.jinja"));
    cJSON *cfg = NULL;
    if (lm_file_exists(cfg_path))
        LM_TRY(lm_json_load_file(cfg_path, &cfg));
    cJSON *sp = read_specials(cfg);
    if (!sp) {
        cJSON_Delete(cfg);
        return lm_err(LM_ERR_NOMEM, "chat template: out of memory");
    }
    lm_status st;
    if ((!name || !strcmp(name, "default")) && lm_file_exists(jinja_path)) {
        st = load_file_template(jinja_path, jinja_path, sp, out);
    } else {
        if (name && snprintf(named_path, sizeof named_path, "%s/additional_chat_templates/%s.jinja", dir, name) <
                        (int)sizeof named_path && !strchr(name, '/') && lm_file_exists(named_path)) {
            cJSON_Delete(cfg);
            return load_file_template(named_path, named_path, sp, out);
        }
        const char *src = NULL;
        if (!cfg)
            st = lm_err(LM_ERR_MISSING, "%s: no chat template (neither chat_template.jinja nor tokenizer_config.json)", dir);
        else
            st = pick_config_template(lm_json_get(cfg, "chat_template"), cfg_path, name, &src);
        if (st == LM_OK) {
            snprintf(label, sizeof label, "%s:chat_template", cfg_path);
            st = create(label, src, sp, out);
        } else {
            cJSON_Delete(sp);
        }
    }
    cJSON_Delete(cfg);
    return st;
}

int lm_chat_template_exists(const char *dir) {
    lm_chat_template *t = NULL;
    lm_status st = lm_chat_template_load(dir, NULL, &t);
    lm_chat_template_free(t);
    if (st != LM_OK)
        lm_err_clear();
    return st == LM_OK;
}

/* LMCORE_STRFTIME_NOW=<unix seconds> makes strftime_now deterministic (UTC) */
static int64_t render_time(void) {
    const char *e = getenv("LMCORE_STRFTIME_NOW");
    if (!e || !*e)
        return -1;
    char *end;
    long long v = strtoll(e, &end, 10);
    return *end || v < 0 ? -1 : (int64_t)v;
}

lm_status lm_chat_template_render(const lm_chat_template *t, const char *messages_json, int add_generation_prompt,
                                  const char *extra_json, char **out) {
    if (!out)
        return lm_err(LM_ERR_INVALID_ARG, "chat template: out is NULL");
    *out = NULL;
    if (!t || !messages_json)
        return lm_err(LM_ERR_INVALID_ARG, "chat template: template and messages are required");
    cJSON *msgs = NULL, *extra = NULL, *ctx = NULL;
    lm_status st = lm_json_parse(messages_json, strlen(messages_json), "messages", &msgs);
    if (st == LM_OK && !cJSON_IsArray(msgs))
        st = lm_err(LM_ERR_INVALID_ARG, "messages: expected a JSON array of messages");
    if (st == LM_OK && extra_json) {
        st = lm_json_parse(extra_json, strlen(extra_json), "chat template kwargs", &extra);
        if (st == LM_OK && !cJSON_IsObject(extra))
            st = lm_err(LM_ERR_INVALID_ARG, "chat template kwargs: expected a JSON object");
    }
    if (st == LM_OK && !(ctx = cJSON_Duplicate(t->specials, 1)))
        st = lm_err(LM_ERR_NOMEM, "chat template: out of memory");
    if (st == LM_OK) {
        cJSON_AddItemToObject(ctx, "messages", msgs);
        msgs = NULL;
        cJSON_AddNullToObject(ctx, "tools");
        cJSON_AddNullToObject(ctx, "documents");
        cJSON_AddBoolToObject(ctx, "add_generation_prompt", add_generation_prompt);
        for (cJSON *e = extra ? extra->child : NULL; e; e = e->next) {
            cJSON *dup = cJSON_Duplicate(e, 1);
            if (!dup || !cJSON_ReplaceItemInObjectCaseSensitive(ctx, e->string, dup)) {
                if (dup && !cJSON_AddItemToObject(ctx, e->string, dup))
                    cJSON_Delete(dup);
            }
        }
        st = jj_render_template(&t->tpl, ctx, NULL, render_time(), out, NULL);
    }
    cJSON_Delete(msgs);
    cJSON_Delete(extra);
    cJSON_Delete(ctx);
    return st;
}
