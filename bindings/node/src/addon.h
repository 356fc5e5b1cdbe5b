/* lmcore Node.js addon: shared declarations.
 *
 * Threading: the main (JS) thread only parses arguments and builds results; every call into the
 * engine that reads weights, tokenizes or renders runs on a libuv worker thread (napi async
 * work). A model's compute (its thread pool and its cached session are not reentrant) is
 * serialised by nm_model.lock; the JS layer also queues generations per model so worker threads
 * do not wait on it.
 *
 * Lifetime: a model handle is a JS object wrapping nm_model. Every async operation holds a
 * strong reference to that object and counts itself in `inflight`, so the C objects outlive
 * every worker that uses them. dispose() frees eagerly (on a worker thread) once nothing is in
 * flight; the finalizer frees whatever dispose did not, and never twice. */
#ifndef LM_NODE_ADDON_H
#define LM_NODE_ADDON_H

#define NAPI_VERSION 8
#include <node_api.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "lmcore.h"

/* --- errors and argument helpers (addon.c) ------------------------------------------------ */

/* true when status is napi_ok; otherwise makes sure a JS exception is pending. */
bool nm_ok(napi_env env, napi_status status);
/* Throw an Error with .code (e.g. "ERR_INVALID_ARG_TYPE") and return NULL. */
napi_value nm_throw(napi_env env, const char *code, const char *fmt, ...);
napi_value nm_throw_type(napi_env env, const char *fmt, ...);
/* An Error object for an engine status: .code "LM_ERR_...", .status, message. */
napi_value nm_status_error(napi_env env, lm_status st, const char *msg);
/* The JS name of a status ("LM_ERR_IO"). */
const char *nm_status_code(lm_status st);

/* Read a UTF-8 string argument into a malloc'd buffer (NULL + pending TypeError when not a
 * string; `what` names it). *len may be NULL. */
char *nm_get_string(napi_env env, napi_value v, const char *what, size_t *len);
/* Optional property readers: absent/undefined leaves *out unchanged and returns true; a value of
 * the wrong type throws a TypeError naming `obj_name.key` and returns false. */
bool nm_prop_int(napi_env env, napi_value obj, const char *key, int *out);
bool nm_prop_int64(napi_env env, napi_value obj, const char *key, int64_t *out);
bool nm_prop_float(napi_env env, napi_value obj, const char *key, float *out);
bool nm_prop_bool(napi_env env, napi_value obj, const char *key, int *out);
/* Optional string property: *out is malloc'd (or left NULL when absent). */
bool nm_prop_string(napi_env env, napi_value obj, const char *key, char **out);
bool nm_set_int(napi_env env, napi_value obj, const char *key, int64_t v);
bool nm_set_double(napi_env env, napi_value obj, const char *key, double v);
bool nm_set_string(napi_env env, napi_value obj, const char *key, const char *s);
bool nm_set_value(napi_env env, napi_value obj, const char *key, napi_value v);
/* An Int32Array argument: *data points into its buffer (copy before leaving the main thread). */
bool nm_get_int32_array(napi_env env, napi_value v, const char *what, const int32_t **data, size_t *n);

/* --- the model handle (model.c) --------------------------------------------------------------- */

typedef struct nm_model {
    lm_llm *llm;            /* NULL when loaded model-only */
    lm_model *model;        /* lm_llm_model(llm), or owned when model-only */
    lm_session *sess;       /* cached generation session (under lock) */
    lm_session_params sess_params;
    pthread_mutex_t lock;   /* serialises compute on this model */
    int inflight;           /* async operations using the handle (main thread only) */
    int disposed;           /* dispose() was called (main thread only) */
    int freed;              /* the engine objects are gone (main thread only) */
    napi_deferred dispose_deferred; /* a dispose() waiting for in-flight operations */
} nm_model;

/* The nm_model of a handle argument; NULL (+ pending error) when it is not a live handle.
 * allow_disposed: return it even after dispose (for info). */
nm_model *nm_model_get(napi_env env, napi_value handle, bool allow_disposed);

/* --- async operations (model.c) --------------------------------------------------------------- */

typedef struct nm_op nm_op;
struct nm_op {
    napi_async_work work;
    napi_deferred deferred;
    napi_ref handle_ref;    /* keeps the model's JS object alive; NULL for load */
    nm_model *m;
    bool compute;           /* take m->lock around exec */
    lm_status st;
    char err[1024];         /* lm_last_error() captured on the worker thread */
    void (*exec)(nm_op *op);                              /* worker thread */
    napi_value (*result)(napi_env env, nm_op *op);        /* main thread, when st == LM_OK */
    void (*destroy)(nm_op *op);                           /* frees the op (and its data) */
    int holds;              /* main-thread events the settlement also waits for (nm_op_release) */
    bool done;              /* the async work completed */
};

/* Queue op (already filled with exec/result/destroy) against the handle `handle` (may be NULL
 * with m NULL); returns the promise, or NULL with an exception pending (op destroyed). */
napi_value nm_op_queue(napi_env env, nm_op *op, napi_value handle, const char *name);
/* One awaited event happened (e.g. a thread-safe function was finalized, so every message it
 * carried was delivered): settle once the work is done and no holds remain. */
void nm_op_release(napi_env env, nm_op *op);
/* Record a failure on the worker thread: st and the thread's last error message. */
void nm_op_fail(nm_op *op, lm_status st);

napi_value nm_load(napi_env env, napi_callback_info info);
napi_value nm_dispose(napi_env env, napi_callback_info info);
napi_value nm_info(napi_env env, napi_callback_info info);

/* --- text (text.c) -------------------------------------------------------------------------------- */
napi_value nm_tokenize(napi_env env, napi_callback_info info);
napi_value nm_detokenize(napi_env env, napi_callback_info info);
napi_value nm_apply_chat_template(napi_env env, napi_callback_info info);

/* --- generation (generate.c) ---------------------------------------------------------------------- */
napi_value nm_generate(napi_env env, napi_callback_info info);
napi_value nm_cancel_token(napi_env env, napi_callback_info info);
napi_value nm_cancel(napi_env env, napi_callback_info info);

/* --- raw evaluation (evaluate.c) ------------------------------------------------------------------ */
napi_value nm_evaluate(napi_env env, napi_callback_info info);

#endif
