/* Logits processors and the sampler chain (mlx-lm sample_utils.py semantics). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/softmax.h"
#include "core/util.h"
#include "generate/sampler.h"

void lm_log_softmax(float *x, int V) {
    float mx;
    double sum;
    if (!lm_max_expsum(x, V, &mx, &sum))
        return;
    float lse = (float)(mx + log(sum));
    for (int i = 0; i < V; i++)
        x[i] -= lse;
}

/* --- sorting helpers -------------------------------------------------------------------------- */

/* Is (va, a) ranked before (vb, b)? Larger value first, ties: the lower id first. */
static int before(float va, int32_t a, float vb, int32_t b) { return va > vb || (va == vb && a < b); }

static float key(const float *lp, int32_t i) { return isnan(lp[i]) ? -INFINITY : lp[i]; }

/* Put `item` at the root of the min-heap idx[0..n) (root = the worst kept) and sift it down. */
static void sift_down(const float *lp, int32_t *idx, int n, int32_t item) {
    float v = key(lp, item);
    int c = 0;
    for (;;) {
        int l = 2 * c + 1, r = l + 1, w = c;
        float wv = v;
        int32_t wi = item;
        if (l < n && before(wv, wi, key(lp, idx[l]), idx[l]))
            w = l, wv = key(lp, idx[l]), wi = idx[l];
        if (r < n && before(wv, wi, key(lp, idx[r]), idx[r]))
            w = r;
        if (w == c)
            break;
        idx[c] = idx[w];
        c = w;
    }
    idx[c] = item;
}

/* idx[0..k) := the k highest-ranked ids, best first: a min-heap of k over the vocabulary,
 * O(V log k), then heapsort. 1 <= k <= V. */
static void select_top(const float *lp, int V, int k, int32_t *idx) {
    int n = 0;
    for (int32_t i = 0; i < V; i++) {
        float v = key(lp, i);
        if (n == k && !before(v, i, key(lp, idx[0]), idx[0]))
            continue;
        int c;
        if (n < k) { /* sift up from the end; the root is the worst kept */
            c = n++;
            while (c > 0) {
                int par = (c - 1) / 2;
                if (!before(key(lp, idx[par]), idx[par], v, i))
                    break;
                idx[c] = idx[par];
                c = par;
            }
            idx[c] = i;
            continue;
        }
        sift_down(lp, idx, n, i); /* replace the root */
    }
    /* heapsort: repeatedly move the worst to the end */
    for (int end = n - 1; end > 0; end--) {
        int32_t worst = idx[0];
        sift_down(lp, idx, end, idx[end]);
        idx[end] = worst;
    }
}

/* qsort has no context argument in C11: sort (value, id) pairs instead. */
typedef struct {
    float v;
    int32_t id;
} vid;

static int cmp_asc(const void *a, const void *b) {
    const vid *x = a, *y = b;
    return before(x->v, x->id, y->v, y->id) ? 1 : before(y->v, y->id, x->v, x->id) ? -1 : 0;
}

/* --- sampler chain ----------------------------------------------------------------------------- */

void lm_samp_top_p(float *lp, int V, float top_p, int32_t *idx) {
    (void)idx;
    /* mlx-lm sorts ascending and keeps tokens whose cumsum exceeds 1 - top_p. A token with
     * p <= (1 - top_p) / V has a cumsum <= V * p <= 1 - top_p, so it goes without sorting:
     * only the rest is sorted, its cumsum starting at the mass of those dropped (summed in id
     * order rather than sorted order: a last-bit difference). */
    float thr = 1.0f - top_p, small_p = thr / (float)V, small_mass = 0.0f;
    int m = 0;
    for (int i = 0; i < V; i++) {
        float p = expf(lp[i]);
        if (p <= small_p) {
            small_mass += p;
            lp[i] = -INFINITY;
        } else {
            m++;
        }
    }
    vid *c = malloc((size_t)(m ? m : 1) * sizeof *c);
    if (!c)
        return;
    m = 0;
    for (int i = 0; i < V; i++)
        if (lp[i] > -INFINITY)
            c[m].v = key(lp, i), c[m++].id = i;
    qsort(c, (size_t)m, sizeof *c, cmp_asc);
    float cum = small_mass;
    for (int r = 0; r < m; r++) {
        cum += expf(c[r].v);
        if (!(cum > thr))
            lp[c[r].id] = -INFINITY;
    }
    free(c);
}

void lm_samp_min_p(float *lp, int V, float min_p, int min_keep, int32_t *idx) {
    float top = -INFINITY;
    for (int i = 0; i < V; i++)
        if (lp[i] > top)
            top = lp[i];
    float thr = top + (float)log((double)min_p);
    int n_keep = min_keep > 1 ? (min_keep < V ? min_keep : V) : 0;
    if (n_keep) {
        /* the n_keep most likely survive: those not ranked after the n_keep-th */
        select_top(lp, V, n_keep, idx);
        float bv = key(lp, idx[n_keep - 1]);
        int32_t bi = idx[n_keep - 1];
        for (int32_t i = 0; i < V; i++)
            if (lp[i] < thr && before(bv, bi, key(lp, i), i))
                lp[i] = -INFINITY;
        return;
    }
    for (int i = 0; i < V; i++)
        if (lp[i] < thr)
            lp[i] = -INFINITY;
}

void lm_samp_xtc(float *lp, int V, float probability, float threshold, const int32_t *special, int n_special,
                 double u) {
    float mx;
    double sum;
    if (u > probability || !lm_max_expsum(lp, V, &mx, &sum))
        return;
    /* the smallest probability above the threshold */
    float min_above = INFINITY;
    for (int i = 0; i < V; i++) {
        float p = (float)(exp((double)lp[i] - mx) / sum);
        if (p > threshold && p < min_above)
            min_above = p;
    }
    if (min_above == INFINITY)
        return;
    for (int i = 0; i < V; i++) {
        float p = (float)(exp((double)lp[i] - mx) / sum);
        if (!(p > min_above))
            continue;
        int exempt = 0;
        for (int k = 0; k < n_special && !exempt; k++)
            exempt = special[k] == i;
        if (!exempt)
            lp[i] = -INFINITY;
    }
}

void lm_samp_top_k(float *lp, int V, int k, int32_t *idx) {
    if (k <= 0 || k >= V)
        return;
    select_top(lp, V, k, idx);
    /* the k-th ranked (value, id) is the boundary */
    float bv = key(lp, idx[k - 1]);
    int32_t bi = idx[k - 1];
    for (int32_t i = 0; i < V; i++)
        if (before(bv, bi, key(lp, i), i))
            lp[i] = -INFINITY;
}

int32_t lm_samp_argmax(const float *x, int V) {
    int32_t b = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

int32_t lm_samp_categorical(const float *lp, int V, float temp, double u) {
    double inv = 1.0 / temp, mx = -INFINITY;
    for (int i = 0; i < V; i++)
        if (lp[i] * inv > mx)
            mx = lp[i] * inv;
    if (mx == -INFINITY)
        return lm_samp_argmax(lp, V);
    double sum = 0;
    for (int i = 0; i < V; i++)
        sum += exp(lp[i] * inv - mx);
    double target = u * sum, cum = 0;
    int32_t last = -1;
    for (int i = 0; i < V; i++) {
        double w = exp(lp[i] * inv - mx);
        if (w <= 0)
            continue;
        cum += w;
        last = i;
        if (cum > target)
            return i;
    }
    return last >= 0 ? last : lm_samp_argmax(lp, V);
}

/* --- the whole step ---------------------------------------------------------------------------- */

#define RANGE_F(field, lo, hi)                                                                      \
    if (!(p->field >= (lo) && p->field <= (hi)))                                                    \
    return lm_err(LM_ERR_INVALID_ARG, "%s must be in [%g, %g] (got %g)", #field, (double)(lo), (double)(hi), \
                  (double)p->field)

lm_status lm_sampler_validate(const lm_gen_params *p, int V) {
    RANGE_F(temp, 0.0, 1e6);
    RANGE_F(top_p, 0.0, 1.0);
    RANGE_F(min_p, 0.0, 1.0);
    RANGE_F(xtc_probability, 0.0, 1.0);
    RANGE_F(xtc_threshold, 0.0, 0.5);
    RANGE_F(repetition_penalty, 0.0, 1e6);
    if (!isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty))
        return lm_err(LM_ERR_INVALID_ARG, "presence_penalty and frequency_penalty must be finite numbers");
    if (p->min_tokens_to_keep < 1)
        return lm_err(LM_ERR_INVALID_ARG, "min_tokens_to_keep must be >= 1 (got %d)", p->min_tokens_to_keep);
    if (p->top_k < 0 || p->top_k >= V)
        return lm_err(LM_ERR_INVALID_ARG, "top_k must be in [0, %d] (0: off; got %d)", V - 1, p->top_k);
    if (p->repetition_context_size < 1 || p->presence_context_size < 1 || p->frequency_context_size < 1)
        return lm_err(LM_ERR_INVALID_ARG, "penalty context sizes must be >= 1 (got %d, %d, %d)",
                      p->repetition_context_size, p->presence_context_size, p->frequency_context_size);
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && !p->logit_bias))
        return lm_err(LM_ERR_INVALID_ARG, "logit_bias: %d entries but no array", p->n_logit_bias);
    for (int i = 0; i < p->n_logit_bias; i++) {
        if (p->logit_bias[i].token < 0 || p->logit_bias[i].token >= V)
            return lm_err(LM_ERR_INVALID_ARG, "logit_bias[%d]: token %d is outside the vocabulary [0, %d)", i,
                          (int)p->logit_bias[i].token, V);
        if (isnan(p->logit_bias[i].bias))
            return lm_err(LM_ERR_INVALID_ARG, "logit_bias[%d]: the bias is NaN", i);
    }
    return LM_OK;
}
#undef RANGE_F

lm_status lm_sampler_init(lm_sampler *s, int V, const lm_gen_params *p, const int32_t *xtc_special,
                          int n_xtc_special) {
    memset(s, 0, sizeof *s);
    LM_TRY(lm_sampler_validate(p, V));
    s->V = V;
    s->p = *p;
    s->xtc_special = xtc_special;
    s->n_xtc_special = n_xtc_special;
    uint64_t seed = p->seed >= 0 ? (uint64_t)p->seed : (uint64_t)(lm_time_s() * 1e9) ^ (uint64_t)(uintptr_t)s;
    lm_rng_seed(&s->rng, seed);
    s->work = malloc((size_t)V * sizeof *s->work);
    s->idx = malloc((size_t)V * sizeof *s->idx);
    s->seen = calloc((size_t)V, 1);
    if (!s->work || !s->idx || !s->seen) {
        lm_sampler_free(s);
        return lm_err(LM_ERR_NOMEM, "sampler: out of memory (vocabulary of %d)", V);
    }
    return LM_OK;
}

void lm_sampler_free(lm_sampler *s) {
    free(s->work);
    free(s->idx);
    free(s->seen);
    free(s->count);
    free(s->ops);
    free(s->ops_tmp);
    s->work = NULL;
    s->idx = NULL;
    s->seen = NULL;
    s->count = NULL;
    s->ops = NULL;
    s->ops_tmp = NULL;
    s->ops_cap = 0;
}

/* temp 0 skips the sampler chain (top-p, min-p, XTC, top-k: no draw either), so the step is
 * log_softmax + argmax whenever no processor changes a logit: no bias entries (even a bias of 0
 * turns -0.0 into +0.0), no presence or frequency penalty, and a repetition penalty that is off
 * or 1 (x * 1 and x / 1 are exact). */
static int no_processor(const lm_gen_params *p) {
    return p->n_logit_bias == 0 && (p->repetition_penalty == 0 || p->repetition_penalty == 1) &&
           p->presence_penalty == 0 && p->frequency_penalty == 0;
}

int lm_sampler_has_processors(const lm_sampler *s) { return !no_processor(&s->p); }

int lm_sampler_chain_args(const lm_sampler *s, lm_sample_args *a) {
    const lm_gen_params *p = &s->p;
    if (!(p->temp > 0) || p->xtc_probability > 0)
        return 0;
    *a = (lm_sample_args){.temp = p->temp, .top_p = p->top_p, .min_p = p->min_p,
                          .min_keep = p->min_tokens_to_keep, .top_k = p->top_k, .u = 0};
    return 1;
}

/* An op and its place in mlx-lm's order, for a stable sort by token. */
typedef struct seq_op {
    lm_logit_op op;
    int seq;
} seq_op;

static int seq_op_cmp(const void *a, const void *b) {
    const seq_op *x = a, *y = b;
    if (x->op.token != y->op.token)
        return x->op.token < y->op.token ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static int window_from(int n_hist, int ctx) { return n_hist > ctx ? n_hist - ctx : 0; }

int lm_sampler_logit_ops(lm_sampler *s, const int32_t *hist, int n_hist, const lm_logit_op **ops) {
    const lm_gen_params *p = &s->p;
    int V = s->V, rep = p->repetition_penalty != 0 && p->repetition_penalty != 1;
    size_t most = (size_t)p->n_logit_bias; /* bias entries, then at most one change per window entry */
    most += (size_t)(n_hist - window_from(n_hist, p->repetition_context_size));
    most += (size_t)(n_hist - window_from(n_hist, p->presence_context_size));
    most += (size_t)(n_hist - window_from(n_hist, p->frequency_context_size));
    if (most > (size_t)s->ops_cap) {
        lm_logit_op *o = realloc(s->ops, most * sizeof *o);
        if (o)
            s->ops = o;
        seq_op *t = realloc(s->ops_tmp, most * sizeof *t);
        if (t)
            s->ops_tmp = t;
        if (!o || !t) {
            lm_err(LM_ERR_NOMEM, "sampler: out of memory (%zu logit changes)", most);
            return -1;
        }
        s->ops_cap = (int)most;
    }
    if (p->frequency_penalty != 0 && !s->count && !(s->count = calloc((size_t)V, sizeof *s->count))) {
        lm_err(LM_ERR_NOMEM, "sampler: out of memory (vocabulary of %d)", V);
        return -1;
    }
    seq_op *t = s->ops_tmp;
    int n = 0;
#define PUSH(tok, k, c, val) (t[n] = (seq_op){{(tok), (k), (c), (val)}, n}, n++)
    for (int i = 0; i < p->n_logit_bias; i++)
        if (p->logit_bias[i].token >= 0 && p->logit_bias[i].token < V)
            PUSH(p->logit_bias[i].token, LM_LOGIT_ADD, 1, p->logit_bias[i].bias);
    /* repetition and presence: once per distinct token of the window (mlx-lm's indexed
     * assignments logits[:, tokens] = f(logits[:, tokens]) and logits[:, tokens] -= penalty) */
    for (int pass = 0; pass < 2; pass++) {
        float pen = pass ? p->presence_penalty : p->repetition_penalty;
        if (pass ? pen == 0 : !rep)
            continue;
        int from = window_from(n_hist, pass ? p->presence_context_size : p->repetition_context_size);
        for (int i = from; i < n_hist; i++)
            if (hist[i] >= 0 && hist[i] < V && !s->seen[hist[i]]) {
                s->seen[hist[i]] = 1;
                PUSH(hist[i], pass ? LM_LOGIT_SUB : LM_LOGIT_REP, 1, pen);
            }
        for (int i = from; i < n_hist; i++)
            if (hist[i] >= 0 && hist[i] < V)
                s->seen[hist[i]] = 0;
    }
    if (p->frequency_penalty != 0) { /* once per occurrence (mlx-lm's scatter-add .at[].subtract) */
        int from = window_from(n_hist, p->frequency_context_size);
        for (int i = from; i < n_hist; i++)
            if (hist[i] >= 0 && hist[i] < V)
                s->count[hist[i]]++;
        for (int i = from; i < n_hist; i++)
            if (hist[i] >= 0 && hist[i] < V && s->count[hist[i]]) {
                PUSH(hist[i], LM_LOGIT_SUB, s->count[hist[i]], p->frequency_penalty);
                s->count[hist[i]] = 0;
            }
    }
#undef PUSH
    if (n > 1) /* (with no room yet, t is NULL) */
        qsort(t, (size_t)n, sizeof *t, seq_op_cmp);
    for (int i = 0; i < n; i++)
        s->ops[i] = t[i].op;
    *ops = s->ops;
    return n;
}

int32_t lm_sampler_sample(lm_sampler *s, const float *logits, const int32_t *hist, int n_hist, float *logprob) {
    const lm_gen_params *p = &s->p;
    int V = s->V;
    float *x = s->work;
    memcpy(x, logits, (size_t)V * sizeof *x);
    /* processors (make_logits_processors order) */
    const lm_logit_op *ops = NULL;
    int n_ops = lm_sampler_has_processors(s) ? lm_sampler_logit_ops(s, hist, n_hist, &ops) : 0;
    if (n_ops < 0)
        return -1;
    lm_logit_ops_apply(x, ops, n_ops);
    lm_log_softmax(x, V);
    int32_t tok;
    if (p->temp == 0) {
        tok = lm_samp_argmax(x, V);
        if (logprob)
            *logprob = x[tok];
        return tok;
    }
    /* sampler chain (make_sampler order); it only masks, so the chosen token keeps its logprob */
    float *kept = x;
    if (p->top_p > 0 && p->top_p < 1)
        lm_samp_top_p(kept, V, p->top_p, s->idx);
    if (p->min_p != 0)
        lm_samp_min_p(kept, V, p->min_p, p->min_tokens_to_keep, s->idx);
    if (p->xtc_probability > 0)
        lm_samp_xtc(kept, V, p->xtc_probability, p->xtc_threshold, s->xtc_special, s->n_xtc_special,
                    lm_rng_uniform(&s->rng));
    if (p->top_k > 0)
        lm_samp_top_k(kept, V, p->top_k, s->idx);
    tok = lm_samp_categorical(kept, V, p->temp, lm_rng_uniform(&s->rng));
    if (logprob)
        *logprob = x[tok];
    return tok;
}
