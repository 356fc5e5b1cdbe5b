/* Weights for a device backend: every file mapping and every f32 tensor converted at load is
 * copied once, as stored (packed formats stay packed), and each weight pointer of the model is
 * moved to the same offset inside its region's copy. Host backends (no upload_weights slot)
 * read the mapping in place and nothing here runs. */
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

static void move_vec(regions *R, const float **p) { *p = move_ptr(R, *p); }

static void move_linear(regions *R, lm_linear *w) {
    w->w = move_ptr(R, w->w);
    w->scales = move_ptr(R, w->scales);
    w->biases = move_ptr(R, w->biases);
    w->bias = move_ptr(R, w->bias);
}

static void move_layer(regions *R, lm_layer *L) {
    lm_linear *lin[] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down};
    for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++)
        move_linear(R, lin[i]);
    const float **vec[] = {&L->attn_norm, &L->ffn_norm, &L->post_attn_norm, &L->post_ffn_norm,
                           &L->q_norm,    &L->k_norm,   &L->sinks};
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++)
        move_vec(R, vec[i]);
    if (L->moe) {
        lm_moe *e = L->moe;
        move_linear(R, &e->router);
        for (int i = 0; i < e->n_experts; i++) {
            move_linear(R, &e->gate[i]);
            move_linear(R, &e->up[i]);
            move_linear(R, &e->down[i]);
        }
    }
    if (L->altup) {
        lm_altup_layer *A = L->altup;
        lm_linear *al[] = {&A->pred, &A->corr, &A->router, &A->laurel_left, &A->laurel_right, &A->pli_gate,
                           &A->pli_proj};
        for (size_t i = 0; i < sizeof al / sizeof al[0]; i++)
            move_linear(R, al[i]);
        const float **av[] = {&A->correct_scale, &A->router_norm, &A->laurel_norm, &A->pli_norm};
        for (size_t i = 0; i < sizeof av / sizeof av[0]; i++)
            move_vec(R, av[i]);
        A->pred_coefs = A->corr_coefs = NULL; /* host copies: read through pred/corr only */
    }
}

static void move_model(regions *R, lm_model *m) {
    move_linear(R, &m->embed);
    move_linear(R, &m->head);
    move_vec(R, &m->final_norm);
    for (int l = 0; l < m->cfg.n_layers; l++)
        move_layer(R, &m->layers[l]);
    if (m->altup_proj) {
        for (int i = 0; i < m->cfg.altup_num_inputs - 1; i++) {
            move_linear(R, &m->altup_proj[i]);
            move_linear(R, &m->altup_unembed[i]);
        }
        move_linear(R, &m->ple_embed);
        move_linear(R, &m->ple_proj);
        move_vec(R, &m->ple_norm);
    }
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
    move_model(&R, m);
    free(R.r);
    if (R.missed)
        return lm_err(LM_ERR_INTERNAL, "%s: a weight lies outside the checkpoint's files", m->dir);
    return be->ops->status ? be->ops->status(be) : LM_OK;
}

void lm_model_release_device(lm_model *m) {
    for (int i = 0; i < m->n_dev_regions; i++)
        m->be->ops->release(m->be, m->dev_regions[i]);
    free(m->dev_regions);
    m->dev_regions = NULL;
    m->n_dev_regions = 0;
}
