/* lm_llm: everything generation needs from one model directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "generate/llm.h"
#include "io/json.h"
#include "models/model.h"

lm_llm_params lm_llm_default_params(void) {
    lm_llm_params p = {0};
    p.size = sizeof p;
    return p;
}

static void add_eos(lm_llm *llm, long long id) {
    if (id < 0 || id >= llm->vocab)
        return;
    for (int i = 0; i < llm->n_eos; i++)
        if (llm->eos[i] == id)
            return;
    if (llm->n_eos < LM_LLM_MAX_EOS)
        llm->eos[llm->n_eos++] = (int32_t)id;
}

/* generation_config.json's eos_token_id: an int or a list of ints. */
static lm_status load_generation_config(lm_llm *llm, const char *dir) {
    char path[4200];
    LM_TRY(lm_path_join(path, sizeof path, dir, "generation_config.json"));
    if (!lm_file_exists(path))
        return LM_OK;
    cJSON *root;
    LM_TRY(lm_json_load_file(path, &root));
    lm_status st = LM_OK;
    const cJSON *e = lm_json_get(root, "eos_token_id");
    if (e && cJSON_IsNumber(e)) {
        add_eos(llm, (long long)e->valuedouble);
    } else if (e && cJSON_IsArray(e)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, e) {
            if (!cJSON_IsNumber(it)) {
                st = lm_err(LM_ERR_FORMAT, "%s: eos_token_id must be an integer or a list of integers", path);
                break;
            }
            add_eos(llm, (long long)it->valuedouble);
        }
    } else if (e) {
        st = lm_err(LM_ERR_FORMAT, "%s: eos_token_id must be an integer or a list of integers", path);
    }
    cJSON_Delete(root);
    return st;
}

lm_status lm_llm_encode_alloc(const lm_llm *llm, const char *text, size_t len, int add_special, int32_t **ids,
                              int *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    if (len > (size_t)INT32_MAX / 2)
        return lm_err(LM_ERR_INVALID_ARG, "prompt of %zu bytes is too long", len);
    int32_t cap = (int32_t)len + 8, n = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        int32_t *buf = malloc((size_t)cap * sizeof *buf);
        if (!buf)
            return lm_err(LM_ERR_NOMEM, "out of memory encoding a prompt of %zu bytes", len);
        lm_status st = lm_tokenizer_encode(llm->tok, text, len, add_special, buf, cap, &n);
        if (st != LM_OK) {
            free(buf);
            return st;
        }
        if (n >= 0) {
            *ids = buf;
            *n_ids = n;
            return LM_OK;
        }
        free(buf);
        cap = -n;
    }
    return lm_err(LM_ERR_INTERNAL, "tokenizer: inconsistent token count");
}

lm_status lm_llm_load(const char *dir, const lm_llm_params *params, lm_llm **out) {
    if (!out)
        return lm_err(LM_ERR_INVALID_ARG, "lm_llm_load: out is NULL");
    *out = NULL;
    if (!dir)
        return lm_err(LM_ERR_INVALID_ARG, "lm_llm_load: no model directory");
    lm_llm_params p = lm_llm_default_params();
    if (params)
        memcpy(&p, params, params->size < sizeof p ? params->size : sizeof p);
    lm_llm *llm = calloc(1, sizeof *llm);
    if (!llm)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    lm_model_params mp = lm_model_default_params();
    mp.n_threads = p.n_threads;
    mp.device = p.device;
    lm_status st = lm_model_load(dir, &mp, &llm->model);
    if (st == LM_OK)
        st = lm_tokenizer_load(dir, &llm->tok);
    if (st == LM_OK) {
        st = lm_chat_template_load(dir, p.chat_template, &llm->tmpl);
        if (st == LM_ERR_MISSING && !p.chat_template) {
            llm->tmpl = NULL; /* a base model: raw prompts */
            st = LM_OK;
            lm_err_clear();
        }
    }
    if (st == LM_OK) {
        const lm_config *c = &llm->model->cfg;
        llm->vocab = c->vocab;
        llm->ctx_len = c->max_pos;
        for (int i = 0; i < c->n_eos; i++)
            add_eos(llm, c->eos_ids[i]);
        st = load_generation_config(llm, dir);
    }
    if (st == LM_OK) {
        add_eos(llm, lm_tokenizer_eos(llm->tok));
        int32_t nl[8], n_nl = 0;
        if (lm_tokenizer_encode(llm->tok, "\n", 1, 0, nl, 8, &n_nl) != LM_OK || n_nl < 0)
            n_nl = 0;
        for (int i = 0; i < n_nl; i++)
            llm->xtc_special[llm->n_xtc_special++] = nl[i];
        for (int i = 0; i < llm->n_eos; i++)
            llm->xtc_special[llm->n_xtc_special++] = llm->eos[i];
        lm_err_clear();
    }
    if (st != LM_OK) {
        lm_llm_free(llm);
        return st;
    }
    *out = llm;
    return LM_OK;
}

void lm_llm_free(lm_llm *llm) {
    if (!llm)
        return;
    lm_chat_template_free(llm->tmpl);
    lm_tokenizer_free(llm->tok);
    lm_model_free(llm->model);
    free(llm);
}

lm_model *lm_llm_model(const lm_llm *llm) { return llm ? llm->model : NULL; }
const lm_tokenizer *lm_llm_tokenizer(const lm_llm *llm) { return llm ? llm->tok : NULL; }
const lm_chat_template *lm_llm_chat_template(const lm_llm *llm) { return llm ? llm->tmpl : NULL; }
int lm_llm_context_length(const lm_llm *llm) { return llm ? llm->ctx_len : 0; }

int lm_llm_eos_ids(const lm_llm *llm, const int32_t **ids) {
    if (ids)
        *ids = llm ? llm->eos : NULL;
    return llm ? llm->n_eos : 0;
}


/* --- prompts ------------------------------------------------------------------------------------ */

lm_status lm_llm_encode_raw(const lm_llm *llm, const char *text, size_t len, int32_t **ids, int *n_ids) {
    if (!llm || !text || !ids || !n_ids)
        return lm_err(LM_ERR_INVALID_ARG, "lm_llm_encode_raw: NULL argument");
    int add_special = 1;
    size_t blen = 0;
    int32_t bos = lm_tokenizer_bos(llm->tok);
    const char *b = bos >= 0 ? lm_tokenizer_id_to_token(llm->tok, bos, &blen) : NULL;
    if (b && blen && len >= blen && memcmp(text, b, blen) == 0)
        add_special = 0;
    return lm_llm_encode_alloc(llm, text, len, add_special, ids, n_ids);
}

static lm_status render_chat(const lm_llm *llm, const lm_chat_message *msgs, int n_msgs, const char *extra_json,
                             char **out) {
    cJSON *arr = cJSON_CreateArray();
    if (!arr)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n_msgs; i++) {
        cJSON *m = cJSON_CreateObject();
        if (!m || !cJSON_AddStringToObject(m, "role", msgs[i].role ? msgs[i].role : "user") ||
            !cJSON_AddStringToObject(m, "content", msgs[i].content ? msgs[i].content : "")) {
            cJSON_Delete(m);
            cJSON_Delete(arr);
            return lm_err(LM_ERR_NOMEM, "out of memory");
        }
        cJSON_AddItemToArray(arr, m);
    }
    char *js = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    if (!js)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    lm_status st = lm_chat_template_render(llm->tmpl, js, 1, extra_json, out);
    cJSON_free(js);
    return st;
}

lm_status lm_llm_encode_chat(const lm_llm *llm, const lm_chat_message *msgs, int n_msgs, int use_template,
                             const char *extra_json, int32_t **ids, int *n_ids) {
    if (!llm || (!msgs && n_msgs) || n_msgs < 0 || !ids || !n_ids)
        return lm_err(LM_ERR_INVALID_ARG, "lm_llm_encode_chat: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    if (use_template && llm->tmpl) {
        char *text = NULL;
        LM_TRY(render_chat(llm, msgs, n_msgs, extra_json, &text));
        lm_status st = lm_llm_encode_alloc(llm, text, strlen(text), 0, ids, n_ids);
        lm_free_string(text);
        return st;
    }
    size_t total = 1;
    for (int i = 0; i < n_msgs; i++)
        total += msgs[i].content ? strlen(msgs[i].content) : 0;
    char *text = malloc(total);
    if (!text)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    size_t n = 0;
    for (int i = 0; i < n_msgs; i++) {
        size_t l = msgs[i].content ? strlen(msgs[i].content) : 0;
        if (l)
            memcpy(text + n, msgs[i].content, l);
        n += l;
    }
    text[n] = 0;
    lm_status st = lm_llm_encode_raw(llm, text, n, ids, n_ids);
    free(text);
    return st;
}
