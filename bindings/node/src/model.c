/* lmcore Node.js addon: model handles (load, info, dispose, finalizer) and the async-op runner. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"

/* Marks our handle objects, so a foreign object is never unwrapped as an nm_model. */
static const napi_type_tag MODEL_TAG = {0x6c6d636f72656d6fULL, 0x64656c68616e646cULL};

/* --- async operations ------------------------------------------------------------------------ */

void nm_op_fail(nm_op *op, lm_status st) {
    op->st = st;
    snprintf(op->err, sizeof op->err, "%s", lm_last_error());
}

static void op_execute(napi_env env, void *data) {
    (void)env;
    nm_op *op = data;
    if (op->compute)
        pthread_mutex_lock(&op->m->lock);
    op->exec(op);
    if (op->compute)
        pthread_mutex_unlock(&op->m->lock);
}

static void free_engine(nm_model *m) {
    lm_session_free(m->sess);
    m->sess = NULL;
    if (m->llm)
        lm_llm_free(m->llm);
    else
        lm_model_free(m->model);
    m->llm = NULL;
    m->model = NULL;
}

static void start_free(napi_env env, nm_model *m, napi_value handle, napi_deferred deferred);

/* Resolve or reject the op's promise, let go of the handle, free the op. */
static void op_settle(napi_env env, nm_op *op) {
    napi_value val = NULL, err = NULL;
    if (op->st == LM_OK) {
        val = op->result(env, op);
        if (!val)
            napi_get_and_clear_last_exception(env, &err);
    } else {
        err = nm_status_error(env, op->st, op->err);
    }
    if (op->deferred) {
        if (val)
            napi_resolve_deferred(env, op->deferred, val);
        else {
            if (!err)
                napi_get_undefined(env, &err);
            napi_reject_deferred(env, op->deferred, err);
        }
    }
    nm_model *m = op->m;
    if (m && op->handle_ref) {
        m->inflight--;
        napi_value handle = NULL;
        napi_get_reference_value(env, op->handle_ref, &handle);
        /* a dispose() that came while operations were in flight frees now */
        if (m->inflight == 0 && m->disposed && !m->freed && m->dispose_deferred && handle) {
            napi_deferred d = m->dispose_deferred;
            m->dispose_deferred = NULL;
            start_free(env, m, handle, d);
        }
        napi_delete_reference(env, op->handle_ref);
    }
    napi_delete_async_work(env, op->work);
    op->destroy(op);
}

static void op_complete(napi_env env, napi_status status, void *data) {
    nm_op *op = data;
    if (status == napi_cancelled) {
        op->st = LM_ERR_CANCELLED;
        snprintf(op->err, sizeof op->err, "the operation was cancelled before it started");
    }
    op->done = true;
    if (op->holds == 0)
        op_settle(env, op);
}

void nm_op_release(napi_env env, nm_op *op) {
    op->holds--;
    if (op->holds == 0 && op->done)
        op_settle(env, op);
}

napi_value nm_op_queue(napi_env env, nm_op *op, napi_value handle, const char *name) {
    napi_value promise, res_name;
    if (!nm_ok(env, napi_create_promise(env, &op->deferred, &promise))) {
        op->destroy(op);
        return NULL;
    }
    if (!nm_ok(env, napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &res_name)) ||
        !nm_ok(env, napi_create_async_work(env, NULL, res_name, op_execute, op_complete, op, &op->work))) {
        napi_value e = NULL;
        napi_get_and_clear_last_exception(env, &e);
        napi_reject_deferred(env, op->deferred, e);
        op->destroy(op);
        return promise;
    }
    if (handle && !nm_ok(env, napi_create_reference(env, handle, 1, &op->handle_ref))) {
        napi_value e = NULL;
        napi_get_and_clear_last_exception(env, &e);
        napi_reject_deferred(env, op->deferred, e);
        napi_delete_async_work(env, op->work);
        op->destroy(op);
        return promise;
    }
    if (op->handle_ref)
        op->m->inflight++;
    if (!nm_ok(env, napi_queue_async_work(env, op->work))) {
        napi_value e = NULL;
        napi_get_and_clear_last_exception(env, &e);
        napi_reject_deferred(env, op->deferred, e);
        if (op->handle_ref) {
            op->m->inflight--;
            napi_delete_reference(env, op->handle_ref);
        }
        napi_delete_async_work(env, op->work);
        op->destroy(op);
    }
    return promise;
}

/* --- handles ------------------------------------------------------------------------------------- */

static void model_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    nm_model *m = data;
    /* Operations hold a reference to the handle, so this runs with inflight > 0 only while the
     * environment shuts down with workers still running: leave everything to them (leak). */
    if (m->inflight > 0)
        return;
    if (!m->freed)
        free_engine(m);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

nm_model *nm_model_get(napi_env env, napi_value handle, bool allow_disposed) {
    napi_valuetype t;
    bool tagged = false;
    void *p = NULL;
    if (!handle || !nm_ok(env, napi_typeof(env, handle, &t)))
        return NULL;
    if (t == napi_object && !nm_ok(env, napi_check_object_type_tag(env, handle, &MODEL_TAG, &tagged)))
        return NULL;
    if (!tagged) {
        nm_throw_type(env, "expected a model handle");
        return NULL;
    }
    if (!nm_ok(env, napi_unwrap(env, handle, &p)))
        return NULL;
    nm_model *m = p;
    if (m->disposed && !allow_disposed) {
        nm_throw(env, "ERR_LMCORE_DISPOSED", "the model was disposed");
        return NULL;
    }
    return m;
}

/* --- load ---------------------------------------------------------------------------------------- */

typedef struct load_op {
    nm_op op;
    char *dir;
    char *chat_template;
    int n_threads, model_only, device;
    nm_model *m; /* filled on the worker; wrapped in result() */
} load_op;

static void load_exec(nm_op *op) {
    load_op *l = (load_op *)op;
    nm_model *m = l->m;
    lm_status st;
    if (l->model_only) {
        lm_model_params mp = lm_model_default_params();
        mp.n_threads = l->n_threads;
        mp.device = (lm_device)l->device;
        st = lm_model_load(l->dir, &mp, &m->model);
    } else {
        lm_llm_params lp = lm_llm_default_params();
        lp.n_threads = l->n_threads;
        lp.device = (lm_device)l->device;
        lp.chat_template = l->chat_template;
        st = lm_llm_load(l->dir, &lp, &m->llm);
        if (st == LM_OK)
            m->model = lm_llm_model(m->llm);
    }
    if (st != LM_OK)
        nm_op_fail(op, st);
}

static napi_value load_result(napi_env env, nm_op *op) {
    load_op *l = (load_op *)op;
    napi_value obj;
    if (!nm_ok(env, napi_create_object(env, &obj)) ||
        !nm_ok(env, napi_type_tag_object(env, obj, &MODEL_TAG)) ||
        !nm_ok(env, napi_wrap(env, obj, l->m, model_finalize, NULL, NULL)))
        return NULL; /* destroy() frees l->m */
    l->m = NULL;     /* owned by the handle now */
    return obj;
}

static void load_destroy(nm_op *op) {
    load_op *l = (load_op *)op;
    if (l->m) {
        free_engine(l->m);
        pthread_mutex_destroy(&l->m->lock);
        free(l->m);
    }
    free(l->dir);
    free(l->chat_template);
    free(l);
}

/* load(dir: string, opts: {threads?, chatTemplate?, modelOnly?, device?}) -> Promise<handle> */
napi_value nm_load(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2] = {NULL, NULL};
    if (!nm_ok(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL)))
        return NULL;
    if (argc < 1)
        return nm_throw_type(env, "load: dir must be a string");
    load_op *l = calloc(1, sizeof *l);
    nm_model *m = calloc(1, sizeof *m);
    if (!l || !m || pthread_mutex_init(&m->lock, NULL) != 0) {
        free(l);
        free(m);
        return nm_throw(env, "LM_ERR_NOMEM", "load: out of memory");
    }
    l->m = m;
    l->op.exec = load_exec;
    l->op.result = load_result;
    l->op.destroy = load_destroy;
    napi_value opts = argc > 1 ? argv[1] : NULL;
    l->dir = nm_get_string(env, argv[0], "dir", NULL);
    if (!l->dir || !nm_prop_int(env, opts, "threads", &l->n_threads) ||
        !nm_prop_string(env, opts, "chatTemplate", &l->chat_template) ||
        !nm_prop_bool(env, opts, "modelOnly", &l->model_only) || !nm_prop_int(env, opts, "device", &l->device)) {
        load_destroy(&l->op);
        return NULL;
    }
    return nm_op_queue(env, &l->op, NULL, "lmcore.load");
}

/* --- dispose ------------------------------------------------------------------------------------- */

typedef struct free_op {
    nm_op op;
} free_op;

static void free_exec(nm_op *op) { free_engine(op->m); }

static napi_value free_result(napi_env env, nm_op *op) {
    napi_value t;
    op->m->freed = 1;
    return nm_ok(env, napi_get_boolean(env, true, &t)) ? t : NULL;
}

static void free_destroy(nm_op *op) { free(op); }

/* Queue the freeing of m's engine objects; `deferred` settles when they are gone. */
static void start_free(napi_env env, nm_model *m, napi_value handle, napi_deferred deferred) {
    free_op *f = calloc(1, sizeof *f);
    napi_value name, err;
    if (!f || !nm_ok(env, napi_create_string_utf8(env, "lmcore.dispose", NAPI_AUTO_LENGTH, &name)) ||
        !nm_ok(env, napi_create_async_work(env, NULL, name, op_execute, op_complete, f, &f->op.work)) ||
        !nm_ok(env, napi_create_reference(env, handle, 1, &f->op.handle_ref))) {
        /* cannot defer: free here on the main thread (cheap: unmapping and freeing) */
        napi_get_and_clear_last_exception(env, &err);
        if (f && f->op.work)
            napi_delete_async_work(env, f->op.work);
        free(f);
        free_engine(m);
        m->freed = 1;
        napi_value t;
        if (napi_get_boolean(env, true, &t) == napi_ok)
            napi_resolve_deferred(env, deferred, t);
        return;
    }
    f->op.m = m;
    f->op.compute = true;
    f->op.deferred = deferred;
    f->op.exec = free_exec;
    f->op.result = free_result;
    f->op.destroy = free_destroy;
    m->inflight++;
    if (!nm_ok(env, napi_queue_async_work(env, f->op.work))) {
        napi_get_and_clear_last_exception(env, &err);
        m->inflight--;
        napi_delete_reference(env, f->op.handle_ref);
        napi_delete_async_work(env, f->op.work);
        free(f);
        free_engine(m);
        m->freed = 1;
        napi_value t;
        if (napi_get_boolean(env, true, &t) == napi_ok)
            napi_resolve_deferred(env, deferred, t);
    }
}

/* dispose(handle) -> Promise<boolean>: true when this call disposed it, false when it already was. */
napi_value nm_dispose(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1] = {NULL}, promise;
    napi_deferred d;
    if (!nm_ok(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL)))
        return NULL;
    nm_model *m = nm_model_get(env, argc ? argv[0] : NULL, true);
    if (!m || !nm_ok(env, napi_create_promise(env, &d, &promise)))
        return NULL;
    if (m->disposed) {
        napi_value f;
        if (nm_ok(env, napi_get_boolean(env, false, &f)))
            napi_resolve_deferred(env, d, f);
        return promise;
    }
    m->disposed = 1;
    if (m->inflight == 0)
        start_free(env, m, argv[0], d);
    else
        m->dispose_deferred = d;
    return promise;
}

/* --- info ---------------------------------------------------------------------------------------- */

/* info(handle) -> {modelType, family, parameters, ..., description} (reads loaded fields only). */
napi_value nm_info(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1] = {NULL}, o, eos;
    if (!nm_ok(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL)))
        return NULL;
    nm_model *m = nm_model_get(env, argc ? argv[0] : NULL, false);
    if (!m)
        return NULL;
    lm_model_info mi;
    lm_model_get_info(m->model, &mi);
    char desc[4096];
    lm_model_describe(m->model, desc, sizeof desc);
    const lm_tokenizer *tok = m->llm ? lm_llm_tokenizer(m->llm) : NULL;
    const int32_t *eos_ids = NULL;
    int n_eos = m->llm ? lm_llm_eos_ids(m->llm, &eos_ids) : 0;
    if (!nm_ok(env, napi_create_object(env, &o)) || !nm_ok(env, napi_create_array_with_length(env, (size_t)n_eos, &eos)))
        return NULL;
    for (int i = 0; i < n_eos; i++) {
        napi_value v;
        if (!nm_ok(env, napi_create_int32(env, eos_ids[i], &v)) || !nm_ok(env, napi_set_element(env, eos, (uint32_t)i, v)))
            return NULL;
    }
    if (!nm_set_string(env, o, "modelType", mi.model_type) || !nm_set_string(env, o, "family", mi.family) ||
        !nm_set_double(env, o, "parameters", (double)mi.n_params) || !nm_set_int(env, o, "layers", mi.n_layers) ||
        !nm_set_int(env, o, "hiddenSize", mi.hidden_size) || !nm_set_int(env, o, "heads", mi.n_heads) ||
        !nm_set_int(env, o, "kvHeads", mi.n_kv_heads) || !nm_set_int(env, o, "headDim", mi.head_dim) ||
        !nm_set_int(env, o, "vocabSize", mi.vocab_size) || !nm_set_int(env, o, "contextLength", mi.context_length) ||
        !nm_set_string(env, o, "weightFormat", mi.weight_dtype) || !nm_set_string(env, o, "description", desc) ||
        !nm_set_int(env, o, "bosTokenId", tok ? lm_tokenizer_bos(tok) : -1) || !nm_set_value(env, o, "eosTokenIds", eos))
        return NULL;
    napi_value b1, b2;
    if (!nm_ok(env, napi_get_boolean(env, m->llm != NULL, &b1)) ||
        !nm_ok(env, napi_get_boolean(env, m->llm && lm_llm_chat_template(m->llm), &b2)) ||
        !nm_set_value(env, o, "hasTokenizer", b1) || !nm_set_value(env, o, "hasChatTemplate", b2))
        return NULL;
    return o;
}
