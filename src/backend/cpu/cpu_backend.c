/* CPU backend: threaded ops over host memory. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/cpu_ops_extra.h"
#include "core/threadpool.h"
#include "core/util.h"

#include "backend/cpu/cpu_simd.h"

typedef struct cpu_backend {
    lm_backend base;
    lm_pool *pool;
    int n_threads;
    const lm_cpu_kernels *k; /* the kernel set chosen for this CPU */
    float **scratch;         /* per thread */
    size_t scratch_cap;      /* floats per thread */
    float *xsum, *xd;        /* [max_in] per-group input sums and int16 scales (matvec) */
    int16_t *xq;             /* [max_in] int16 input (matvec) */
    int16_t *mq;             /* [mq_cap] int16 prefill input */
    float *md, *msum;        /* [mq_cap / 32] its scales and sums */
    size_t mq_cap;
    float *xcorr;            /* [max_in] per-group rounding residual of xq */
    size_t xsum_cap;
    float *part;             /* [part_cap] partial attention results of row chunks */
    size_t part_cap;
} cpu_backend;

static cpu_backend *cpu(lm_backend *be) { return (cpu_backend *)be; }

/* Make every thread's scratch hold n floats. Called outside parallel regions. */
static int ensure_scratch(cpu_backend *c, size_t n) {
    if (n <= c->scratch_cap)
        return 1;
    for (int t = 0; t < c->n_threads; t++) {
        lm_free(c->scratch[t]);
        c->scratch[t] = lm_malloc(n * sizeof(float));
        if (!c->scratch[t]) {
            c->scratch_cap = 0;
            return 0;
        }
    }
    c->scratch_cap = n;
    return 1;
}

static int ensure_xsum(cpu_backend *c, size_t n) {
    if (n <= c->xsum_cap)
        return 1;
    lm_free(c->xsum);
    lm_free(c->xd);
    lm_free(c->xq);
    lm_free(c->xcorr);
    c->xsum = lm_malloc(n * sizeof(float));
    c->xd = lm_malloc(n * sizeof(float));
    c->xq = lm_malloc(n * sizeof(int16_t));
    c->xcorr = lm_malloc(n * sizeof(float));
    c->xsum_cap = c->xsum && c->xd && c->xq && c->xcorr ? n : 0;
    return c->xsum_cap != 0;
}

/* Room for a prefill input of n elements as int16; 0 when it cannot be had (float path then). */
static int ensure_xmat(cpu_backend *c, size_t n) {
    if (n <= c->mq_cap)
        return 1;
    lm_free(c->mq);
    lm_free(c->md);
    lm_free(c->msum);
    c->mq = lm_malloc(n * sizeof(int16_t));
    c->md = lm_malloc((n / 32 + 1) * sizeof(float));
    c->msum = lm_malloc((n / 32 + 1) * sizeof(float));
    c->mq_cap = c->mq && c->md && c->msum ? n : 0;
    return c->mq_cap != 0;
}

/* --- linear ------------------------------------------------------------------------------------ */

typedef struct linear_job {
    cpu_backend *c;
    const lm_linear *w;
    const float *x;
    lm_xmat xm; /* prefill: the prepared input */
    int T;
    float *y;
} linear_job;

/* Decode (T = 1): up to three weights that share one input (q, k, v; gate and up) in one
 * parallel run, the input prepared once. Each task streams a contiguous chunk of rows of one
 * weight straight from its storage. GLU mode: a task computes the same rows of gate and up and
 * writes act(gate) * up, so the pair costs one barrier and no separate activation pass. */
typedef struct mv_job {
    cpu_backend *c;
    int n;                  /* weights */
    const lm_linear *w[3];
    float *y[3];            /* [w->out] each */
    int chunk[3], first[4]; /* rows per task; first task of each weight (first[n]: all tasks) */
    lm_xvec xv;
    int glu;                /* n == 2: out = act(y[0]) * y[1] */
    lm_act act;
    float limit;
    float *out;
} mv_job;

static void glu_row(const lm_cpu_kernels *k, const float *g, const float *u, float *o, int n, lm_act act, float limit);

static void mv_rows(const mv_job *j, int i, int r0, int r1) {
    const lm_linear *w = j->w[i];
    j->c->k->matvec(w, &j->xv, r0, r1, j->y[i] + r0);
    if (w->bias)
        for (int r = r0; r < r1; r++)
            j->y[i][r] += w->bias[r];
}

static void mv_task(void *ctx, int task, int thread) {
    const mv_job *j = ctx;
    int i = 0;
    while (task >= j->first[i + 1])
        i++;
    int r0 = (task - j->first[i]) * j->chunk[i], r1 = r0 + j->chunk[i] < j->w[i]->out ? r0 + j->chunk[i] : j->w[i]->out;
    mv_rows(j, i, r0, r1);
    if (j->glu) {
        mv_rows(j, 1, r0, r1);
        glu_row(j->c->k, j->y[0] + r0, j->y[1] + r0, j->out + r0, r1 - r0, j->act, j->limit);
    }
}

/* 1 when the decode path can multiply w and b with one prepared input */
static int mv_same_input(const cpu_backend *c, const lm_linear *a, const lm_linear *b) {
    int g = lm_xvec_group(a);
    return a->in == b->in && g == lm_xvec_group(b) && (g == 0 || !c->k->quant_x || c->k->x_layout(a) == c->k->x_layout(b));
}

/* Prepare x for the weights of j (all mv_same_input) and run them. */
static void mv_run(cpu_backend *c, mv_job *j, const float *x) {
    const lm_linear *w = j->w[0];
    int group = lm_xvec_group(w);
    j->c = c;
    j->xv = (lm_xvec){.x = x};
    if (group > 0) {
        if (!ensure_xsum(c, (size_t)w->in))
            return; /* reserve allocated it at load; this cannot fail after that */
        if (c->k->quant_x)
            c->k->quant_x(x, w->in, group, c->k->x_layout(w), c->xq, c->xd, c->xsum, c->xcorr);
        else
            lm_group_sums(x, w->in, group, c->xsum);
        j->xv = (lm_xvec){x, c->xsum, c->xq, c->xd, c->xcorr};
    }
    /* about 8 chunks per thread over the whole run (balance on a shared machine), multiples of
     * 16 rows; GLU tasks count the rows of gate only. The chunks run as one contiguous range
     * per thread (lm_pool_run_ranges): every thread streams one run of rows front to back, so
     * the page walk prefetched ahead of a row (LM_PAGE_AHEAD) lands in rows that thread reads
     * next. Chunks taken in turn by the threads had left it in the other thread's rows: with
     * ranges Qwen3-0.6B q4 linear time was 0.78-0.96 of that, Llama-3.2-1B q4 about 0.85 (A/B
     * in one process, bench/README.md). */
    int rows = 0, nw = j->glu ? 1 : j->n;
    for (int k = 0; k < nw; k++)
        rows += j->w[k]->out;
    int chunk = rows / (c->n_threads * 8);
    chunk = chunk < 16 ? 16 : chunk > 512 ? 512 : (chunk + 15) / 16 * 16;
    j->first[0] = 0;
    for (int i = 0; i < nw; i++) {
        j->chunk[i] = chunk;
        j->first[i + 1] = j->first[i] + (j->w[i]->out + chunk - 1) / chunk;
    }
    lm_pool_run_ranges(c->pool, j->first[nw], mv_task, j);
}

/* Prefill: a block of rows is converted to f32 once and multiplied with every token. */
static void gemm_task(void *ctx, int task, int thread) {
    linear_job *j = ctx;
    const lm_linear *w = j->w;
    const lm_cpu_kernels *k = j->c->k;
    int r0 = task * LM_GEMM_ROWS, R = r0 + LM_GEMM_ROWS < w->out ? LM_GEMM_ROWS : w->out - r0;
    k->gemm_rows(w, &j->xm, r0, R, j->y + r0, w->out, j->c->scratch[thread]);
    if (w->bias)
        for (int t = 0; t < j->T; t++)
            for (int r = r0; r < r0 + R; r++)
                j->y[(size_t)t * w->out + r] += w->bias[r];
}

static void cpu_linear(lm_backend *be, const lm_linear *w, const float *x, int T, float *y) {
    cpu_backend *c = cpu(be);
    linear_job j = {.c = c, .w = w, .x = x, .T = T, .y = y};
    if (T == 1 && c->k->matvec_ok(w)) {
        mv_job mj = {.n = 1, .w = {w}, .y = {y}};
        mv_run(c, &mj, x);
        return;
    }
    if (!ensure_scratch(c, LM_GEMM_SCRATCH(w->in)))
        return;
    j.xm = (lm_xmat){.x = x, .T = T};
    int group = lm_xvec_group(w);
    if (c->k->prep_xmat && group > 0 && ensure_xmat(c, (size_t)T * w->in) &&
        c->k->prep_xmat(w, x, T, c->mq, c->md, c->msum))
        j.xm = (lm_xmat){x, T, c->mq, c->md, c->msum};
    lm_pool_run(c->pool, (w->out + LM_GEMM_ROWS - 1) / LM_GEMM_ROWS, gemm_task, &j);
}

/* y[i] = x W[i]^T for n <= 3 weights sharing x: one run when decoding */
static void cpu_linear_n(lm_backend *be, int n, const lm_linear *const *w, const float *x, int T, float *const *y) {
    cpu_backend *c = cpu(be);
    int fuse = T == 1 && n <= 3;
    for (int i = 0; i < n && fuse; i++)
        fuse = c->k->matvec_ok(w[i]) && mv_same_input(c, w[0], w[i]);
    if (!fuse) {
        for (int i = 0; i < n; i++)
            cpu_linear(be, w[i], x, T, y[i]);
        return;
    }
    mv_job j = {.n = n};
    for (int i = 0; i < n; i++) {
        j.w[i] = w[i];
        j.y[i] = y[i];
    }
    mv_run(c, &j, x);
}

static void cpu_glu(lm_backend *be, const float *gate, const float *up, int ld, int T, int n, lm_act act,
                    float limit, float *out);

/* out = act(x Wg^T) * (x Wu^T): gate, up and the activation in one run when decoding */
static void cpu_linear_glu(lm_backend *be, const lm_linear *gate, const lm_linear *up, const float *x, int T,
                           lm_act act, float limit, float *g_buf, float *u_buf, float *out) {
    cpu_backend *c = cpu(be);
    if (T != 1 || gate->out != up->out || !c->k->matvec_ok(gate) || !c->k->matvec_ok(up) ||
        !mv_same_input(c, gate, up)) {
        cpu_linear(be, gate, x, T, g_buf);
        cpu_linear(be, up, x, T, u_buf);
        cpu_glu(be, g_buf, u_buf, gate->out, T, gate->out, act, limit, out);
        return;
    }
    mv_job j = {.n = 2, .w = {gate, up}, .y = {g_buf, u_buf}, .glu = 1, .act = act, .limit = limit, .out = out};
    mv_run(c, &j, x);
}

/* --- small ops ------------------------------------------------------------------------------------ */

static void cpu_embed(lm_backend *be, const lm_linear *table, const int32_t *ids, int T, float scale, float *out) {
    for (int t = 0; t < T; t++) {
        float *o = out + (size_t)t * table->in;
        lm_linear_row_f32(table, ids[t], o);
        if (scale != 1.0f)
            for (int i = 0; i < table->in; i++)
                o[i] *= scale;
    }
}

static void cpu_rmsnorm(lm_backend *be, const float *x, const float *w, int rows, int n, float eps, float *y) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n;
        float *yr = y + (size_t)r * n;
        double ss = 0;
        for (int i = 0; i < n; i++)
            ss += (double)xr[i] * xr[i];
        float inv = 1.0f / sqrtf((float)(ss / n) + eps);
        for (int i = 0; i < n; i++)
            yr[i] = xr[i] * inv * (w ? w[i] : 1.0f);
    }
}

static void cpu_rope(lm_backend *be, float *x, int T, int n_heads, int head_dim, int rot_dim, const float *cs) {
    int half = rot_dim / 2;
    for (int t = 0; t < T; t++) {
        const float *cosv = cs + (size_t)t * rot_dim, *sinv = cosv + half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)t * n_heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * cosv[i] - b * sinv[i];
                v[i + half] = b * cosv[i] + a * sinv[i];
            }
        }
    }
}

typedef struct glu_job {
    const lm_cpu_kernels *k;
    const float *gate, *up;
    int ld, n;
    lm_act act;
    float limit;
    float *out;
} glu_job;

static void glu_row(const lm_cpu_kernels *k, const float *g, const float *u, float *o, int n, lm_act act, float limit) {
    switch (act) {
    case LM_ACT_SILU:
        k->silu_mul(g, u, o, n);
        break;
    case LM_ACT_GELU_TANH:
        for (int i = 0; i < n; i++)
            o[i] = lm_gelu_tanh(g[i]) * u[i];
        break;
    case LM_ACT_SWIGLU_OAI:
        for (int i = 0; i < n; i++) {
            float x = g[i] < limit ? g[i] : limit;
            float y = u[i] < -limit ? -limit : u[i] > limit ? limit : u[i];
            o[i] = x / (1.0f + expf(-1.702f * x)) * (y + 1.0f);
        }
        break;
    default:
        for (int i = 0; i < n; i++)
            o[i] = lm_gelu_erf(g[i]) * u[i];
        break;
    }
}

static void glu_task(void *ctx, int t, int thread) {
    const glu_job *j = ctx;
    glu_row(j->k, j->gate + (size_t)t * j->ld, j->up + (size_t)t * j->ld, j->out + (size_t)t * j->n, j->n, j->act,
            j->limit);
}

static void cpu_glu(lm_backend *be, const float *gate, const float *up, int ld, int T, int n, lm_act act,
                    float limit, float *out) {
    cpu_backend *c = cpu(be);
    glu_job j = {c->k, gate, up, ld, n, act, limit, out};
    lm_pool_run(c->pool, T, glu_task, &j); /* one token per task */
}

static void cpu_add(lm_backend *be, float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++)
        x[i] += y[i];
}

static void cpu_scale(lm_backend *be, float *x, float s, size_t n) {
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
}

/* --- attention ------------------------------------------------------------------------------------ */
/* A task is one query token and a chunk of cache rows, all heads at once (each row read once for
 * every head of its group). Decode splits the rows into chunks (flash-decoding): each task keeps
 * per head the max score, the sum of exponentials and the unnormalised output of its rows, and
 * the chunks are merged afterwards. With one chunk per token the task writes the output itself. */

typedef struct attn_job {
    cpu_backend *c;
    const lm_attn_args *a;
    int n_split, chunk; /* chunks per token, rows per chunk */
    int stream;         /* few tokens: lm_attn_rows.stream */
    float *part;        /* n_split > 1: per task [nh][hd] output, then [nh] max, [nh] sum */
} attn_job;

static int key_visible(const lm_attn_args *a, int r, int32_t qp) {
    int32_t kp = a->kpos ? a->kpos[r] : r;
    return kp >= 0 && kp <= qp && !(a->window > 0 && qp - kp >= a->window);
}

/* scores s[h][n] of rows lo.. -> exponentials; max and sum per head (sinks count when `sinks`) */
static void attn_softmax(const attn_job *j, float *s, int lo, int n, int32_t qp, const float *sinks, float *mx,
                         float *sum) {
    const lm_attn_args *a = j->a;
    int nh = a->n_heads;
    if (a->softcap > 0)
        for (size_t i = 0; i < (size_t)nh * n; i++)
            s[i] = a->softcap * tanhf(s[i] / a->softcap);
    if (a->kpos || a->window > 0) /* rows inside [lo, lo+n) may still be hidden */
        for (int r = 0; r < n; r++)
            if (!key_visible(a, lo + r, qp))
                for (int h = 0; h < nh; h++)
                    s[(size_t)h * n + r] = -INFINITY;
    for (int h = 0; h < nh; h++) {
        float *sh = s + (size_t)h * n, m = sinks ? sinks[h] : -INFINITY;
        for (int r = 0; r < n; r++)
            m = sh[r] > m ? sh[r] : m;
        mx[h] = m;
        if (m == -INFINITY) { /* nothing visible */
            memset(sh, 0, (size_t)n * sizeof(float));
            sum[h] = 0;
            continue;
        }
        sum[h] = j->c->k->exp_sum(sh, n, m) + (sinks ? expf(sinks[h] - m) : 0.0f);
    }
}

static void attn_task(void *ctx, int task, int thread) {
    attn_job *j = ctx;
    const lm_attn_args *a = j->a;
    int nh = a->n_heads, hd = a->head_dim, t = task / j->n_split, split = j->n_split > 1;
    int32_t qp = a->qpos[t];
    int lo = task % j->n_split * j->chunk, hi = lo + j->chunk < a->n_rows ? lo + j->chunk : a->n_rows;
    while (lo < hi && !key_visible(a, lo, qp))
        lo++;
    while (hi > lo && !key_visible(a, hi - 1, qp))
        hi--;
    int n = hi - lo;
    float *s = j->c->scratch[thread]; /* [nh][n] scores, then [nh] max and sum */
    float *o = split ? j->part + (size_t)task * nh * (hd + 2) : a->out + (size_t)t * nh * hd;
    float *mx = split ? o + (size_t)nh * hd : s + (size_t)nh * j->chunk, *sum = mx + nh;
    memset(o, 0, (size_t)nh * hd * sizeof(float));
    for (int h = 0; h < nh; h++) {
        mx[h] = -INFINITY;
        sum[h] = 0;
    }
    if (n <= 0)
        return;
    size_t ks = (size_t)a->n_kv * hd;
    lm_attn_rows rows = {lm_kv_at(a->k, lo * ks, a->kv_f16), lm_kv_at(a->v, lo * ks, a->kv_f16), ks, n, nh, a->n_kv,
                         hd, j->stream, a->kv_f16};
    j->c->k->attn_scores(&rows, a->q + (size_t)t * nh * hd, a->scale, s, (size_t)n);
    attn_softmax(j, s, lo, n, qp, split ? NULL : a->sinks, mx, sum);
    j->c->k->attn_values(&rows, s, (size_t)n, o);
    if (!split)
        for (int h = 0; h < nh; h++)
            cpu_scale(NULL, o + (size_t)h * hd, sum[h] > 0 ? 1.0f / sum[h] : 0.0f, (size_t)hd);
}

/* out[t][h] = the chunks' outputs weighted by exp(max_c - max), over the merged sum (and sink) */
static void attn_merge(const attn_job *j) {
    const lm_attn_args *a = j->a;
    int nh = a->n_heads, hd = a->head_dim, ns = j->n_split;
    size_t tstride = (size_t)nh * (hd + 2);
    for (int t = 0; t < a->T; t++)
        for (int h = 0; h < nh; h++) {
            const float *pt = j->part + (size_t)t * ns * tstride;
            float *out = a->out + ((size_t)t * nh + h) * hd, m = a->sinks ? a->sinks[h] : -INFINITY, l = 0;
            for (int c = 0; c < ns; c++) {
                float mc = pt[c * tstride + (size_t)nh * hd + h];
                m = mc > m ? mc : m;
            }
            memset(out, 0, (size_t)hd * sizeof(float));
            if (m == -INFINITY)
                continue;
            for (int c = 0; c < ns; c++) {
                const float *pc = pt + c * tstride;
                float mc = pc[(size_t)nh * hd + h];
                if (mc == -INFINITY)
                    continue;
                float w = expf(mc - m);
                l += w * pc[(size_t)nh * hd + nh + h];
                j->c->k->axpy(out, w, pc + (size_t)h * hd, hd);
            }
            l += a->sinks ? expf(a->sinks[h] - m) : 0.0f;
            cpu_scale(NULL, out, l > 0 ? 1.0f / l : 0.0f, (size_t)hd);
        }
}

static void cpu_attention(lm_backend *be, const lm_attn_args *a) {
    cpu_backend *c = cpu(be);
    int few = a->T < 2 * c->n_threads;
    attn_job j = {c, a, 1, a->n_rows > 0 ? a->n_rows : 1, few, NULL};
    /* few tokens: split the rows so that every thread has a few chunks of at least 64 rows */
    if (few && a->n_rows >= 128) {
        int want = (4 * c->n_threads + a->T - 1) / a->T, most = a->n_rows / 64;
        j.n_split = want < most ? want : most;
        j.chunk = (a->n_rows + j.n_split - 1) / j.n_split;
        j.chunk = (j.chunk + 15) / 16 * 16;
        j.n_split = (a->n_rows + j.chunk - 1) / j.chunk;
    }
    size_t part = j.n_split > 1 ? (size_t)a->T * j.n_split * a->n_heads * (a->head_dim + 2) : 0;
    if (!ensure_scratch(c, (size_t)a->n_heads * (j.chunk + 2)))
        return;
    if (part > c->part_cap) {
        lm_free(c->part);
        c->part = lm_malloc(part * sizeof(float));
        c->part_cap = c->part ? part : 0;
        if (!c->part)
            return;
    }
    j.part = c->part;
    lm_pool_run(c->pool, a->T * j.n_split, attn_task, &j);
    if (j.n_split > 1)
        attn_merge(&j);
}

/* --- lifetime ------------------------------------------------------------------------------------ */

/* Large buffers (the KV cache) on 2 MiB boundaries with transparent huge pages requested (THP in
 * "madvise" mode otherwise gives 4 KiB pages): decode attention walks a block of cache rows one
 * kv-head group at a time (a Qwen3 row is one 4 KiB page) and measured ~12% faster this way. */
static void *cpu_alloc(lm_backend *be, size_t n) {
    const size_t huge = (size_t)2 << 20;
    if (n < huge)
        return lm_calloc(n);
    void *p = NULL;
    if (posix_memalign(&p, huge, n) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE /* Linux; elsewhere the alignment alone */
    madvise(p, n / huge * huge, MADV_HUGEPAGE); /* a hint: without THP, small pages */
#endif
    memset(p, 0, n);
    return p;
}
static void cpu_copy(lm_backend *be, void *dst, const void *src, size_t n) { memmove(dst, src, n); }

static lm_status cpu_reserve(lm_backend *be, int max_in, int max_rows) {
    size_t need = LM_GEMM_SCRATCH(max_in);
    if ((size_t)max_rows > need)
        need = (size_t)max_rows;
    if (!ensure_scratch(cpu(be), need) || !ensure_xsum(cpu(be), (size_t)max_in))
        return lm_err(LM_ERR_NOMEM, "cannot allocate %zu bytes of scratch per thread", need * sizeof(float));
    return LM_OK;
}
static void cpu_release(lm_backend *be, void *p) { lm_free(p); }

static void cpu_destroy(lm_backend *be) {
    cpu_backend *c = cpu(be);
    if (!c)
        return;
    lm_pool_free(c->pool);
    for (int t = 0; t < c->n_threads; t++)
        lm_free(c->scratch[t]);
    free(c->scratch);
    lm_free(c->xsum);
    lm_free(c->xd);
    lm_free(c->xq);
    lm_free(c->xcorr);
    lm_free(c->mq);
    lm_free(c->md);
    lm_free(c->msum);
    lm_free(c->part);
    free(c);
}

static const lm_backend_ops CPU_OPS = {
    .version = LM_BACKEND_OPS_VERSION,
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .copy = cpu_copy,
    .reserve = cpu_reserve,
    .linear = cpu_linear,
    .linear_n = cpu_linear_n,
    .linear_glu = cpu_linear_glu,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .glu = cpu_glu,
    .add = cpu_add,
    .scale = cpu_scale,
    .upload = lm_cpu_upload,
    .download = lm_cpu_download,
    .zero = lm_cpu_zero,
    .softcap = lm_cpu_softcap,
    .mul_rows = lm_cpu_mul_rows,
    .copy_rows = lm_cpu_copy_rows,
    .moe_route = lm_cpu_moe_route,
    .gather_rows = lm_cpu_gather_rows,
    .scatter_add_rows = lm_cpu_scatter_add_rows,
    .sparsify = lm_cpu_sparsify,
    .rms_match = lm_cpu_rms_match,
    .altup_predict = lm_cpu_altup_predict,
    .altup_correct = lm_cpu_altup_correct,
    .argmax = lm_cpu_argmax,
    .edit_logits = lm_cpu_edit_logits,
    .kv_quantize = lm_cpu_kv_quantize,
    .kv_dequant = lm_cpu_kv_dequant,
    .attn_f16 = 1,
};

lm_status lm_backend_cpu_new(int n_threads, lm_backend **out) {
    *out = NULL;
    cpu_backend *c = calloc(1, sizeof *c);
    if (!c)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    c->base.ops = &CPU_OPS;
    c->k = lm_cpu_kernels_best();
    c->pool = lm_pool_new(n_threads);
    if (!c->pool) {
        free(c);
        return lm_err(LM_ERR_NOMEM, "cannot start threads");
    }
    c->n_threads = lm_pool_threads(c->pool);
    c->scratch = calloc((size_t)c->n_threads, sizeof *c->scratch);
    if (!c->scratch) {
        cpu_destroy(&c->base);
        return lm_err(LM_ERR_NOMEM, "out of memory");
    }
    *out = &c->base;
    return LM_OK;
}

int lm_backend_cpu_threads(const lm_backend *be) { return ((const cpu_backend *)be)->n_threads; }
