/* Weights for a device backend: every file mapping and every f32 tensor converted at load is
 * copied once, as stored (packed formats stay packed), and each weight pointer of the model is
 * moved to the same offset inside its region's copy; then a backend with f16 tensor-core paths may
 * store dense bf16 weights as f16 (same bytes; weights_to_f16). Host backends (no upload_weights
 * slot) read the mapping in place and nothing here runs. */
#include <stdlib.h>

#include "models/model.h"

typedef struct region {
    const char *host;
    size_t bytes;
    char *dev;
} region;

typedef struct regions {
    region *r;
    int n;
    int missed; /* a pointer outside every region (a bug in the model's tables) */
} regions;

static const void *move_ptr(regions *R, const void *p) {
    if (!p)
        return NULL;
    const char *c = p;
    for (int i = 0; i < R->n; i++)
        if (c >= R->r[i].host && c < R->r[i].host + R->r[i].bytes)
            return R->r[i].dev + (c - R->r[i].host);
    R->missed = 1;
    return p;
}

/* Every weight of the model: V->lin on each linear, V->vec (when given) on each f32 vector. */
typedef struct visitor {
    void (*lin)(void *ctx, lm_linear *w);
    void (*vec)(void *ctx, const float **v);
    void *ctx;
} visitor;

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void visit_lins(const visitor *V, lm_linear *const *w, size_t n) {
    for (size_t i = 0; i < n; i++)
        V->lin(V->ctx, w[i]);
}

static void visit_vecs(const visitor *V, const float **const *v, size_t n) {
    for (size_t i = 0; V->vec && i < n; i++)
        V->vec(V->ctx, v[i]);
}

static void visit_layer(const visitor *V, lm_layer *L) {
    lm_linear *lin[] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down};
    visit_lins(V, lin, COUNT(lin));
    const float **vec[] = {&L->attn_norm, &L->ffn_norm, &L->post_attn_norm, &L->post_ffn_norm,
                           &L->q_norm,    &L->k_norm,   &L->sinks};
    visit_vecs(V, vec, COUNT(vec));
    if (L->moe) {
        lm_moe *e = L->moe;
        V->lin(V->ctx, &e->router);
        for (int i = 0; i < e->n_experts; i++) {
            lm_linear *ex[] = {&e->gate[i], &e->up[i], &e->down[i]};
            visit_lins(V, ex, COUNT(ex));
        }
    }
    if (L->altup) {
        lm_altup_layer *A = L->altup;
        lm_linear *al[] = {&A->pred, &A->corr, &A->router, &A->laurel_left, &A->laurel_right, &A->pli_gate,
                           &A->pli_proj};
        visit_lins(V, al, COUNT(al));
        const float **av[] = {&A->correct_scale, &A->router_norm, &A->laurel_norm, &A->pli_norm};
        visit_vecs(V, av, COUNT(av));
    }
}

static void visit_model(const visitor *V, lm_model *m) {
    lm_linear *top[] = {&m->embed, &m->head};
    visit_lins(V, top, COUNT(top));
    const float **fn[] = {&m->final_norm};
    visit_vecs(V, fn, COUNT(fn));
    for (int l = 0; l < m->cfg.n_layers; l++)
        visit_layer(V, &m->layers[l]);
    if (m->altup_proj) {
        for (int i = 0; i < m->cfg.altup_num_inputs - 1; i++) {
            lm_linear *ap[] = {&m->altup_proj[i], &m->altup_unembed[i]};
            visit_lins(V, ap, COUNT(ap));
        }
        lm_linear *ple[] = {&m->ple_embed, &m->ple_proj};
        visit_lins(V, ple, COUNT(ple));
        const float **pn[] = {&m->ple_norm};
        visit_vecs(V, pn, COUNT(pn));
    }
}

static void move_linear(void *ctx, lm_linear *w) {
    regions *R = ctx;
    w->w = move_ptr(R, w->w);
    w->scales = move_ptr(R, w->scales);
    w->biases = move_ptr(R, w->biases);
    w->bias = move_ptr(R, w->bias);
}

static void move_vec(void *ctx, const float **p) { *p = move_ptr(ctx, *p); }

/* --- bf16 weights stored as f16 on the device (backend slot weights_to_f16) ----------------------
 * A weight's bytes are converted only when no other linear reads an overlapping but different
 * range of them (an interleaved or strided view, say); linears that read exactly the same rows
 * (a tied embedding and head) are converted once and all switch to f16. */

typedef struct wspan {
    lm_linear *w;
    uintptr_t a, b; /* bytes [a, b) of w->w */
    int cand;       /* dense bf16 with contiguous rows */
} wspan;

typedef struct wspans {
    wspan *s;
    size_t n, cap;
    int nomem;
} wspans;

static void add_span(void *ctx, lm_linear *w) {
    wspans *S = ctx;
    if (!w->w || w->out <= 0 || S->nomem)
        return;
    if (S->n == S->cap) {
        size_t cap = S->cap ? 2 * S->cap : 256;
        wspan *p = realloc(S->s, cap * sizeof *p);
        if (!p) {
            S->nomem = 1;
            return;
        }
        S->s = p;
        S->cap = cap;
    }
    uintptr_t a = (uintptr_t)w->w;
    S->s[S->n++] = (wspan){w, a, a + (uintptr_t)w->out * w->w_row_bytes,
                           w->kind == LM_W_DENSE && w->dtype == LM_DT_BF16 && w->in_step <= 1 &&
                               w->w_row_bytes == (size_t)w->in * 2};
}

static int span_cmp(const void *x, const void *y) {
    const wspan *p = x, *q = y;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    return p->b < q->b ? -1 : p->b > q->b;
}

/* Converting is an optimisation: without host memory for the bookkeeping, weights stay as stored. */
static void to_f16(lm_model *m) {
    lm_backend *be = m->be;
    wspans S = {0};
    visitor V = {add_span, NULL, &S};
    visit_model(&V, m);
    uint8_t *dirty = S.nomem || !S.n ? NULL : calloc(S.n, 1);
    size_t *first = dirty ? malloc(S.n * sizeof *first) : NULL;
    if (first) {
        qsort(S.s, S.n, sizeof *S.s, span_cmp);
        /* groups of identical spans; a group is clean when all its members are candidates and no
         * other group overlaps it. Sorted by start, a group overlaps an earlier one iff it starts
         * before the furthest end so far, and then the group holding that end overlaps it too. */
        size_t n_groups = 0, holder = 0;
        uintptr_t max_end = 0;
        for (size_t i = 0; i < S.n; n_groups++) {
            size_t j = i;
            first[n_groups] = i;
            for (; j < S.n && S.s[j].a == S.s[i].a && S.s[j].b == S.s[i].b; j++)
                if (!S.s[j].cand)
                    dirty[n_groups] = 1;
            if (n_groups > 0 && S.s[i].a < max_end)
                dirty[n_groups] = dirty[holder] = 1;
            if (S.s[i].b > max_end)
                max_end = S.s[i].b, holder = n_groups;
            i = j;
        }
        for (size_t g = 0; g < n_groups; g++) {
            size_t i = first[g], end = g + 1 < n_groups ? first[g + 1] : S.n;
            if (!dirty[g] && be->ops->weights_to_f16(be, (void *)S.s[i].a, (S.s[i].b - S.s[i].a) / 2))
                for (; i < end; i++)
                    S.s[i].w->dtype = LM_DT_F16;
        }
    }
    free(dirty);
    free(first);
    free(S.s);
}

lm_status lm_model_upload(lm_model *m) {
    lm_backend *be = m->be;
    if (!be->ops->upload_weights)
        return LM_OK;
    int n = m->st->n_files + m->n_owned;
    regions R = {calloc((size_t)n + 1, sizeof(region)), 0, 0};
    m->dev_regions = calloc((size_t)n + 1, sizeof(void *));
    if (!R.r || !m->dev_regions) {
        free(R.r);
        return lm_err(LM_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        region *r = &R.r[R.n];
        if (i < m->st->n_files) { /* the data section only: its start (8 + header length, a multiple
                                      of 8) lands on the allocation's 256-byte alignment */
            const lm_st_file *f = &m->st->files[i];
            r->host = (const char *)f->map + f->data;
            r->bytes = f->data < f->size ? f->size - f->data : 0;
        } else {
            r->host = (const char *)m->owned[i - m->st->n_files];
            r->bytes = m->owned_bytes[i - m->st->n_files];
        }
        if (!r->host || !r->bytes)
            continue;
        r->dev = be->ops->upload_weights(be, r->host, r->bytes);
        if (!r->dev) {
            size_t bytes = r->bytes;
            free(R.r);
            lm_status st = be->ops->status ? be->ops->status(be) : LM_OK;
            return st != LM_OK ? lm_err_prefix(st, "%s: uploading the weights", m->dir)
                               : lm_err(LM_ERR_DEVICE, "%s: out of device memory for the weights (%zu bytes)",
                                        m->dir, bytes);
        }
        m->dev_regions[m->n_dev_regions++] = r->dev;
        R.n++;
    }
    visitor V = {move_linear, move_vec, &R};
    visit_model(&V, m);
    free(R.r);
    if (R.missed)
        return lm_err(LM_ERR_INTERNAL, "%s: a weight lies outside the checkpoint's files", m->dir);
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (m->layers[l].altup) /* host copies: read through pred/corr only */
            m->layers[l].altup->pred_coefs = m->layers[l].altup->corr_coefs = NULL;
    if (be->ops->weights_to_f16)
        to_f16(m);
    return be->ops->status ? be->ops->status(be) : LM_OK;
}

void lm_model_release_device(lm_model *m) {
    for (int i = 0; i < m->n_dev_regions; i++)
        m->be->ops->release(m->be, m->dev_regions[i]);
    free(m->dev_regions);
    m->dev_regions = NULL;
    m->n_dev_regions = 0;
}
