/* lm_convert planning: which output tensors a checkpoint becomes (mlx-lm's rules: what
 * `quantize_model`'s class predicate quantizes, the model quant_predicates, the mixed recipes,
 * the MoE `sanitize` stacking), and the rewritten config.json. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "quant/convert_impl.h"

static int is_float_dt(lm_dtype d) { return d == LM_DT_F32 || d == LM_DT_F16 || d == LM_DT_BF16; }

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static char *str_cat(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *s = malloc(na + nb + 1);
    if (s) {
        memcpy(s, a, na);
        memcpy(s + na, b, nb + 1);
    }
    return s;
}

static int tensor_index(const lm_st_set *set, const lm_st_tensor *t) { return (int)(t - set->tensors); }

/* --- the plan ------------------------------------------------------------------------------- */

static cv_module *add_module(cv_plan *p) {
    if (p->n_mods == p->cap_mods) {
        int cap = p->cap_mods ? 2 * p->cap_mods : 64;
        cv_module *m = realloc(p->mods, (size_t)cap * sizeof *m);
        if (!m)
            return NULL;
        p->mods = m;
        p->cap_mods = cap;
    }
    cv_module *m = &p->mods[p->n_mods++];
    memset(m, 0, sizeof *m);
    return m;
}

void cv_plan_free(cv_plan *plan) {
    for (int i = 0; i < plan->n_mods; i++) {
        free(plan->mods[i].name);
        free(plan->mods[i].path);
        free(plan->mods[i].parts);
    }
    free(plan->mods);
    memset(plan, 0, sizeof *plan);
}

/* A module reading rows of `t` (contiguous) or of several stacked parts. */
static lm_status set_parts(cv_module *m, const uint8_t *const *parts, int n_parts, int64_t part_rows) {
    m->parts = malloc((size_t)n_parts * sizeof *m->parts);
    if (!m->parts)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    memcpy(m->parts, parts, (size_t)n_parts * sizeof *m->parts);
    m->n_parts = n_parts;
    m->part_rows = part_rows;
    return LM_OK;
}

static void set_shape(cv_module *m, int ndim, const int64_t *shape) {
    m->ndim = ndim;
    m->rows = 1;
    for (int d = 0; d < ndim; d++) {
        m->shape[d] = shape[d];
        if (d < ndim - 1)
            m->rows *= shape[d];
    }
    m->cols = ndim > 0 ? shape[ndim - 1] : 1;
    if (ndim == 0)
        m->rows = 1;
}

/* --- which modules are quantized, and how -------------------------------------------------- */

/* mlx-lm's mixed recipes (convert.py mixed_quant_predicate_builder): the layer index is the
 * path component at `layer_loc` (0 when absent or not a number). */
static int recipe_bits(const cv_opts *o, const char *path, int layer_loc, int n_layers) {
    int index = 0, part = 0;
    const char *s = path;
    while (part < layer_loc && (s = strchr(s, '.')) != NULL) {
        s++;
        part++;
    }
    if (s && part == layer_loc && isdigit((unsigned char)*s))
        index = atoi(s);
    int l8 = n_layers / 8, d = index - l8;
    int more = index < l8 || index >= 7 * n_layers / 8 || ((d % 3) + 3) % 3 == 2;
    if ((strstr(path, "v_proj") || strstr(path, "v_a_proj") || strstr(path, "v_b_proj")) && more)
        return o->recipe_high;
    if (strstr(path, "down_proj") && more)
        return o->recipe_high;
    if (strstr(path, "lm_head"))
        return o->recipe_high;
    return o->recipe_low;
}

/* Model-specific quant predicates of mlx-lm (models/<type>.py quant_predicate). */
static const struct {
    const char *model_type, *suffix;
} QUANT_8BIT_ROUTERS[] = {
    {"qwen3_moe", "mlp.gate"},
    {"gpt_oss", "router"},
};

typedef struct quant_ctx {
    const cv_opts *o;
    const lm_config *cfg;
    int layer_loc;
} quant_ctx;

/* Decide how a float weight module is written: quantized (op, bits, group, override) or cast. */
static void choose_quant(const quant_ctx *q, cv_module *m) {
    const cv_opts *o = q->o;
    m->op = CV_CAST;
    if (!o->quantize || (m->ndim != 2 && m->ndim != 3) || !m->path || m->cols % o->group != 0)
        return; /* mlx-lm: only modules with to_quantized whose input size divides by the group */
    m->op = o->mxfp4 ? CV_MXFP4 : CV_AFFINE;
    m->bits = o->bits;
    m->group = o->group;
    if (o->recipe_low) {
        m->bits = recipe_bits(o, m->path, q->layer_loc, q->cfg->n_layers);
        m->override = 1;
        return;
    }
    for (size_t i = 0; i < sizeof QUANT_8BIT_ROUTERS / sizeof QUANT_8BIT_ROUTERS[0]; i++)
        if (strcmp(q->cfg->model_type, QUANT_8BIT_ROUTERS[i].model_type) == 0 &&
            ends_with(m->path, QUANT_8BIT_ROUTERS[i].suffix)) {
            if (m->cols % 64 != 0) {
                m->op = CV_CAST;
                return;
            }
            m->op = CV_AFFINE; /* mlx's to_quantized default mode */
            m->bits = 8;
            m->group = 64;
            m->override = 1;
        }
}

/* The dtype a float tensor is written in. */
static lm_dtype out_dtype(const cv_opts *o, lm_dtype src) { return o->dtype != LM_DT_COUNT ? o->dtype : src; }

/* A float module over one contiguous tensor. */
static lm_status add_float(cv_plan *p, const quant_ctx *q, const lm_st_tensor *t, const char *name) {
    cv_module *m = add_module(p);
    if (!m)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    m->name = lm_strdup(name);
    if (!m->name)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    if (ends_with(name, ".weight")) {
        size_t n = strlen(name) - strlen(".weight");
        m->path = malloc(n + 1);
        if (!m->path)
            return lm_err(LM_ERR_NOMEM, "out of memory");
        memcpy(m->path, name, n);
        m->path[n] = 0;
    }
    m->src = t;
    m->src_dt = t->dtype;
    m->out_dt = out_dtype(q->o, t->dtype);
    set_shape(m, t->ndim, t->shape);
    m->row_step = (size_t)m->cols;
    m->col_step = 1;
    const uint8_t *base = t->data;
    LM_TRY(set_parts(m, &base, 1, m->rows));
    choose_quant(q, m);
    return LM_OK;
}

/* --- MoE experts: per-expert weights stacked into switch_mlp (mlx-lm sanitize) ---------------- */

/* "<prefix>experts.<e>.<proj>.weight" -> prefix length and proj; 0 when the name is not one. */
static int parse_expert(const char *name, size_t *prefix_len, const char **proj, size_t *proj_len) {
    const char *x = strstr(name, "experts.");
    if (!x || !ends_with(name, ".weight"))
        return 0;
    const char *d = x + strlen("experts.");
    if (!isdigit((unsigned char)*d))
        return 0;
    while (isdigit((unsigned char)*d))
        d++;
    if (*d != '.')
        return 0;
    const char *pe = strchr(d + 1, '.');
    if (!pe || strcmp(pe, ".weight") != 0)
        return 0;
    *prefix_len = (size_t)(x - name);
    *proj = d + 1;
    *proj_len = (size_t)(pe - (d + 1));
    return 1;
}

/* Stack experts 0..E-1 of the module `first` names into one [E, out, in] module. */
static lm_status add_stacked(cv_plan *p, const quant_ctx *q, const lm_st_set *set, const lm_st_tensor *first,
                             uint8_t *used) {
    size_t pl, jl;
    const char *proj;
    parse_expert(first->name, &pl, &proj, &jl);
    char name[1024];
    int E = 0;
    const lm_st_tensor *t;
    for (;; E++) {
        snprintf(name, sizeof name, "%.*sexperts.%d.%.*s.weight", (int)pl, first->name, E, (int)jl, proj);
        t = lm_st_find(set, name);
        if (!t)
            break;
        if (t->ndim != 2 || t->dtype != first->dtype || t->shape[0] != first->shape[0] ||
            t->shape[1] != first->shape[1])
            return lm_err(LM_ERR_SHAPE, "expert weight '%s' differs in shape or dtype from '%s'", name, first->name);
    }
    if (E == 0 || E > 1 << 20)
        return lm_err(LM_ERR_SHAPE, "'%s': experts must be numbered from 0", first->name);
    const uint8_t **parts = malloc((size_t)E * sizeof *parts);
    if (!parts)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    for (int e = 0; e < E; e++) {
        snprintf(name, sizeof name, "%.*sexperts.%d.%.*s.weight", (int)pl, first->name, e, (int)jl, proj);
        t = lm_st_find(set, name);
        parts[e] = t->data;
        used[tensor_index(set, t)] = 1;
    }
    cv_module *m = add_module(p);
    lm_status st = LM_OK;
    if (!m) {
        free(parts);
        return lm_err(LM_ERR_NOMEM, "out of memory");
    }
    snprintf(name, sizeof name, "%.*sswitch_mlp.%.*s", (int)pl, first->name, (int)jl, proj);
    m->path = lm_strdup(name);
    m->name = str_cat(name, ".weight");
    m->src = first;
    m->src_dt = first->dtype;
    m->out_dt = out_dtype(q->o, first->dtype);
    int64_t shape[3] = {E, first->shape[0], first->shape[1]};
    set_shape(m, 3, shape);
    m->row_step = (size_t)m->cols;
    m->col_step = 1;
    if (!m->path || !m->name)
        st = lm_err(LM_ERR_NOMEM, "out of memory");
    else
        st = set_parts(m, parts, E, first->shape[0]);
    free(parts);
    if (st == LM_OK)
        choose_quant(q, m);
    return st;
}

/* GPT-OSS (Hugging Face): "mlp.experts.gate_up_proj" [E, H, 2I] (gate = even columns),
 * "down_proj" [E, I, H] and their "_bias" [E, 2I], [E, H] become MLX's
 * "mlp.experts.{gate,up,down}_proj.{weight,bias}" [E, out, in] / [E, out] (gpt_oss.py sanitize). */
static lm_status add_view(cv_plan *p, const quant_ctx *q, const lm_st_tensor *t, const char *name, int ndim,
                          const int64_t *shape, size_t first_elem, size_t row_step, size_t col_step,
                          size_t part_elems) {
    cv_module *m = add_module(p);
    if (!m)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    m->name = lm_strdup(name);
    if (!m->name)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    if (ends_with(name, ".weight")) {
        m->path = str_cat(name, "");
        if (!m->path)
            return lm_err(LM_ERR_NOMEM, "out of memory");
        m->path[strlen(name) - strlen(".weight")] = 0;
    }
    m->src = t;
    m->src_dt = t->dtype;
    m->out_dt = out_dtype(q->o, t->dtype);
    set_shape(m, ndim, shape);
    m->row_step = row_step;
    m->col_step = col_step;
    int64_t E = t->shape[0];
    const uint8_t **parts = malloc((size_t)E * sizeof *parts);
    if (!parts)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    size_t es = LM_DTYPES[t->dtype].size;
    for (int64_t e = 0; e < E; e++)
        parts[e] = (const uint8_t *)t->data + ((size_t)e * part_elems + first_elem) * es;
    lm_status st = set_parts(m, parts, (int)E, m->rows / E);
    free(parts);
    if (st == LM_OK)
        choose_quant(q, m);
    return st;
}

static lm_status add_gpt_oss_experts(cv_plan *p, const quant_ctx *q, const lm_st_set *set, const lm_st_tensor *t,
                                     uint8_t *used) {
    size_t n = strlen(t->name);
    char base[1024], name[1100];
    int bias = ends_with(t->name, "_bias");
    size_t stem = n - (bias ? strlen("_bias") : 0);
    int gu = stem >= strlen("gate_up_proj") && memcmp(t->name + stem - strlen("gate_up_proj"), "gate_up_proj", 12) == 0;
    size_t pre = stem - strlen(gu ? "gate_up_proj" : "down_proj");
    snprintf(base, sizeof base, "%.*s", (int)pre, t->name);
    int64_t E = t->shape[0];
    used[tensor_index(set, t)] = 1;
    if (bias) { /* [E, 2I] interleaved, or [E, H] */
        if (t->ndim != 2)
            return lm_err(LM_ERR_SHAPE, "'%s': expected [experts, size]", t->name);
        int64_t W = t->shape[1];
        if (!gu) {
            int64_t sh[2] = {E, W};
            snprintf(name, sizeof name, "%sdown_proj.bias", base);
            return add_view(p, q, t, name, 2, sh, 0, (size_t)W, 1, (size_t)W);
        }
        int64_t sh[2] = {E, W / 2};
        for (int k = 0; k < 2; k++) {
            snprintf(name, sizeof name, "%s%s_proj.bias", base, k ? "up" : "gate");
            /* one row per expert; element c of the gate bias is column 2c (+1 for up) */
            LM_TRY(add_view(p, q, t, name, 2, sh, (size_t)k, 0, 2, (size_t)W));
        }
        return LM_OK;
    }
    if (t->ndim != 3)
        return lm_err(LM_ERR_SHAPE, "'%s': expected [experts, in, out]", t->name);
    int64_t in = t->shape[1], W = t->shape[2];
    if (!gu) { /* [E, I, H] -> [E, H, I]: row r (output h) reads column h of each input row */
        int64_t sh[3] = {E, W, in};
        snprintf(name, sizeof name, "%sdown_proj.weight", base);
        return add_view(p, q, t, name, 3, sh, 0, 1, (size_t)W, (size_t)(in * W));
    }
    int64_t sh[3] = {E, W / 2, in};
    for (int k = 0; k < 2; k++) {
        snprintf(name, sizeof name, "%s%s_proj.weight", base, k ? "up" : "gate");
        LM_TRY(add_view(p, q, t, name, 3, sh, (size_t)k, 2, (size_t)W, (size_t)(in * W)));
    }
    return LM_OK;
}

static int is_gpt_oss_fused(const lm_config *cfg, const lm_st_tensor *t) {
    if (strcmp(cfg->model_type, "gpt_oss") != 0 || !is_float_dt(t->dtype) || !strstr(t->name, "experts."))
        return 0;
    return ends_with(t->name, "experts.gate_up_proj") || ends_with(t->name, "experts.down_proj") ||
           ends_with(t->name, "experts.gate_up_proj_bias") || ends_with(t->name, "experts.down_proj_bias");
}

/* --- dequantize ---------------------------------------------------------------------------- */

static lm_status add_dequant(cv_plan *p, const cv_opts *o, const lm_config *cfg, const lm_st_set *set,
                             const lm_st_tensor *w, uint8_t *used) {
    char path[1024], sname[1100], bname[1100];
    size_t pl = strlen(w->name) - strlen(".weight");
    snprintf(path, sizeof path, "%.*s", (int)pl, w->name);
    snprintf(sname, sizeof sname, "%s.scales", path);
    snprintf(bname, sizeof bname, "%s.biases", path);
    const lm_st_tensor *sc = lm_st_find(set, sname), *bi = lm_st_find(set, bname);
    lm_quant_cfg qc = lm_config_quant_for(cfg, path);
    int bits = qc.mxfp4 ? 4 : qc.bits, group = qc.mxfp4 ? 32 : qc.group_size;
    if (!qc.mxfp4 && bits != 2 && bits != 3 && bits != 4 && bits != 5 && bits != 6 && bits != 8)
        return lm_err(LM_ERR_UNSUPPORTED, "%s: module '%s': unsupported bits %d (supported: 2, 3, 4, 5, 6, 8)",
                      cfg->path, path, bits);
    if (group != 32 && group != 64 && group != 128)
        return lm_err(LM_ERR_UNSUPPORTED, "%s: module '%s': unsupported group size %d (32, 64 or 128)", cfg->path,
                      path, group);
    if (!qc.mxfp4 && !bi)
        return lm_err(LM_ERR_MISSING, "affine-quantized module '%s' has scales but no '%s'", path, bname);
    int nd = w->ndim;
    int ok = w->dtype == LM_DT_U32 && (nd == 2 || nd == 3) && sc->ndim == nd;
    int64_t cols = ok ? w->shape[nd - 1] * 32 / bits : 0;
    for (int d = 0; ok && d < nd - 1; d++)
        ok = sc->shape[d] == w->shape[d];
    ok = ok && (w->shape[nd - 1] * 32) % bits == 0 && cols % group == 0 && sc->shape[nd - 1] == cols / group &&
         (qc.mxfp4 ? sc->dtype == LM_DT_U8 : is_float_dt(sc->dtype));
    if (ok && bi)
        ok = qc.mxfp4 || (bi->dtype == sc->dtype && bi->ndim == nd && memcmp(bi->shape, sc->shape, sizeof sc->shape) == 0);
    if (!ok)
        return lm_err(LM_ERR_SHAPE, "module '%s': packed weight, scales and biases do not fit %d bits, group %d "
                      "(%s)", path, bits, group, qc.mxfp4 ? "mxfp4" : "affine");
    cv_module *m = add_module(p);
    if (!m)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    m->name = lm_strdup(w->name);
    if (!m->name)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    m->op = CV_DEQUANT;
    m->src = w;
    int64_t shape[3] = {w->shape[0], nd == 3 ? w->shape[1] : cols, cols};
    set_shape(m, nd, shape);
    m->bits = bits;
    m->group = group;
    m->src_dt = qc.mxfp4 ? LM_DT_U8 : sc->dtype;
    m->out_dt = o->dtype != LM_DT_COUNT ? o->dtype : qc.mxfp4 ? LM_DT_BF16 : sc->dtype;
    lm_linear *l = &m->qsrc;
    l->kind = qc.mxfp4 ? LM_W_MXFP4 : LM_W_AFFINE;
    l->dtype = m->src_dt;
    l->out = (int)m->rows;
    l->in = (int)cols;
    l->w = w->data;
    l->scales = sc->data;
    l->biases = qc.mxfp4 ? NULL : bi->data;
    l->bits = bits;
    l->group = group;
    l->w_row_bytes = (size_t)w->shape[nd - 1] * 4;
    l->s_row_bytes = (size_t)sc->shape[nd - 1] * LM_DTYPES[sc->dtype].size;
    used[tensor_index(set, w)] = used[tensor_index(set, sc)] = 1;
    if (bi)
        used[tensor_index(set, bi)] = 1;
    return LM_OK;
}

/* --- building the plan ---------------------------------------------------------------------- */

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const lm_st_tensor *const *)a)->name, (*(const lm_st_tensor *const *)b)->name);
}
static int cmp_module_name(const void *a, const void *b) {
    return strcmp(((const cv_module *)a)->name, ((const cv_module *)b)->name);
}

/* mlx-lm: the layer index is the first all-digit component of the first module with "down_proj". */
static lm_status recipe_layer_location(const lm_st_tensor **sorted, int n, int *loc) {
    for (int i = 0; i < n; i++) {
        if (!strstr(sorted[i]->name, "down_proj"))
            continue;
        const char *s = sorted[i]->name;
        for (int part = 0;; part++) {
            const char *e = strchr(s, '.');
            size_t len = e ? (size_t)(e - s) : strlen(s);
            int digits = len > 0;
            for (size_t k = 0; k < len; k++)
                digits = digits && isdigit((unsigned char)s[k]);
            if (digits || !e) {
                *loc = part;
                return LM_OK;
            }
            s = e + 1;
        }
    }
    return lm_err(LM_ERR_INVALID_ARG, "the mixed quantization recipes need down_proj modules; the model has none");
}

static lm_status plan_tensor(cv_plan *p, const quant_ctx *q, const lm_st_set *set, const lm_st_tensor *t,
                             uint8_t *used) {
    const cv_opts *o = q->o;
    const lm_config *cfg = q->cfg;
    size_t a, b;
    const char *c;
    if (o->dequantize && (ends_with(t->name, "_blocks") || (ends_with(t->name, "_scales") && t->dtype == LM_DT_U8)))
        return lm_err(LM_ERR_UNSUPPORTED, "tensor '%s': dequantizing Hugging Face MXFP4 blocks is not supported "
                      "(only MLX-quantized modules)", t->name);
    if (o->dequantize && ends_with(t->name, ".weight")) {
        char sname[1100];
        snprintf(sname, sizeof sname, "%.*s.scales", (int)(strlen(t->name) - 7), t->name);
        if (lm_st_find(set, sname))
            return add_dequant(p, o, cfg, set, t, used);
    }
    if (o->quantize && ends_with(t->name, ".scales"))
        return lm_err(LM_ERR_INVALID_ARG, "tensor '%s': the source is already quantized (dequantize it first)",
                      t->name);
    if (strstr(t->name, "rotary_emb.inv_freq")) { /* mlx-lm sanitize drops these */
        used[tensor_index(set, t)] = 1;
        return LM_OK;
    }
    if (cfg->tie_embeddings == 1 && strcmp(t->name, "lm_head.weight") == 0) {
        used[tensor_index(set, t)] = 1;
        return LM_OK;
    }
    if (is_float_dt(t->dtype) && t->ndim == 2 && parse_expert(t->name, &a, &c, &b))
        return add_stacked(p, q, set, t, used);
    if (is_gpt_oss_fused(cfg, t))
        return add_gpt_oss_experts(p, q, set, t, used);
    used[tensor_index(set, t)] = 1;
    if (is_float_dt(t->dtype))
        return add_float(p, q, t, t->name);
    cv_module *m = add_module(p);
    if (!m || !(m->name = lm_strdup(t->name)))
        return lm_err(LM_ERR_NOMEM, "out of memory");
    m->op = CV_RAW;
    m->src = t;
    m->src_dt = m->out_dt = t->dtype;
    set_shape(m, t->ndim, t->shape);
    return LM_OK;
}

lm_status cv_plan_build(const lm_st_set *set, const lm_config *cfg, const cv_opts *o, const char *src_dir,
                        cv_plan *plan) {
    memset(plan, 0, sizeof *plan);
    int n = set->n_tensors;
    const lm_st_tensor **sorted = malloc((size_t)(n ? n : 1) * sizeof *sorted);
    uint8_t *used = calloc((size_t)(n ? n : 1), 1);
    lm_status st = LM_OK;
    if (!sorted || !used) {
        st = lm_err(LM_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++)
        sorted[i] = &set->tensors[i];
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_tensor_name);
    quant_ctx q = {.o = o, .cfg = cfg};
    if (o->quantize && o->recipe_low && (st = recipe_layer_location(sorted, n, &q.layer_loc)) != LM_OK)
        goto done;
    /* packed modules first, so that their scales/biases are claimed before being seen alone */
    for (int pass = o->dequantize ? 0 : 1; pass < 2; pass++)
        for (int i = 0; i < n && st == LM_OK; i++)
            if (!used[tensor_index(set, sorted[i])] && (pass == 1 || ends_with(sorted[i]->name, ".weight")))
                st = plan_tensor(plan, &q, set, sorted[i], used);
    if (st != LM_OK) {
        lm_err_prefix(st, "%s", src_dir);
        goto done;
    }
    qsort(plan->mods, (size_t)plan->n_mods, sizeof *plan->mods, cmp_module_name);
    for (int i = 0; i < plan->n_mods; i++) {
        const cv_module *m = &plan->mods[i];
        if (i > 0 && strcmp(m->name, plan->mods[i - 1].name) == 0) {
            st = lm_err(LM_ERR_FORMAT, "%s: two source tensors both become '%s'", src_dir, m->name);
            goto done;
        }
        plan->n_params += m->op == CV_RAW ? m->src->numel : m->rows * m->cols;
    }
done:
    free(sorted);
    free(used);
    if (st != LM_OK)
        cv_plan_free(plan);
    return st;
}
