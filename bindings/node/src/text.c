/* lmcore Node.js addon: tokenize, detokenize and chat templates, on worker threads. The
 * tokenizer and template are read-only after loading, so these run concurrently with
 * generation (no compute lock). */
#include <stdlib.h>
#include <string.h>

#include "addon.h"

/* The model of argv[0] when it has a tokenizer; NULL with an exception pending otherwise. */
static nm_model *text_model(napi_env env, size_t argc, napi_value *argv, const char *fn) {
    nm_model *m = nm_model_get(env, argc ? argv[0] : NULL, false);
    if (m && !m->llm) {
        nm_throw(env, "ERR_LMCORE_NO_TOKENIZER", "%s: the model was loaded with modelOnly (no tokenizer)", fn);
        return NULL;
    }
    return m;
}

static napi_value int32_array(napi_env env, const int32_t *ids, size_t n) {
    napi_value ab, ta;
    void *p = NULL;
    if (!nm_ok(env, napi_create_arraybuffer(env, n * sizeof(int32_t), &p, &ab)) ||
        !nm_ok(env, napi_create_typedarray(env, napi_int32_array, n, ab, 0, &ta)))
        return NULL;
    if (n)
        memcpy(p, ids, n * sizeof(int32_t));
    return ta;
}

/* --- tokenize ---------------------------------------------------------------------------------- */

typedef struct tok_op {
    nm_op op;
    char *text;
    size_t len;
    int add_special;
    int32_t *ids;
    int32_t n;
} tok_op;

static void tok_exec(nm_op *op) {
    tok_op *t = (tok_op *)op;
    const lm_tokenizer *tok = lm_llm_tokenizer(op->m->llm);
    int32_t cap = t->len < 1024 ? 1024 : (t->len > INT32_MAX / 2 ? INT32_MAX / 2 : (int32_t)t->len + 8);
    for (int attempt = 0; attempt < 2; attempt++) {
        free(t->ids);
        t->ids = malloc((size_t)cap * sizeof *t->ids);
        if (!t->ids) {
            op->st = LM_ERR_NOMEM;
            strcpy(op->err, "tokenize: out of memory");
            return;
        }
        lm_status st = lm_tokenizer_encode(tok, t->text, t->len, t->add_special, t->ids, cap, &t->n);
        if (st != LM_OK) {
            nm_op_fail(op, st);
            return;
        }
        if (t->n >= 0)
            return;
        cap = -t->n;
    }
    op->st = LM_ERR_INTERNAL;
    strcpy(op->err, "tokenize: the token count changed between calls");
}

static napi_value tok_result(napi_env env, nm_op *op) {
    tok_op *t = (tok_op *)op;
    return int32_array(env, t->ids, (size_t)t->n);
}

static void tok_destroy(nm_op *op) {
    tok_op *t = (tok_op *)op;
    free(t->text);
    free(t->ids);
    free(t);
}

/* tokenize(handle, text: string, addSpecial: boolean) -> Promise<Int32Array> */
napi_value nm_tokenize(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3] = {NULL, NULL, NULL};
    bool special = false;
    if (!nm_ok(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL)))
        return NULL;
    nm_model *m = text_model(env, argc, argv, "tokenize");
    if (!m)
        return NULL;
    if (argc < 3 || napi_get_value_bool(env, argv[2], &special) != napi_ok)
        return nm_throw_type(env, "tokenize: addSpecialTokens must be a boolean");
    tok_op *t = calloc(1, sizeof *t);
    if (!t)
        return nm_throw(env, "LM_ERR_NOMEM", "tokenize: out of memory");
    t->op.m = m;
    t->op.exec = tok_exec;
    t->op.result = tok_result;
    t->op.destroy = tok_destroy;
    t->add_special = special;
    t->text = nm_get_string(env, argv[1], "text", &t->len);
    if (!t->text) {
        tok_destroy(&t->op);
        return NULL;
    }
    return nm_op_queue(env, &t->op, argv[0], "lmcore.tokenize");
}

/* --- detokenize -------------------------------------------------------------------------------- */

typedef struct detok_op {
    nm_op op;
    int32_t *ids;
    size_t n;
    int skip_special;
    char *text;
    size_t len;
} detok_op;

static void detok_exec(nm_op *op) {
    detok_op *d = (detok_op *)op;
    const lm_tokenizer *tok = lm_llm_tokenizer(op->m->llm);
    size_t cap = d->n * 8 + 64;
    for (int attempt = 0; attempt < 2; attempt++) {
        free(d->text);
        d->text = malloc(cap);
        if (!d->text) {
            op->st = LM_ERR_NOMEM;
            strcpy(op->err, "detokenize: out of memory");
            return;
        }
        lm_status st = lm_tokenizer_decode(tok, d->ids, d->n, d->skip_special, d->text, cap, &d->len);
        if (st != LM_OK) {
            nm_op_fail(op, st);
            return;
        }
        if (d->len < cap)
            return;
        cap = d->len + 1;
    }
    op->st = LM_ERR_INTERNAL;
    strcpy(op->err, "detokenize: the text length changed between calls");
}

static napi_value detok_result(napi_env env, nm_op *op) {
    detok_op *d = (detok_op *)op;
    napi_value s;
    return nm_ok(env, napi_create_string_utf8(env, d->text, d->len, &s)) ? s : NULL;
}

static void detok_destroy(nm_op *op) {
    detok_op *d = (detok_op *)op;
    free(d->ids);
    free(d->text);
    free(d);
}

/* detokenize(handle, ids: Int32Array, skipSpecial: boolean) -> Promise<string> */
napi_value nm_detokenize(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3] = {NULL, NULL, NULL};
    bool skip = false;
    const int32_t *ids = NULL;
    size_t n = 0;
    if (!nm_ok(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL)))
        return NULL;
    nm_model *m = text_model(env, argc, argv, "detokenize");
    if (!m || !nm_get_int32_array(env, argv[1], "ids", &ids, &n))
        return NULL;
    if (argc < 3 || napi_get_value_bool(env, argv[2], &skip) != napi_ok)
        return nm_throw_type(env, "detokenize: skipSpecialTokens must be a boolean");
    detok_op *d = calloc(1, sizeof *d);
    if (!d || !(d->ids = malloc((n ? n : 1) * sizeof *ids))) {
        free(d);
        return nm_throw(env, "LM_ERR_NOMEM", "detokenize: out of memory");
    }
    if (n)
        memcpy(d->ids, ids, n * sizeof *ids);
    d->n = n;
    d->skip_special = skip;
    d->op.m = m;
    d->op.exec = detok_exec;
    d->op.result = detok_result;
    d->op.destroy = detok_destroy;
    return nm_op_queue(env, &d->op, argv[0], "lmcore.detokenize");
}

/* --- chat template ----------------------------------------------------------------------------- */

typedef struct tmpl_op {
    nm_op op;
    char *messages, *extra;
    int add_generation_prompt;
    char *out;
} tmpl_op;

static void tmpl_exec(nm_op *op) {
    tmpl_op *t = (tmpl_op *)op;
    const lm_chat_template *tmpl = lm_llm_chat_template(op->m->llm);
    lm_status st = lm_chat_template_render(tmpl, t->messages, t->add_generation_prompt, t->extra, &t->out);
    if (st != LM_OK)
        nm_op_fail(op, st);
}

static napi_value tmpl_result(napi_env env, nm_op *op) {
    tmpl_op *t = (tmpl_op *)op;
    napi_value s;
    return nm_ok(env, napi_create_string_utf8(env, t->out, NAPI_AUTO_LENGTH, &s)) ? s : NULL;
}

static void tmpl_destroy(nm_op *op) {
    tmpl_op *t = (tmpl_op *)op;
    free(t->messages);
    free(t->extra);
    lm_free_string(t->out);
    free(t);
}

/* applyChatTemplate(handle, messagesJson: string, addGenerationPrompt: boolean,
 *                   extraJson: string | null) -> Promise<string> */
napi_value nm_apply_chat_template(napi_env env, napi_callback_info info) {
    size_t argc = 4;
    napi_value argv[4] = {NULL, NULL, NULL, NULL};
    bool agp = true;
    if (!nm_ok(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL)))
        return NULL;
    nm_model *m = text_model(env, argc, argv, "applyChatTemplate");
    if (!m)
        return NULL;
    if (!lm_llm_chat_template(m->llm))
        return nm_throw(env, "LM_ERR_MISSING", "applyChatTemplate: the model has no chat template");
    if (argc < 4 || napi_get_value_bool(env, argv[2], &agp) != napi_ok)
        return nm_throw_type(env, "applyChatTemplate: addGenerationPrompt must be a boolean");
    tmpl_op *t = calloc(1, sizeof *t);
    if (!t)
        return nm_throw(env, "LM_ERR_NOMEM", "applyChatTemplate: out of memory");
    t->op.m = m;
    t->op.exec = tmpl_exec;
    t->op.result = tmpl_result;
    t->op.destroy = tmpl_destroy;
    t->add_generation_prompt = agp;
    napi_valuetype et;
    t->messages = nm_get_string(env, argv[1], "messages", NULL);
    if (!t->messages || !nm_ok(env, napi_typeof(env, argv[3], &et))) {
        tmpl_destroy(&t->op);
        return NULL;
    }
    if (et != napi_null && et != napi_undefined && !(t->extra = nm_get_string(env, argv[3], "chatTemplateKwargs", NULL))) {
        tmpl_destroy(&t->op);
        return NULL;
    }
    return nm_op_queue(env, &t->op, argv[0], "lmcore.applyChatTemplate");
}
