#include "io/st_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/util.h"

uint64_t lm_st_out_bytes(const lm_st_out *t) {
    size_t n = LM_DTYPES[t->dtype].size;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0 || !lm_mul_ok(n, (size_t)t->shape[d], &n))
            return 0;
    return n;
}

static lm_status header_json(const lm_st_out *tensors, int n, const char *metadata_json, uint64_t *offsets,
                             uint64_t *total, char **out) {
    cJSON *hdr = cJSON_CreateObject();
    if (!hdr)
        return lm_err(LM_ERR_NOMEM, "out of memory");
    if (metadata_json) {
        cJSON *meta = cJSON_Parse(metadata_json);
        if (meta)
            cJSON_AddItemToObject(hdr, "__metadata__", meta);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const lm_st_out *t = &tensors[i];
        uint64_t nb = lm_st_out_bytes(t);
        cJSON *e = cJSON_AddObjectToObject(hdr, t->name);
        if (!e)
            break;
        cJSON_AddStringToObject(e, "dtype", LM_DTYPES[t->dtype].st_name);
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *of = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + nb)));
        offsets[i] = off;
        off += nb;
    }
    *total = off;
    *out = cJSON_PrintUnformatted(hdr);
    cJSON_Delete(hdr);
    return *out ? LM_OK : lm_err(LM_ERR_NOMEM, "out of memory");
}

lm_status lm_st_stream_create(const char *path, const lm_st_out *tensors, int n, const char *metadata_json,
                              uint64_t *offsets, lm_st_stream *out) {
    memset(out, 0, sizeof *out);
    out->fd = -1;
    char *js;
    uint64_t total = 0;
    LM_TRY(header_json(tensors, n, metadata_json, offsets, &total, &js));
    size_t jl = strlen(js), pad = (8 - jl % 8) % 8;
    uint8_t le[8];
    uint64_t hl = jl + pad;
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(hl >> (8 * i));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(js);
        return lm_err(LM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    out->fd = fd;
    out->path = lm_strdup(path);
    out->data_start = 8 + hl;
    out->data_len = total;
    int ok = out->path && write(fd, le, 8) == 8 && write(fd, js, jl) == (ssize_t)jl &&
             write(fd, "        ", pad) == (ssize_t)pad && ftruncate(fd, (off_t)(out->data_start + total)) == 0;
    free(js);
    if (!ok) {
        lm_status st = lm_err(LM_ERR_IO, "%s: cannot write the header: %s", path, strerror(errno));
        lm_st_stream_close(out, 0);
        return st;
    }
    return LM_OK;
}

lm_status lm_st_stream_write(lm_st_stream *s, uint64_t off, const void *data, size_t len) {
    if (s->fd < 0 || off > s->data_len || len > s->data_len - off)
        return lm_err(LM_ERR_INTERNAL, "%s: write of %zu bytes at %llu is outside the data section", s->path, len,
                      (unsigned long long)off);
    const uint8_t *p = data;
    uint64_t pos = s->data_start + off;
    while (len > 0) {
        ssize_t w = pwrite(s->fd, p, len, (off_t)pos);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return lm_err(LM_ERR_IO, "%s: write failed: %s", s->path, w < 0 ? strerror(errno) : "no progress");
        p += w;
        pos += (uint64_t)w;
        len -= (size_t)w;
    }
    return LM_OK;
}

lm_status lm_st_stream_close(lm_st_stream *s, int ok) {
    lm_status st = LM_OK;
    if (s->fd >= 0 && close(s->fd) != 0 && ok)
        st = lm_err(LM_ERR_IO, "%s: close failed: %s", s->path, strerror(errno));
    if ((!ok || st != LM_OK) && s->path)
        unlink(s->path);
    free(s->path);
    s->path = NULL;
    s->fd = -1;
    return st;
}
