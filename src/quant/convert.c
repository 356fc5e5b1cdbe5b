/* lm_convert: runs a plan (convert_plan.c) into streamed safetensors shards, row chunk by row
 * chunk on a thread pool, then writes config.json, the index and the side files. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/threadpool.h"
#include "core/util.h"
#include "io/st_stream.h"
#include "quant/convert_impl.h"
#include "quant/quant.h"

#define CV_DEFAULT_SHARD ((uint64_t)5 << 30) /* mlx-lm MAX_FILE_SIZE_GB */
#define CV_CHUNK_ELEMS ((int64_t)1 << 22)    /* input values per chunk of rows */

lm_convert_params lm_convert_default_params(void) {
    lm_convert_params p = {.size = sizeof(lm_convert_params), .mode = LM_QUANT_AFFINE};
    return p;
}

/* --- options ---------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    int low, high;
} RECIPES[] = {{"mixed_2_6", 2, 6}, {"mixed_3_4", 3, 4}, {"mixed_3_6", 3, 6}, {"mixed_4_6", 4, 6}};

static lm_status resolve_opts(const lm_convert_params *user, cv_opts *o) {
    lm_convert_params p = lm_convert_default_params();
    if (user) {
        if (user->size < offsetof(lm_convert_params, n_threads))
            return lm_err(LM_ERR_INVALID_ARG, "lm_convert_params.size %zu is too small (use "
                          "lm_convert_default_params)", user->size);
        memcpy(&p, user, user->size < sizeof p ? user->size : sizeof p);
    }
    memset(o, 0, sizeof *o);
    if (p.quantize && p.dequantize)
        return lm_err(LM_ERR_INVALID_ARG, "choose either quantize or dequantize, not both");
    if ((unsigned)p.mode >= LM_QUANT_COUNT_)
        return lm_err(LM_ERR_INVALID_ARG, "unknown quantization mode %d", (int)p.mode);
    if ((unsigned)p.dtype >= LM_CONVERT_DTYPE_COUNT_)
        return lm_err(LM_ERR_INVALID_ARG, "unknown dtype %d", (int)p.dtype);
    static const lm_dtype DT[] = {LM_DT_COUNT, LM_DT_BF16, LM_DT_F16, LM_DT_F32};
    o->dtype = DT[p.dtype];
    o->quantize = p.quantize != 0;
    o->dequantize = p.dequantize != 0;
    o->mxfp4 = p.mode == LM_QUANT_MXFP4;
    o->bits = p.bits ? p.bits : 4;
    o->group = p.group_size ? p.group_size : o->mxfp4 ? 32 : 64;
    if (p.recipe) {
        for (size_t i = 0; i < sizeof RECIPES / sizeof RECIPES[0]; i++)
            if (strcmp(p.recipe, RECIPES[i].name) == 0) {
                o->recipe_low = RECIPES[i].low;
                o->recipe_high = RECIPES[i].high;
            }
        if (!o->recipe_low)
            return lm_err(LM_ERR_INVALID_ARG, "unknown recipe '%s' (mixed_2_6, mixed_3_4, mixed_3_6, mixed_4_6)",
                          p.recipe);
        if (!o->quantize || o->mxfp4)
            return lm_err(LM_ERR_INVALID_ARG, "recipe '%s' needs affine quantization (--quantize, mode affine)",
                          p.recipe);
        o->bits = o->recipe_low;
    }
    if (o->mxfp4 && (o->bits != 4 || o->group != 32))
        return lm_err(LM_ERR_INVALID_ARG, "mxfp4 quantization needs bits 4 and group size 32 (got %d, %d)", o->bits,
                      o->group);
    if (!o->mxfp4 && o->bits != 2 && o->bits != 3 && o->bits != 4 && o->bits != 5 && o->bits != 6 && o->bits != 8)
        return lm_err(LM_ERR_INVALID_ARG, "unsupported bits %d (supported: 2, 3, 4, 5, 6, 8)", o->bits);
    if (o->group != 32 && o->group != 64 && o->group != 128)
        return lm_err(LM_ERR_INVALID_ARG, "unsupported group size %d (32, 64 or 128)", o->group);
    return LM_OK;
}

/* --- output tensors ---------------------------------------------------------------------------- */

typedef struct cv_out {
    lm_st_out *t;     /* [n] */
    char **names;     /* [n] owned */
    int *shard;       /* [n] */
    uint64_t *off;    /* [n] offset inside the shard's data section */
    int n;
} cv_out;

static void outs_free(cv_out *x) {
    for (int i = 0; i < x->n; i++)
        free(x->names[i]);
    free(x->t);
    free(x->names);
    free(x->shard);
    free(x->off);
}

/* Bytes of one packed row: weight, and scales (and biases). */
static size_t packed_row_bytes(const cv_module *m) {
    return m->op == CV_MXFP4 ? (size_t)m->cols / 2 : (size_t)m->cols * (size_t)m->bits / 8;
}
static size_t scale_row_bytes(const cv_module *m) {
    return m->op == CV_MXFP4 ? (size_t)m->cols / 32 : (size_t)(m->cols / m->group) * LM_DTYPES[m->out_dt].size;
}

static lm_status add_out(cv_out *x, const char *path, const char *suffix, lm_dtype dt, int ndim, const int64_t *shape,
                         int64_t last) {
    int i = x->n++;
    size_t n = strlen(path) + strlen(suffix) + 1;
    if (!(x->names[i] = malloc(n)))
        return lm_err(LM_ERR_NOMEM, "out of memory");
    snprintf(x->names[i], n, "%s%s", path, suffix);
    lm_st_out *t = &x->t[i];
    t->name = x->names[i];
    t->dtype = dt;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++)
        t->shape[d] = shape[d];
    if (ndim > 0)
        t->shape[ndim - 1] = last;
    return LM_OK;
}

static lm_status plan_outputs(cv_plan *plan, cv_out *x) {
    memset(x, 0, sizeof *x);
    size_t cap = (size_t)plan->n_mods * 3 + 1;
    x->t = calloc(cap, sizeof *x->t);
    x->names = calloc(cap, sizeof *x->names);
    x->shard = calloc(cap, sizeof *x->shard);
    x->off = calloc(cap, sizeof *x->off);
    if (!x->t || !x->names || !x->shard || !x->off)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < plan->n_mods; i++) {
        cv_module *m = &plan->mods[i];
        m->first_out = x->n;
        if (m->op == CV_AFFINE || m->op == CV_MXFP4) {
            LM_TRY(add_out(x, m->path, ".weight", LM_DT_U32, m->ndim, m->shape, (int64_t)packed_row_bytes(m) / 4));
            lm_dtype sdt = m->op == CV_MXFP4 ? LM_DT_U8 : m->out_dt;
            LM_TRY(add_out(x, m->path, ".scales", sdt, m->ndim, m->shape, m->cols / m->group));
            if (m->op == CV_AFFINE)
                LM_TRY(add_out(x, m->path, ".biases", sdt, m->ndim, m->shape, m->cols / m->group));
        } else {
            LM_TRY(add_out(x, m->name, "", m->out_dt, m->ndim, m->shape, m->ndim ? m->shape[m->ndim - 1] : 1));
        }
    }
    return LM_OK;
}

/* --- rows ---------------------------------------------------------------------------------------- */

static void fetch_row(const cv_module *m, int64_t r, float *out) {
    if (m->op == CV_DEQUANT) {
        lm_linear_row_f32(&m->qsrc, (int)r, out);
        return;
    }
    const uint8_t *base = m->parts[r / m->part_rows];
    size_t rr = (size_t)(r % m->part_rows), es = LM_DTYPES[m->src_dt].size;
    if (m->col_step == 1) {
        const uint8_t *row = base + rr * m->row_step * es;
        for (int64_t c = 0; c < m->cols; c++)
            out[c] = lm_scalar_to_f32(row, m->src_dt, (size_t)c);
    } else {
        for (int64_t c = 0; c < m->cols; c++)
            out[c] = lm_scalar_to_f32(base, m->src_dt, rr * m->row_step + (size_t)c * m->col_step);
    }
}

typedef struct chunk_job {
    const cv_module *m;
    int64_t r0, n_rows;
    int n_tasks;
    uint8_t *w, *s, *b;   /* row buffers: weight (or dense), scales, biases */
    size_t w_row, s_row;  /* bytes per row in them */
    float **scratch;      /* [threads] rows of cols + 2*groups floats */
} chunk_job;

static void chunk_task(void *ctx, int task, int thread) {
    const chunk_job *j = ctx;
    const cv_module *m = j->m;
    int64_t per = (j->n_rows + j->n_tasks - 1) / j->n_tasks, a = task * per, e = a + per;
    if (e > j->n_rows)
        e = j->n_rows;
    float *row = j->scratch[thread], *sc = row + m->cols, *bi = sc + m->cols / 32 + 1;
    size_t es = LM_DTYPES[m->out_dt].size;
    for (int64_t i = a; i < e; i++) {
        int64_t r = j->r0 + i;
        uint8_t *w = j->w + (size_t)i * j->w_row;
        if (m->op == CV_CAST && m->src_dt == m->out_dt && m->col_step == 1) { /* same type: bytes */
            memcpy(w, m->parts[r / m->part_rows] + (size_t)(r % m->part_rows) * m->row_step * es, j->w_row);
            continue;
        }
        fetch_row(m, r, row);
        if (m->op == CV_CAST || m->op == CV_DEQUANT) {
            for (int64_t c = 0; c < m->cols; c++)
                lm_f32_store(w, m->out_dt, (size_t)c, row[c]);
            continue;
        }
        if (m->out_dt != m->src_dt) /* mlx-lm casts the weights before quantizing them */
            for (int64_t c = 0; c < m->cols; c++)
                row[c] = lm_round_to_dtype(row[c], m->out_dt);
        uint8_t *s = j->s + (size_t)i * j->s_row;
        if (m->op == CV_MXFP4) {
            lm_mxfp4_quantize_row(row, (int)m->cols, m->out_dt, w, s);
            continue;
        }
        lm_affine_quantize_row(row, (int)m->cols, m->bits, m->group, w, sc, bi);
        uint8_t *b = j->b + (size_t)i * j->s_row;
        for (int64_t g = 0; g < m->cols / m->group; g++) {
            lm_f32_store(s, m->out_dt, (size_t)g, sc[g]);
            lm_f32_store(b, m->out_dt, (size_t)g, bi[g]);
        }
    }
}

typedef struct cv_run {
    lm_pool *pool;
    float **scratch;
    int n_threads;
    int64_t scratch_cols;
    lm_st_stream *streams;
    const cv_out *outs;
} cv_run;

static lm_status write_out(cv_run *run, int out, uint64_t off, const void *data, size_t len) {
    return lm_st_stream_write(&run->streams[run->outs->shard[out]], run->outs->off[out] + off, data, len);
}

static lm_status run_module(cv_run *run, const cv_module *m) {
    if (m->op == CV_RAW)
        return write_out(run, m->first_out, 0, m->src->data, m->src->nbytes);
    int quant = m->op == CV_AFFINE || m->op == CV_MXFP4;
    chunk_job j = {.m = m, .scratch = run->scratch};
    j.w_row = quant ? packed_row_bytes(m) : (size_t)m->cols * LM_DTYPES[m->out_dt].size;
    j.s_row = quant ? scale_row_bytes(m) : 0;
    int64_t chunk = m->cols > 0 ? CV_CHUNK_ELEMS / m->cols : m->rows;
    if (chunk < 1)
        chunk = 1;
    if (chunk > m->rows)
        chunk = m->rows;
    lm_status st = LM_OK;
    j.w = malloc((size_t)chunk * j.w_row + 1);
    j.s = malloc((size_t)chunk * j.s_row + 1);
    j.b = malloc((size_t)chunk * j.s_row + 1);
    if (!j.w || !j.s || !j.b)
        st = lm_err(LM_ERR_NOMEM, "out of memory converting '%s'", m->name);
    for (int64_t r0 = 0; st == LM_OK && r0 < m->rows; r0 += chunk) {
        j.r0 = r0;
        j.n_rows = m->rows - r0 < chunk ? m->rows - r0 : chunk;
        j.n_tasks = j.n_rows < 4 * run->n_threads ? (int)j.n_rows : 4 * run->n_threads;
        lm_pool_run(run->pool, j.n_tasks, chunk_task, &j);
        st = write_out(run, m->first_out, (uint64_t)r0 * j.w_row, j.w, (size_t)j.n_rows * j.w_row);
        if (st == LM_OK && quant)
            st = write_out(run, m->first_out + 1, (uint64_t)r0 * j.s_row, j.s, (size_t)j.n_rows * j.s_row);
        if (st == LM_OK && m->op == CV_AFFINE)
            st = write_out(run, m->first_out + 2, (uint64_t)r0 * j.s_row, j.b, (size_t)j.n_rows * j.s_row);
    }
    free(j.w);
    free(j.s);
    free(j.b);
    return st;
}

/* --- the destination directory ----------------------------------------------------------------- */

/* dst must not exist (it is created) or be an empty directory. */
static lm_status prepare_dst(const char *dst, int *created) {
    *created = 0;
    struct stat sb;
    if (stat(dst, &sb) != 0) {
        if (mkdir(dst, 0755) != 0)
            return lm_err(LM_ERR_IO, "%s: cannot create the output directory: %s", dst, strerror(errno));
        *created = 1;
        return LM_OK;
    }
    if (!S_ISDIR(sb.st_mode))
        return lm_err(LM_ERR_INVALID_ARG, "%s: the output path exists and is not a directory", dst);
    DIR *d = opendir(dst);
    if (!d)
        return lm_err(LM_ERR_IO, "%s: cannot read the output directory: %s", dst, strerror(errno));
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)) != NULL)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    if (!empty)
        return lm_err(LM_ERR_INVALID_ARG, "%s: the output directory is not empty (choose a new path)", dst);
    return LM_OK;
}

static lm_status write_text(const char *dir, const char *name, const char *text) {
    char path[4096];
    LM_TRY(lm_path_join(path, sizeof path, dir, name));
    FILE *f = fopen(path, "wb");
    if (!f)
        return lm_err(LM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF;
    if (fclose(f) != 0 || !ok)
        return lm_err(LM_ERR_IO, "%s: write failed", path);
    return LM_OK;
}

static void remove_file(const char *dir, const char *name) {
    char path[4096];
    if (lm_path_join(path, sizeof path, dir, name) == LM_OK)
        unlink(path);
}

/* --- shards -------------------------------------------------------------------------------------- */

/* mlx-lm make_shards: a new shard when the next tensor would pass the limit. */
static int assign_shards(cv_out *x, uint64_t max_bytes, uint64_t *total) {
    int s = 0;
    uint64_t size = 0;
    *total = 0;
    for (int i = 0; i < x->n; i++) {
        uint64_t nb = lm_st_out_bytes(&x->t[i]);
        if (size > 0 && size + nb > max_bytes) {
            s++;
            size = 0;
        }
        x->shard[i] = s;
        size += nb;
        *total += nb;
    }
    return s + 1;
}

typedef struct cv_state {
    const char *dst;
    cv_plan plan;
    cv_out outs;
    char **shard_names;
    int n_shards;
    lm_st_stream *streams;
    lm_pool *pool;
    float **scratch;
    int n_threads;
    char side[16][64];
    int n_side;
    int wrote_config, wrote_index;
} cv_state;

static lm_status open_shards(cv_state *s) {
    s->shard_names = calloc((size_t)s->n_shards, sizeof *s->shard_names);
    s->streams = calloc((size_t)s->n_shards, sizeof *s->streams);
    if (!s->shard_names || !s->streams)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    for (int k = 0; k < s->n_shards; k++)
        s->streams[k].fd = -1;
    int first = 0;
    for (int k = 0; k < s->n_shards; k++) {
        char name[64], path[4096];
        if (s->n_shards == 1)
            snprintf(name, sizeof name, "model.safetensors");
        else
            snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", k + 1, s->n_shards);
        if (!(s->shard_names[k] = lm_strdup(name)))
            return lm_err(LM_ERR_NOMEM, "out of memory");
        int end = first;
        while (end < s->outs.n && s->outs.shard[end] == k)
            end++;
        LM_TRY(lm_path_join(path, sizeof path, s->dst, name));
        LM_TRY(lm_st_stream_create(path, s->outs.t + first, end - first, "{\"format\":\"mlx\"}", s->outs.off + first,
                                   &s->streams[k]));
        first = end;
    }
    return LM_OK;
}

static lm_status make_pool(cv_state *s, const lm_convert_params *p) {
    int n = p && p->size >= offsetof(lm_convert_params, n_threads) + sizeof(int) ? p->n_threads : 0;
    if (!(s->pool = lm_pool_new(n)))
        return lm_err(LM_ERR_NOMEM, "cannot start the thread pool");
    s->n_threads = lm_pool_threads(s->pool);
    int64_t cols = 1;
    for (int i = 0; i < s->plan.n_mods; i++)
        if (s->plan.mods[i].cols > cols)
            cols = s->plan.mods[i].cols;
    s->scratch = calloc((size_t)s->n_threads, sizeof *s->scratch);
    if (!s->scratch)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    for (int t = 0; t < s->n_threads; t++)
        if (!(s->scratch[t] = malloc((size_t)(cols + 2 * (cols / 32 + 1)) * sizeof(float))))
            return lm_err(LM_ERR_NOMEM, "out of memory");
    return LM_OK;
}

static void state_free(cv_state *s, int ok, int created_dir) {
    for (int k = 0; s->streams && k < s->n_shards; k++)
        if (s->streams[k].fd >= 0 || s->streams[k].path)
            lm_st_stream_close(&s->streams[k], ok);
    if (!ok) {
        for (int k = 0; s->shard_names && k < s->n_shards; k++)
            if (s->shard_names[k])
                remove_file(s->dst, s->shard_names[k]);
        for (int k = 0; k < s->n_side; k++)
            remove_file(s->dst, s->side[k]);
        if (s->wrote_config)
            remove_file(s->dst, "config.json");
        if (s->wrote_index)
            remove_file(s->dst, "model.safetensors.index.json");
        if (created_dir)
            rmdir(s->dst);
    }
    for (int k = 0; s->shard_names && k < s->n_shards; k++)
        free(s->shard_names[k]);
    free(s->shard_names);
    free(s->streams);
    for (int t = 0; s->scratch && t < s->n_threads; t++)
        free(s->scratch[t]);
    free(s->scratch);
    lm_pool_free(s->pool);
    outs_free(&s->outs);
    cv_plan_free(&s->plan);
}

/* --- the public entry ------------------------------------------------------------------------------ */

static lm_status check_source(const lm_config *cfg, const cv_opts *o, const char *src) {
    int quantized = cfg->quant_json != NULL;
    if (o->quantize && quantized)
        return lm_err(LM_ERR_INVALID_ARG, "%s: the model is already quantized (config.json has a quantization "
                      "block); dequantize it first", src);
    if (o->dequantize && !quantized)
        return lm_err(LM_ERR_INVALID_ARG, "%s: the model is not quantized (config.json has no quantization "
                      "block); nothing to dequantize", src);
    return LM_OK;
}

static lm_status convert_run(cv_state *s, const lm_convert_params *params, const lm_st_set *set,
                             const lm_config *cfg, const cv_opts *o, const char *src, lm_convert_stats *stats) {
    LM_TRY(cv_plan_build(set, cfg, o, src, &s->plan));
    LM_TRY(plan_outputs(&s->plan, &s->outs));
    uint64_t max_shard = params && params->max_shard_bytes ? params->max_shard_bytes : CV_DEFAULT_SHARD, total;
    s->n_shards = assign_shards(&s->outs, max_shard, &total);
    LM_TRY(make_pool(s, params));
    LM_TRY(open_shards(s));
    cv_run run = {.pool = s->pool, .scratch = s->scratch, .n_threads = s->n_threads, .streams = s->streams,
                  .outs = &s->outs};
    for (int i = 0; i < s->plan.n_mods; i++)
        LM_TRY(run_module(&run, &s->plan.mods[i]));
    for (int k = 0; k < s->n_shards; k++)
        LM_TRY(lm_st_stream_close(&s->streams[k], 1));
    char *js = NULL;
    LM_TRY(cv_index_json(s->outs.t, s->outs.shard, s->outs.n, s->shard_names, total, s->plan.n_params, &js));
    s->wrote_index = 1;
    lm_status st = write_text(s->dst, "model.safetensors.index.json", js);
    free(js);
    LM_TRY(st);
    LM_TRY(cv_config_json(cfg, &s->plan, o, src, &js));
    s->wrote_config = 1;
    st = write_text(s->dst, "config.json", js);
    free(js);
    LM_TRY(st);
    LM_TRY(cv_copy_side_files(src, s->dst, &s->n_side, s->side, 16));
    if (stats) {
        memset(stats, 0, sizeof *stats);
        for (int i = 0; i < s->plan.n_mods; i++) {
            cv_op op = s->plan.mods[i].op;
            stats->n_quantized += op == CV_AFFINE || op == CV_MXFP4;
            stats->n_dequantized += op == CV_DEQUANT;
        }
        stats->n_tensors = s->outs.n;
        stats->n_shards = s->n_shards;
        stats->n_params = s->plan.n_params;
        stats->bytes = total;
        stats->bits_per_weight = s->plan.n_params ? (double)total * 8.0 / (double)s->plan.n_params : 0.0;
    }
    return LM_OK;
}

lm_status lm_convert(const char *src_dir, const char *dst_dir, const lm_convert_params *params,
                     lm_convert_stats *stats) {
    if (!src_dir || !dst_dir)
        return lm_err(LM_ERR_INVALID_ARG, "lm_convert: source and destination directories are required");
    cv_opts o;
    LM_TRY(resolve_opts(params, &o));
    lm_config cfg;
    lm_st_set *set = NULL;
    LM_TRY(lm_config_load(src_dir, &cfg));
    lm_status st = check_source(&cfg, &o, src_dir);
    if (st == LM_OK)
        st = lm_st_open_dir(src_dir, &set);
    int created = 0;
    if (st == LM_OK)
        st = prepare_dst(dst_dir, &created);
    if (st != LM_OK) {
        lm_config_free(&cfg);
        lm_st_close(set);
        return st;
    }
    cv_state s;
    memset(&s, 0, sizeof s);
    s.dst = dst_dir;
    st = convert_run(&s, params, set, &cfg, &o, src_dir, stats);
    state_free(&s, st == LM_OK, created);
    lm_st_close(set);
    lm_config_free(&cfg);
    return st;
}
