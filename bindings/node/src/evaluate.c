/* lmcore Node.js addon: run token ids through the model (prefill logits and a greedy
 * continuation through the KV cache), the layout of lmcore's `logits --decode N` and of the
 * fixtures' expected.safetensors. Works on model-only handles (no tokenizer needed). */
#include <stdlib.h>
#include <string.h>

#include "addon.h"

typedef struct eval_op {
    nm_op op;
    int32_t *ids;
    int n_ids, n_decode, all_logits, vocab;
    float *logits;  /* [n_ids or 1, V] */
    float *dlog;    /* [n_decode, V] */
    int32_t *greedy; /* [n_decode] */
} eval_op;

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

static void eval_exec(nm_op *op) {
    eval_op *e = (eval_op *)op;
    int V = e->vocab, T = e->n_ids, rows = e->all_logits ? T : 1;
    e->logits = malloc((size_t)rows * (size_t)V * sizeof(float));
    e->dlog = malloc(((size_t)e->n_decode * (size_t)V + 1) * sizeof(float));
    e->greedy = malloc(((size_t)e->n_decode + 1) * sizeof(int32_t));
    if (!e->logits || !e->dlog || !e->greedy) {
        op->st = LM_ERR_NOMEM;
        strcpy(op->err, "evaluate: out of memory for the logits");
        return;
    }
    lm_ctx_params cp = lm_ctx_default_params();
    cp.max_tokens = T + e->n_decode;
    lm_ctx *ctx = NULL;
    lm_status st = lm_ctx_new(op->m->model, &cp, &ctx);
    if (st == LM_OK)
        st = lm_ctx_eval(ctx, e->ids, T, e->logits, e->all_logits);
    if (st == LM_OK && e->n_decode > 0) {
        int32_t next = argmax(e->logits + (size_t)(rows - 1) * V, V);
        for (int i = 0; i < e->n_decode && st == LM_OK; i++) {
            e->greedy[i] = next;
            st = lm_ctx_eval(ctx, &next, 1, e->dlog + (size_t)i * V, 0);
            next = argmax(e->dlog + (size_t)i * V, V);
        }
    }
    if (st != LM_OK)
        nm_op_fail(op, st);
    lm_ctx_free(ctx);
}

static napi_value f32_array(napi_env env, const float *x, size_t n) {
    napi_value ab, ta;
    void *p = NULL;
    if (!nm_ok(env, napi_create_arraybuffer(env, n * sizeof(float), &p, &ab)) ||
        !nm_ok(env, napi_create_typedarray(env, napi_float32_array, n, ab, 0, &ta)))
        return NULL;
    if (n)
        memcpy(p, x, n * sizeof(float));
    return ta;
}

static napi_value eval_result(napi_env env, nm_op *op) {
    eval_op *e = (eval_op *)op;
    size_t V = (size_t)e->vocab, rows = e->all_logits ? (size_t)e->n_ids : 1, N = (size_t)e->n_decode;
    napi_value o, logits, dlog, greedy, ab;
    void *p = NULL;
    if (!nm_ok(env, napi_create_object(env, &o)) || !(logits = f32_array(env, e->logits, rows * V)) ||
        !(dlog = f32_array(env, e->dlog, N * V)) ||
        !nm_ok(env, napi_create_arraybuffer(env, N * sizeof(int32_t), &p, &ab)) ||
        !nm_ok(env, napi_create_typedarray(env, napi_int32_array, N, ab, 0, &greedy)))
        return NULL;
    if (N)
        memcpy(p, e->greedy, N * sizeof(int32_t));
    if (!nm_set_value(env, o, "logits", logits) || !nm_set_value(env, o, "greedyTokens", greedy) ||
        !nm_set_value(env, o, "decodeLogits", dlog) || !nm_set_int(env, o, "vocabSize", e->vocab))
        return NULL;
    return o;
}

static void eval_destroy(nm_op *op) {
    eval_op *e = (eval_op *)op;
    free(e->ids);
    free(e->logits);
    free(e->dlog);
    free(e->greedy);
    free(e);
}

/* evaluate(handle, ids: Int32Array, opts: {decode?: number, allLogits?: boolean})
 *   -> Promise<{logits, greedyTokens, decodeLogits, vocabSize}> (a fresh cache per call) */
napi_value nm_evaluate(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3];
    const int32_t *ids = NULL;
    size_t n = 0;
    int decode = 0, all = 1;
    if (!nm_ok(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL)))
        return NULL;
    nm_model *m = nm_model_get(env, argv[0], false);
    if (!m || !nm_get_int32_array(env, argv[1], "ids", &ids, &n) || !nm_prop_int(env, argv[2], "decode", &decode) ||
        !nm_prop_bool(env, argv[2], "allLogits", &all))
        return NULL;
    lm_model_info mi;
    lm_model_get_info(m->model, &mi);
    if (n < 1 || n > (size_t)(INT32_MAX / 4))
        return nm_throw(env, "ERR_OUT_OF_RANGE", "evaluate: ids must hold at least one token (got %zu)", n);
    if (decode < 0 || decode > 1000000)
        return nm_throw(env, "ERR_OUT_OF_RANGE", "evaluate: options.decode must be in [0, 1e6] (got %d)", decode);
    size_t rows = all ? n : 1;
    if ((rows + (size_t)decode) * (size_t)mi.vocab_size > ((size_t)1 << 30))
        return nm_throw(env, "ERR_OUT_OF_RANGE",
                        "evaluate: %zu rows of %d logits exceed 2^30 floats; evaluate fewer tokens or set allLogits: false",
                        rows + (size_t)decode, mi.vocab_size);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= mi.vocab_size)
            return nm_throw(env, "ERR_OUT_OF_RANGE", "evaluate: ids[%zu] = %d is outside the vocabulary [0, %d)", i,
                            (int)ids[i], mi.vocab_size);
    eval_op *e = calloc(1, sizeof *e);
    if (!e || !(e->ids = malloc(n * sizeof *ids))) {
        free(e);
        return nm_throw(env, "LM_ERR_NOMEM", "evaluate: out of memory");
    }
    memcpy(e->ids, ids, n * sizeof *ids);
    e->n_ids = (int)n;
    e->n_decode = decode;
    e->all_logits = all;
    e->vocab = mi.vocab_size;
    e->op.m = m;
    e->op.compute = true;
    e->op.exec = eval_exec;
    e->op.result = eval_result;
    e->op.destroy = eval_destroy;
    return nm_op_queue(env, &e->op, argv[0], "lmcore.evaluate");
}
