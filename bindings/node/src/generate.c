/* lmcore Node.js addon: generation on a worker thread, streaming through a thread-safe
 * function, cancellable through a cancel token. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "addon.h"

/* --- cancel tokens --------------------------------------------------------------------------- */
/* Shared by the JS object (an external) and the generation using it; freed by whichever lets
 * go last, so cancel() after the generation ended, or a generation outliving the JS object,
 * are both safe. */

typedef struct gen_cancel {
    atomic_int cancelled;
    atomic_int refs;
} gen_cancel;

static const napi_type_tag CANCEL_TAG = {0x6c6d636f72656361ULL, 0x6e63656c746f6b6eULL};

static void cancel_unref(gen_cancel *c) {
    if (c && atomic_fetch_sub(&c->refs, 1) == 1)
        free(c);
}

static void cancel_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    cancel_unref(data);
}

napi_value nm_cancel_token(napi_env env, napi_callback_info info) {
    (void)info;
    gen_cancel *c = calloc(1, sizeof *c);
    napi_value ext;
    if (!c)
        return nm_throw(env, "LM_ERR_NOMEM", "createCancelToken: out of memory");
    atomic_init(&c->refs, 1);
    if (!nm_ok(env, napi_create_external(env, c, cancel_finalize, NULL, &ext))) {
        free(c);
        return NULL;
    }
    if (!nm_ok(env, napi_type_tag_object(env, ext, &CANCEL_TAG)))
        return NULL;
    return ext;
}

static gen_cancel *cancel_get(napi_env env, napi_value v) {
    napi_valuetype t;
    bool tagged = false;
    void *p = NULL;
    if (!nm_ok(env, napi_typeof(env, v, &t)))
        return NULL;
    if (t == napi_external && !nm_ok(env, napi_check_object_type_tag(env, v, &CANCEL_TAG, &tagged)))
        return NULL;
    if (!tagged || !nm_ok(env, napi_get_value_external(env, v, &p))) {
        nm_throw_type(env, "expected a cancel token");
        return NULL;
    }
    return p;
}

/* cancel(token): ask the generation using it to stop at its next token or prefill chunk. */
napi_value nm_cancel(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    if (!nm_ok(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL)))
        return NULL;
    gen_cancel *c = cancel_get(env, argv[0]);
    if (!c)
        return NULL;
    atomic_store(&c->cancelled, 1);
    napi_value u;
    return nm_ok(env, napi_get_undefined(env, &u)) ? u : NULL;
}

/* --- the generation op -------------------------------------------------------------------------- */

typedef struct gen_op {
    nm_op op;
    /* the prompt: raw text, a rendered-by-template conversation, or ids */
    char *raw;
    size_t raw_len;
    char *messages, *extra;
    int32_t *ids;
    int n_ids;
    /* parameters */
    lm_gen_params gp;
    lm_session_params sp;
    lm_logit_bias *bias;
    char **stops;
    int n_stops;
    int stream, progress;
    gen_cancel *cancel;
    napi_threadsafe_function tsfn; /* NULL without stream/progress */
    bool tsfn_released;            /* the worker let go of it */
    bool orphan;                   /* destroyed before the tsfn was finalized: finalizer frees */
    /* results */
    lm_gen_result res;
    char *text;
    size_t len, cap;
    int32_t *toks;
    float *lps;
    int n_toks, cap_toks;
    int oom;
    double ms;
} gen_op;

typedef struct gen_msg {
    int kind; /* 0: token text, 1: progress */
    int32_t token;
    float logprob;
    int done, total;
    size_t len;
    char text[];
} gen_msg;

static int append(gen_op *g, const char *text, size_t len, int32_t token, float lp) {
    if (g->len + len + 1 > g->cap) {
        size_t cap = (g->cap ? g->cap * 2 : 256) + len;
        char *t = realloc(g->text, cap);
        if (!t)
            return 0;
        g->text = t;
        g->cap = cap;
    }
    memcpy(g->text + g->len, text, len);
    g->len += len;
    g->text[g->len] = 0;
    if (token < 0)
        return 1;
    if (g->n_toks == g->cap_toks) {
        int cap = g->cap_toks ? g->cap_toks * 2 : 64;
        int32_t *t = realloc(g->toks, (size_t)cap * sizeof *t);
        if (t)
            g->toks = t;
        float *l = realloc(g->lps, (size_t)cap * sizeof *l);
        if (l)
            g->lps = l;
        if (!t || !l)
            return 0;
        g->cap_toks = cap;
    }
    g->toks[g->n_toks] = token;
    g->lps[g->n_toks++] = lp;
    return 1;
}

/* Send a message to the main thread; 0 when the environment is going away. */
static int post(gen_op *g, gen_msg *msg) {
    if (napi_call_threadsafe_function(g->tsfn, msg, napi_tsfn_blocking) != napi_ok) {
        free(msg);
        return 0;
    }
    return 1;
}

static int on_token(void *user, const char *text, size_t len, int32_t token, float logprob) {
    gen_op *g = user;
    if (!append(g, text, len, token, logprob)) {
        g->oom = 1;
        return 1;
    }
    if (g->stream) {
        gen_msg *msg = malloc(sizeof *msg + len + 1);
        if (!msg) {
            g->oom = 1;
            return 1;
        }
        msg->kind = 0;
        msg->token = token;
        msg->logprob = logprob;
        msg->len = len;
        memcpy(msg->text, text, len);
        msg->text[len] = 0;
        if (!post(g, msg))
            return 1;
    }
    return atomic_load(&g->cancel->cancelled);
}

static int on_progress(void *user, int done, int total) {
    gen_op *g = user;
    if (g->progress) {
        gen_msg *msg = malloc(sizeof *msg + 1);
        if (!msg)
            return 0;
        msg->kind = 1;
        msg->done = done;
        msg->total = total;
        msg->len = 0;
        msg->text[0] = 0;
        if (!post(g, msg))
            return 1;
    }
    return atomic_load(&g->cancel->cancelled);
}

static int same_session_params(const lm_session_params *a, const lm_session_params *b) {
    return a->n_ctx == b->n_ctx && a->max_kv_size == b->max_kv_size && a->kv_bits == b->kv_bits &&
           a->kv_f16 == b->kv_f16 && a->kv_group_size == b->kv_group_size && a->quantized_kv_start == b->quantized_kv_start;
}

static lm_status encode_prompt(gen_op *g, lm_llm *llm) {
    int32_t *ids = NULL;
    int n = 0;
    lm_status st = LM_OK;
    if (g->raw) {
        st = lm_llm_encode_raw(llm, g->raw, g->raw_len, &ids, &n);
    } else if (g->messages) {
        char *text = NULL;
        st = lm_chat_template_render(lm_llm_chat_template(llm), g->messages, 1, g->extra, &text);
        if (st == LM_OK) {
            size_t len = strlen(text);
            const lm_tokenizer *tok = lm_llm_tokenizer(llm);
            int32_t need = 0;
            st = lm_tokenizer_encode(tok, text, len, 0, NULL, 0, &need);
            if (st == LM_OK && need < 0) {
                n = -need;
                ids = malloc((size_t)n * sizeof *ids);
                st = ids ? lm_tokenizer_encode(tok, text, len, 0, ids, n, &need) : LM_ERR_NOMEM;
            }
        }
        lm_free_string(text);
    } else {
        return LM_OK; /* ids given */
    }
    if (st != LM_OK) {
        free(ids);
        return st;
    }
    /* ids from lm_llm_encode_raw belong to the library's allocator: copy them into ours */
    int32_t *own = malloc((size_t)(n ? n : 1) * sizeof *own);
    if (!own) {
        if (g->raw)
            lm_free_tokens(ids);
        else
            free(ids);
        return LM_ERR_NOMEM;
    }
    if (n)
        memcpy(own, ids, (size_t)n * sizeof *own);
    if (g->raw)
        lm_free_tokens(ids);
    else
        free(ids);
    g->ids = own;
    g->n_ids = n;
    return LM_OK;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void gen_exec(nm_op *op) {
    gen_op *g = (gen_op *)op;
    nm_model *m = op->m;
    double t0 = now_ms();
    lm_status st = encode_prompt(g, m->llm);
    if (st == LM_ERR_NOMEM) {
        op->st = st;
        snprintf(op->err, sizeof op->err, "generate: out of memory encoding the prompt");
    } else if (st != LM_OK) {
        nm_op_fail(op, st);
    } else if (atomic_load(&g->cancel->cancelled)) {
        g->res.finish_reason = LM_FINISH_CANCELLED;
        g->res.prompt_tokens = g->n_ids;
    } else {
        if (m->sess && !same_session_params(&m->sess_params, &g->sp)) {
            lm_session_free(m->sess);
            m->sess = NULL;
        }
        if (!m->sess) {
            st = lm_session_new(m->llm, &g->sp, &m->sess);
            if (st == LM_OK)
                m->sess_params = g->sp;
        }
        if (st == LM_OK) {
            g->gp.on_token = on_token;
            g->gp.user = g;
            g->gp.on_progress = on_progress;
            g->gp.progress_user = g;
            g->res.size = sizeof g->res;
            st = lm_session_generate(m->sess, g->ids, g->n_ids, &g->gp, &g->res);
        }
        if (st != LM_OK)
            nm_op_fail(op, st);
        else if (g->oom) {
            op->st = LM_ERR_NOMEM;
            snprintf(op->err, sizeof op->err, "generate: out of memory collecting the output");
        }
    }
    g->ms = now_ms() - t0;
    if (g->tsfn) {
        g->tsfn_released = true;
        napi_release_threadsafe_function(g->tsfn, napi_tsfn_release);
    }
}

static napi_value gen_result(napi_env env, nm_op *op) {
    gen_op *g = (gen_op *)op;
    napi_value o, text, ab, toks, lps;
    void *p = NULL;
    size_t n = (size_t)g->n_toks;
    if (!nm_ok(env, napi_create_object(env, &o)) ||
        !nm_ok(env, napi_create_string_utf8(env, g->text ? g->text : "", g->len, &text)) ||
        !nm_ok(env, napi_create_arraybuffer(env, n * sizeof(int32_t), &p, &ab)) ||
        !nm_ok(env, napi_create_typedarray(env, napi_int32_array, n, ab, 0, &toks)))
        return NULL;
    if (n)
        memcpy(p, g->toks, n * sizeof(int32_t));
    if (g->gp.logprobs) {
        if (!nm_ok(env, napi_create_arraybuffer(env, n * sizeof(float), &p, &ab)) ||
            !nm_ok(env, napi_create_typedarray(env, napi_float32_array, n, ab, 0, &lps)))
            return NULL;
        if (n)
            memcpy(p, g->lps, n * sizeof(float));
    } else if (!nm_ok(env, napi_get_null(env, &lps))) {
        return NULL;
    }
    const lm_gen_result *r = &g->res;
    if (!nm_set_value(env, o, "text", text) || !nm_set_value(env, o, "tokens", toks) ||
        !nm_set_value(env, o, "logprobs", lps) ||
        !nm_set_string(env, o, "finishReason", lm_finish_reason_str(r->finish_reason)) ||
        !nm_set_int(env, o, "promptTokens", r->prompt_tokens ? r->prompt_tokens : g->n_ids) ||
        !nm_set_int(env, o, "promptTokensReused", r->prompt_tokens_reused) ||
        !nm_set_int(env, o, "completionTokens", r->generation_tokens) ||
        !nm_set_double(env, o, "promptTps", r->prompt_tps) || !nm_set_double(env, o, "generationTps", r->generation_tps) ||
        !nm_set_double(env, o, "peakMemoryGb", r->peak_memory_gb) || !nm_set_double(env, o, "totalMs", g->ms))
        return NULL;
    return o;
}

static void gen_free(gen_op *g) {
    free(g->raw);
    free(g->messages);
    free(g->extra);
    free(g->ids);
    free(g->bias);
    for (int i = 0; i < g->n_stops; i++)
        free(g->stops[i]);
    free(g->stops);
    free(g->text);
    free(g->toks);
    free(g->lps);
    cancel_unref(g->cancel);
    free(g);
}

static void gen_destroy(nm_op *op) {
    gen_op *g = (gen_op *)op;
    if (g->tsfn && !g->tsfn_released) {
        /* never queued: the tsfn's finalizer (which holds g) frees it */
        g->orphan = true;
        g->tsfn_released = true;
        napi_release_threadsafe_function(g->tsfn, napi_tsfn_abort);
        return;
    }
    gen_free(g);
}

static void tsfn_finalize(napi_env env, void *data, void *hint) {
    (void)hint;
    gen_op *g = data;
    if (g->orphan) {
        gen_free(g);
        return;
    }
    nm_op_release(env, &g->op);
}

/* Main thread: deliver one message to onEvent(kind, a, b, c). */
static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
    gen_op *g = context;
    gen_msg *msg = data;
    if (!env || !js_cb) {
        free(msg);
        return;
    }
    napi_value argv[4], undef, ret;
    bool ok = nm_ok(env, napi_get_undefined(env, &undef)) && nm_ok(env, napi_create_int32(env, msg->kind, &argv[0]));
    if (ok && msg->kind == 0)
        ok = nm_ok(env, napi_create_string_utf8(env, msg->text, msg->len, &argv[1])) &&
             nm_ok(env, napi_create_int32(env, msg->token, &argv[2])) &&
             nm_ok(env, napi_create_double(env, (double)msg->logprob, &argv[3]));
    else if (ok)
        ok = nm_ok(env, napi_create_int32(env, msg->done, &argv[1])) &&
             nm_ok(env, napi_create_int32(env, msg->total, &argv[2])) && nm_ok(env, napi_get_undefined(env, &argv[3]));
    free(msg);
    if (ok)
        ok = nm_ok(env, napi_call_function(env, undef, js_cb, 4, argv, &ret));
    if (!ok) {
        /* a throwing callback stops the generation instead of surfacing on a random tick */
        napi_value e;
        napi_get_and_clear_last_exception(env, &e);
        atomic_store(&g->cancel->cancelled, 1);
    }
}

/* --- argument parsing ------------------------------------------------------------------------- */

static bool read_stops(napi_env env, napi_value params, gen_op *g) {
    napi_value arr;
    napi_valuetype t;
    bool is_arr = false;
    uint32_t n = 0;
    if (!nm_ok(env, napi_get_named_property(env, params, "stop", &arr)) || !nm_ok(env, napi_typeof(env, arr, &t)))
        return false;
    if (t == napi_undefined || t == napi_null)
        return true;
    if (!nm_ok(env, napi_is_array(env, arr, &is_arr)))
        return false;
    if (!is_arr) {
        nm_throw_type(env, "options.stop must be an array of strings");
        return false;
    }
    if (!nm_ok(env, napi_get_array_length(env, arr, &n)))
        return false;
    if (n > 1024) {
        nm_throw(env, "ERR_OUT_OF_RANGE", "options.stop has %u strings (at most 1024)", n);
        return false;
    }
    g->stops = calloc(n ? n : 1, sizeof *g->stops);
    if (!g->stops) {
        nm_throw(env, "LM_ERR_NOMEM", "options.stop: out of memory");
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        napi_value v;
        char what[48];
        snprintf(what, sizeof what, "options.stop[%u]", i);
        if (!nm_ok(env, napi_get_element(env, arr, i, &v)) || !(g->stops[i] = nm_get_string(env, v, what, NULL)))
            return false;
        g->n_stops = (int)i + 1;
    }
    g->gp.stop_strings = (const char *const *)g->stops;
    g->gp.n_stop_strings = g->n_stops;
    return true;
}

static bool read_bias(napi_env env, napi_value params, gen_op *g) {
    napi_value vi, vv;
    napi_valuetype ti, tv;
    if (!nm_ok(env, napi_get_named_property(env, params, "logitBiasIds", &vi)) ||
        !nm_ok(env, napi_get_named_property(env, params, "logitBiasValues", &vv)) ||
        !nm_ok(env, napi_typeof(env, vi, &ti)) || !nm_ok(env, napi_typeof(env, vv, &tv)))
        return false;
    if (ti == napi_undefined && tv == napi_undefined)
        return true;
    const int32_t *ids = NULL;
    size_t n = 0, nv = 0;
    bool is_ta = false;
    napi_typedarray_type type;
    void *vals = NULL;
    napi_value ab;
    size_t off;
    if (!nm_get_int32_array(env, vi, "options.logitBiasIds", &ids, &n) ||
        !nm_ok(env, napi_is_typedarray(env, vv, &is_ta)))
        return false;
    if (!is_ta || !nm_ok(env, napi_get_typedarray_info(env, vv, &type, &nv, &vals, &ab, &off)) ||
        type != napi_float32_array || nv != n) {
        nm_throw_type(env, "options.logitBiasValues must be a Float32Array as long as logitBiasIds");
        return false;
    }
    g->bias = malloc((n ? n : 1) * sizeof *g->bias);
    if (!g->bias) {
        nm_throw(env, "LM_ERR_NOMEM", "options.logitBias: out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        g->bias[i].token = ids[i];
        g->bias[i].bias = ((const float *)vals)[i];
    }
    g->gp.logit_bias = g->bias;
    g->gp.n_logit_bias = (int)n;
    return true;
}

static bool read_params(napi_env env, napi_value p, gen_op *g) {
    g->gp = lm_gen_default_params();
    g->sp = lm_session_default_params();
    lm_gen_params *gp = &g->gp;
    lm_session_params *sp = &g->sp;
    napi_valuetype t;
    if (!nm_ok(env, napi_typeof(env, p, &t)))
        return false;
    if (t != napi_object) {
        nm_throw_type(env, "options must be an object");
        return false;
    }
    return nm_prop_int(env, p, "maxTokens", &gp->max_tokens) && nm_prop_float(env, p, "temperature", &gp->temp) &&
           nm_prop_float(env, p, "topP", &gp->top_p) && nm_prop_float(env, p, "minP", &gp->min_p) &&
           nm_prop_int(env, p, "minTokensToKeep", &gp->min_tokens_to_keep) &&
           nm_prop_float(env, p, "xtcProbability", &gp->xtc_probability) &&
           nm_prop_float(env, p, "xtcThreshold", &gp->xtc_threshold) && nm_prop_int(env, p, "topK", &gp->top_k) &&
           nm_prop_float(env, p, "repetitionPenalty", &gp->repetition_penalty) &&
           nm_prop_int(env, p, "repetitionContextSize", &gp->repetition_context_size) &&
           nm_prop_float(env, p, "presencePenalty", &gp->presence_penalty) &&
           nm_prop_int(env, p, "presenceContextSize", &gp->presence_context_size) &&
           nm_prop_float(env, p, "frequencyPenalty", &gp->frequency_penalty) &&
           nm_prop_int(env, p, "frequencyContextSize", &gp->frequency_context_size) &&
           nm_prop_int64(env, p, "seed", &gp->seed) && nm_prop_int(env, p, "prefillStepSize", &gp->prefill_step_size) &&
           nm_prop_bool(env, p, "logprobs", &gp->logprobs) && nm_prop_int(env, p, "contextSize", &sp->n_ctx) &&
           nm_prop_int(env, p, "maxKvSize", &sp->max_kv_size) && nm_prop_int(env, p, "kvBits", &sp->kv_bits) &&
           nm_prop_bool(env, p, "kvF16", &sp->kv_f16) &&
           nm_prop_int(env, p, "kvGroupSize", &sp->kv_group_size) &&
           nm_prop_int(env, p, "quantizedKvStart", &sp->quantized_kv_start) &&
           nm_prop_bool(env, p, "stream", &g->stream) && nm_prop_bool(env, p, "progress", &g->progress) &&
           read_stops(env, p, g) && read_bias(env, p, g);
}

/* The prompt: a string (raw), an Int32Array of ids, or {messages: json, extra: json|null}. */
static bool read_prompt(napi_env env, napi_value v, gen_op *g) {
    napi_valuetype t;
    bool is_ta = false;
    if (!nm_ok(env, napi_typeof(env, v, &t)) || !nm_ok(env, napi_is_typedarray(env, v, &is_ta)))
        return false;
    if (t == napi_string)
        return (g->raw = nm_get_string(env, v, "prompt", &g->raw_len)) != NULL;
    if (is_ta) {
        const int32_t *ids;
        size_t n;
        if (!nm_get_int32_array(env, v, "prompt", &ids, &n))
            return false;
        if (n > INT32_MAX / 4 || !(g->ids = malloc((n ? n : 1) * sizeof *ids))) {
            nm_throw(env, "LM_ERR_NOMEM", "prompt: out of memory");
            return false;
        }
        if (n)
            memcpy(g->ids, ids, n * sizeof *ids);
        g->n_ids = (int)n;
        return true;
    }
    if (t != napi_object) {
        nm_throw_type(env, "prompt must be a string, an Int32Array or {messages}");
        return false;
    }
    napi_value mv;
    if (!nm_ok(env, napi_get_named_property(env, v, "messages", &mv)) ||
        !(g->messages = nm_get_string(env, mv, "prompt.messages", NULL)))
        return false;
    return nm_prop_string(env, v, "extra", &g->extra);
}

/* generate(handle, prompt, params, cancelToken, onEvent?) -> Promise<result>
 * onEvent(0, text, token, logprob) per generated piece (params.stream),
 * onEvent(1, done, total) for prompt progress (params.progress). */
napi_value nm_generate(napi_env env, napi_callback_info info) {
    size_t argc = 5;
    napi_value argv[5];
    if (!nm_ok(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL)))
        return NULL;
    nm_model *m = nm_model_get(env, argv[0], false);
    if (!m)
        return NULL;
    if (!m->llm)
        return nm_throw(env, "ERR_LMCORE_NO_TOKENIZER",
                        "generate: the model was loaded with modelOnly (no tokenizer); use evaluate()");
    gen_op *g = calloc(1, sizeof *g);
    if (!g)
        return nm_throw(env, "LM_ERR_NOMEM", "generate: out of memory");
    g->op.m = m;
    g->op.compute = true;
    g->op.exec = gen_exec;
    g->op.result = gen_result;
    g->op.destroy = gen_destroy;
    gen_cancel *c = cancel_get(env, argv[3]);
    if (c) {
        atomic_fetch_add(&c->refs, 1);
        g->cancel = c;
    }
    if (!c || !read_prompt(env, argv[1], g) || !read_params(env, argv[2], g)) {
        gen_free(g);
        return NULL;
    }
    if (g->messages && !lm_llm_chat_template(m->llm)) {
        gen_free(g);
        return nm_throw(env, "LM_ERR_MISSING", "generate: the model has no chat template");
    }
    if (g->stream || g->progress) {
        napi_valuetype ft = napi_undefined;
        napi_value name;
        if (!nm_ok(env, napi_typeof(env, argv[4], &ft)) || ft != napi_function) {
            gen_free(g);
            return ft == napi_function ? NULL : nm_throw_type(env, "generate: onEvent must be a function");
        }
        if (!nm_ok(env, napi_create_string_utf8(env, "lmcore.generate.events", NAPI_AUTO_LENGTH, &name)) ||
            !nm_ok(env, napi_create_threadsafe_function(env, argv[4], NULL, name, 0, 1, g, tsfn_finalize, g, call_js,
                                                        &g->tsfn))) {
            gen_free(g);
            return NULL;
        }
        g->op.holds = 1;
    }
    return nm_op_queue(env, &g->op, argv[0], "lmcore.generate");
}
