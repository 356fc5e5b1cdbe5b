#include "io/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "io/json.h"
#include "io/st_stream.h"

#define MAX_HEADER (256u << 20) /* the format caps headers at 100 MB; be a little lenient */

/* --- header validation ------------------------------------------------------------------- */

static int get_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    if (!(d >= 0) || d != floor(d) || d > 9007199254740992.0)
        return 0;
    *out = (uint64_t)d;
    return 1;
}

static lm_status push_tensor(lm_st_set *set, lm_st_tensor *t) {
    if (set->n_tensors == set->cap_tensors) {
        int ncap = set->cap_tensors ? set->cap_tensors * 2 : 64;
        lm_st_tensor *nt = realloc(set->tensors, (size_t)ncap * sizeof *nt);
        if (!nt)
            return lm_err(LM_ERR_NOMEM, "out of memory reading safetensors header");
        set->tensors = nt;
        set->cap_tensors = ncap;
    }
    set->tensors[set->n_tensors++] = *t;
    return LM_OK;
}

typedef struct span { uint64_t b, e; int t; } span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->b < y->b ? -1 : x->b > y->b ? 1 : (x->e < y->e ? -1 : x->e > y->e);
}

lm_status lm_st_parse_header(lm_st_set *set, const char *json, size_t json_len, const uint8_t *data,
                             size_t data_len, int file, const char *path) {
    cJSON *root;
    LM_TRY(lm_json_parse(json, json_len, path, &root));
    lm_status st = LM_OK;
    span *spans = NULL;
    int n_spans = 0, first = set->n_tensors;
    if (!cJSON_IsObject(root)) {
        st = lm_err(LM_ERR_FORMAT, "%s: safetensors header is not a JSON object", path);
        goto done;
    }
    spans = malloc(((size_t)cJSON_GetArraySize(root) + 1) * sizeof *spans);
    if (!spans) {
        st = lm_err(LM_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (const cJSON *it = root->child; it; it = it->next) {
        const char *name = it->string;
        if (!name) {
            st = lm_err(LM_ERR_FORMAT, "%s: safetensors header entry without a name", path);
            goto done;
        }
        if (strcmp(name, "__metadata__") == 0) {
            if (!set->metadata && cJSON_IsObject(it))
                set->metadata = cJSON_PrintUnformatted(it);
            continue;
        }
        if (!cJSON_IsObject(it)) {
            st = lm_err(LM_ERR_FORMAT, "%s: tensor '%s': header entry is not an object", path, name);
            goto done;
        }
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(it, "shape");
        const cJSON *offs = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs)) {
            st = lm_err(LM_ERR_FORMAT, "%s: tensor '%s': needs string dtype, array shape and data_offsets",
                        path, name);
            goto done;
        }
        lm_st_tensor t = {0};
        t.dtype = lm_dtype_from_st(dt->valuestring);
        if (t.dtype == LM_DT_COUNT) {
            st = lm_err(LM_ERR_UNSUPPORTED, "%s: tensor '%s': unknown dtype '%s'", path, name, dt->valuestring);
            goto done;
        }
        int nd = cJSON_GetArraySize(shape);
        if (nd > LM_ST_MAX_DIMS) {
            st = lm_err(LM_ERR_FORMAT, "%s: tensor '%s': %d dimensions (at most %d)", path, name, nd,
                        LM_ST_MAX_DIMS);
            goto done;
        }
        t.ndim = nd;
        size_t numel = 1;
        int i = 0;
        for (const cJSON *d = shape->child; d; d = d->next, i++) {
            uint64_t v;
            if (!get_u64(d, &v) || v > INT64_MAX || !lm_mul_ok(numel, (size_t)v, &numel)) {
                st = lm_err(LM_ERR_FORMAT, "%s: tensor '%s': invalid shape", path, name);
                goto done;
            }
            t.shape[i] = (int64_t)v;
        }
        uint64_t b, e;
        if (cJSON_GetArraySize(offs) != 2 || !get_u64(offs->child, &b) || !get_u64(offs->child->next, &e) ||
            b > e) {
            st = lm_err(LM_ERR_FORMAT, "%s: tensor '%s': invalid data_offsets", path, name);
            goto done;
        }
        if (e > data_len) {
            st = lm_err(LM_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu] past the end of the data (%zu bytes; "
                        "file truncated?)",
                        path, name, (unsigned long long)b, (unsigned long long)e, data_len);
            goto done;
        }
        size_t nbytes;
        if (!lm_mul_ok(numel, LM_DTYPES[t.dtype].size, &nbytes) || nbytes != e - b) {
            st = lm_err(LM_ERR_SHAPE, "%s: tensor '%s': %s shape needs %zu bytes but data_offsets span %llu",
                        path, name, LM_DTYPES[t.dtype].st_name, nbytes, (unsigned long long)(e - b));
            goto done;
        }
        t.numel = (int64_t)numel;
        t.nbytes = nbytes;
        t.data = data + b;
        t.file = file;
        t.name = lm_strdup(name);
        if (!t.name) {
            st = lm_err(LM_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        if ((st = push_tensor(set, &t)) != LM_OK) {
            free(t.name);
            goto done;
        }
        spans[n_spans++] = (span){b, e, set->n_tensors - 1};
    }
    /* no two tensors may share bytes */
    qsort(spans, (size_t)n_spans, sizeof *spans, span_cmp);
    for (int i = 1; i < n_spans; i++) {
        if (spans[i].b < spans[i - 1].e) {
            st = lm_err(LM_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", path, set->tensors[spans[i - 1].t].name,
                        set->tensors[spans[i].t].name);
            goto done;
        }
    }
    /* register names; duplicates (within or across files) are an error */
    for (int i = first; i < set->n_tensors; i++) {
        int r = lm_strmap_put(&set->index, set->tensors[i].name, i);
        if (r < 0) {
            st = lm_err(LM_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        if (r > 0) {
            st = lm_err(LM_ERR_FORMAT, "%s: tensor '%s' appears twice", path, set->tensors[i].name);
            goto done;
        }
    }
done:
    if (st != LM_OK) { /* drop what this header added */
        for (int i = first; i < set->n_tensors; i++) {
            free(set->tensors[i].name);
        }
        set->n_tensors = first;
        lm_strmap_free(&set->index);
        for (int i = 0; i < first; i++)
            lm_strmap_put(&set->index, set->tensors[i].name, i);
    }
    free(spans);
    cJSON_Delete(root);
    return st;
}

/* --- files ---------------------------------------------------------------------------------- */

static lm_status add_file(lm_st_set *set, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lm_err(LM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return lm_err(LM_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return lm_err(LM_ERR_FORMAT, "%s: too short for a safetensors file (%zu bytes)", path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return lm_err(LM_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    lm_st_file *nf = realloc(set->files, (size_t)(set->n_files + 1) * sizeof *nf);
    if (!nf) {
        munmap(map, size);
        return lm_err(LM_ERR_NOMEM, "out of memory");
    }
    set->files = nf;
    int fi = set->n_files++;
    set->files[fi] = (lm_st_file){lm_strdup(path), map, size, 0};
    return lm_st_parse_buffer(set, map, size, fi, path);
}

lm_status lm_st_parse_buffer(lm_st_set *set, const void *buf, size_t size, int file, const char *path) {
    if (size < 8)
        return lm_err(LM_ERR_FORMAT, "%s: too short for a safetensors file (%zu bytes)", path, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | ((const uint8_t *)buf)[i];
    if (hlen > size - 8 || hlen > MAX_HEADER)
        return lm_err(LM_ERR_FORMAT, "%s: header length %llu is past the end of the file (%zu bytes)", path,
                      (unsigned long long)hlen, size);
    const char *json = (const char *)buf + 8;
    const uint8_t *data = (const uint8_t *)buf + 8 + hlen;
    if (file >= 0 && file < set->n_files)
        set->files[file].data = 8 + (size_t)hlen;
    return lm_st_parse_header(set, json, (size_t)hlen, data, size - 8 - (size_t)hlen, file, path);
}

lm_st_set *lm_st_new(void) { return calloc(1, sizeof(lm_st_set)); }

lm_status lm_st_open_file(const char *path, lm_st_set **out) {
    *out = NULL;
    lm_st_set *set = lm_st_new();
    if (!set)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    lm_status st = add_file(set, path);
    if (st != LM_OK) {
        lm_st_close(set);
        return st;
    }
    *out = set;
    return LM_OK;
}

static int name_ok(const char *f) {
    return *f && !strchr(f, '/') && strcmp(f, ".") != 0 && strcmp(f, "..") != 0;
}

static lm_status open_index(lm_st_set *set, const char *dir, const char *index_path) {
    cJSON *root;
    LM_TRY(lm_json_load_file(index_path, &root));
    lm_status st = LM_OK;
    const cJSON *map = lm_json_get(root, "weight_map");
    char path[4096];
    if (!cJSON_IsObject(map) || !map->child) {
        st = lm_err(LM_ERR_FORMAT, "%s: missing or empty \"weight_map\" object", index_path);
        goto done;
    }
    for (const cJSON *it = map->child; it; it = it->next) { /* open each shard once */
        if (!cJSON_IsString(it) || !name_ok(it->valuestring)) {
            st = lm_err(LM_ERR_FORMAT, "%s: weight_map entry '%s' is not a shard file name", index_path,
                        it->string ? it->string : "?");
            goto done;
        }
        int seen = 0;
        for (const cJSON *p = map->child; p != it; p = p->next)
            if (strcmp(p->valuestring, it->valuestring) == 0) {
                seen = 1;
                break;
            }
        if (seen)
            continue;
        if ((st = lm_path_join(path, sizeof path, dir, it->valuestring)) != LM_OK ||
            (st = add_file(set, path)) != LM_OK) {
            lm_err_prefix(st, "%s", index_path);
            goto done;
        }
    }
    for (const cJSON *it = map->child; it; it = it->next) { /* every listed tensor is where it says */
        const lm_st_tensor *t = lm_st_find(set, it->string);
        const char *fname = t ? strrchr(set->files[t->file].path, '/') : NULL;
        if (!t || strcmp(fname ? fname + 1 : "", it->valuestring) != 0) {
            st = lm_err(LM_ERR_FORMAT, "%s: tensor '%s' is listed in shard '%s' but not found there", index_path,
                        it->string, it->valuestring);
            goto done;
        }
    }
done:
    cJSON_Delete(root);
    return st;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static lm_status open_all(lm_st_set *set, const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return lm_err(LM_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    char *names[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        size_t l = strlen(e->d_name);
        if (l > 12 && strcmp(e->d_name + l - 12, ".safetensors") == 0)
            names[n++] = lm_strdup(e->d_name);
    }
    closedir(d);
    if (n == 0)
        return lm_err(LM_ERR_MISSING, "%s: no model.safetensors, model.safetensors.index.json or *.safetensors", dir);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    lm_status st = LM_OK;
    char path[4096];
    for (int i = 0; i < n; i++) {
        if (st == LM_OK && !names[i])
            st = lm_err(LM_ERR_NOMEM, "out of memory");
        if (st == LM_OK && (st = lm_path_join(path, sizeof path, dir, names[i])) == LM_OK)
            st = add_file(set, path);
        free(names[i]);
    }
    return st;
}

lm_status lm_st_open_dir(const char *dir, lm_st_set **out) {
    *out = NULL;
    char path[4096];
    lm_st_set *set = lm_st_new();
    if (!set)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    lm_status st = lm_path_join(path, sizeof path, dir, "model.safetensors.index.json");
    if (st == LM_OK) {
        if (lm_file_exists(path)) {
            st = open_index(set, dir, path);
        } else if ((st = lm_path_join(path, sizeof path, dir, "model.safetensors")) == LM_OK) {
            st = lm_file_exists(path) ? add_file(set, path) : open_all(set, dir);
        }
    }
    if (st != LM_OK) {
        lm_st_close(set);
        return st;
    }
    *out = set;
    return LM_OK;
}

void lm_st_close(lm_st_set *set) {
    if (!set)
        return;
    for (int i = 0; i < set->n_tensors; i++)
        free(set->tensors[i].name);
    for (int i = 0; i < set->n_files; i++) {
        munmap(set->files[i].map, set->files[i].size);
        free(set->files[i].path);
    }
    free(set->tensors);
    free(set->files);
    free(set->metadata);
    lm_strmap_free(&set->index);
    free(set);
}

const lm_st_tensor *lm_st_find(const lm_st_set *set, const char *name) {
    int i = lm_strmap_get(&set->index, name);
    return i < 0 ? NULL : &set->tensors[i];
}

size_t lm_st_data_bytes(const lm_st_set *set) {
    size_t n = 0;
    for (int i = 0; i < set->n_tensors; i++)
        n += set->tensors[i].nbytes;
    return n;
}

/* --- writer ---------------------------------------------------------------------------------- */

lm_status lm_st_write(const char *path, const lm_st_out *tensors, int n, const char *metadata_json) {
    uint64_t *offs = malloc(((size_t)n + 1) * sizeof *offs);
    if (!offs)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    lm_st_stream s;
    lm_status st = lm_st_stream_create(path, tensors, n, metadata_json, offs, &s);
    for (int i = 0; st == LM_OK && i < n; i++)
        st = lm_st_stream_write(&s, offs[i], tensors[i].data, (size_t)lm_st_out_bytes(&tensors[i]));
    if (s.fd >= 0) {
        lm_status cs = lm_st_stream_close(&s, st == LM_OK);
        if (st == LM_OK)
            st = cs;
    }
    free(offs);
    return st;
}
