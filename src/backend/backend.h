/* The op interface the decoder runs on. A backend owns its memory (host for the CPU, device
 * for CUDA); activations passed to ops live in memory from be->ops->alloc. Each optional slot
 * says what happens when it is NULL. Version bumps when a slot's meaning changes. */
#ifndef LM_BACKEND_BACKEND_H
#define LM_BACKEND_BACKEND_H
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "io/config.h"
#include "layers/linear.h"

#define LM_BACKEND_OPS_VERSION 1

typedef struct lm_backend lm_backend;

typedef struct lm_attn_args {
    const float *q;        /* [T, n_heads*head_dim] */
    const float *k, *v;    /* cache rows [n_rows, n_kv*head_dim] */
    const int32_t *kpos;   /* [n_rows] absolute position of each row (< 0: empty), NULL: row i is position i */
    int n_rows;
    const int32_t *qpos;   /* [T] absolute positions of the queries */
    int T, n_heads, n_kv, head_dim;
    int window;            /* 0: none; else a key is visible when qpos - kpos < window */
    float scale;           /* on q.k */
    float softcap;         /* 0: none; else cap * tanh(s / cap) */
    const float *sinks;    /* [n_heads] extra logit per head in the softmax (GPT-OSS), or NULL */
    float *out;            /* [T, n_heads*head_dim] */
} lm_attn_args;

typedef struct lm_backend_ops {
    int version;
    const char *name;
    void (*destroy)(lm_backend *be);
    void *(*alloc)(lm_backend *be, size_t bytes); /* NULL on failure */
    void (*release)(lm_backend *be, void *p);
    /* dst = src (both from alloc) */
    void (*copy)(lm_backend *be, void *dst, const void *src, size_t bytes);
    /* make room for ops on rows of up to `max_in` inputs and attention over `max_rows` keys */
    lm_status (*reserve)(lm_backend *be, int max_in, int max_rows);
    /* y[T,out] = x[T,in] W^T (+ bias) */
    void (*linear)(lm_backend *be, const lm_linear *w, const float *x, int T, float *y);
    /* out[T,dim] = table row ids[t] * scale */
    void (*embed)(lm_backend *be, const lm_linear *table, const int32_t *ids, int T, float scale, float *out);
    /* y[r] = x[r] / rms(x[r]) * w over `rows` rows of n (w NULL: no weight); y may equal x */
    void (*rmsnorm)(lm_backend *be, const float *x, const float *w, int rows, int n, float eps, float *y);
    /* rotate the first rot_dim dims of each head (half-split pairs i, i+rot_dim/2);
     * cs = [T, rot_dim] : cos[rot_dim/2] then sin[rot_dim/2] per token */
    void (*rope)(lm_backend *be, float *x, int T, int n_heads, int head_dim, int rot_dim, const float *cs);
    void (*attention)(lm_backend *be, const lm_attn_args *a);
    /* out[i] = act(gate[i]) * up[i] for T rows of n (gate/up rows strided by ld); limit: the
     * clamp of LM_ACT_SWIGLU_OAI */
    void (*glu)(lm_backend *be, const float *gate, const float *up, int ld, int T, int n, lm_act act, float limit,
                float *out);
    /* x[i] += y[i] */
    void (*add)(lm_backend *be, float *x, const float *y, size_t n);
    /* x[i] *= s */
    void (*scale)(lm_backend *be, float *x, float s, size_t n);
} lm_backend_ops;

struct lm_backend {
    const lm_backend_ops *ops;
};

lm_status lm_backend_cpu_new(int n_threads, lm_backend **out);
int lm_backend_cpu_threads(const lm_backend *be);

#endif
