/* safetensors: memory-mapped reading (single file, sharded with an index, or a directory)
 * with full validation of the header, and a small writer. */
#ifndef LM_IO_SAFETENSORS_H
#define LM_IO_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"
#include "core/strmap.h"

#define LM_ST_MAX_DIMS 8

typedef struct lm_st_tensor {
    char *name;
    lm_dtype dtype;
    int ndim;
    int64_t shape[LM_ST_MAX_DIMS];
    int64_t numel;
    const void *data; /* into the file mapping */
    size_t nbytes;
    int file; /* index into lm_st_set.files */
} lm_st_tensor;

typedef struct lm_st_file {
    char *path;
    void *map;
    size_t size;
    size_t data; /* offset of the data section (8 + header length), once parsed */
} lm_st_file;

typedef struct lm_st_set {
    lm_st_file *files;
    int n_files;
    lm_st_tensor *tensors;
    int n_tensors, cap_tensors;
    lm_strmap index; /* name -> tensor */
    char *metadata;  /* the first file's "__metadata__" object as JSON text, or NULL */
} lm_st_set;

/* Validate a header (the bytes after the 8-byte length) against a data section of
 * `data_len` bytes, appending its tensors to `set` (file index `file`). Exposed for fuzzing. */
lm_status lm_st_parse_header(lm_st_set *set, const char *json, size_t json_len, const uint8_t *data,
                             size_t data_len, int file, const char *path);

/* Validate a whole file image (8-byte length, header, data). Exposed for fuzzing. */
lm_status lm_st_parse_buffer(lm_st_set *set, const void *buf, size_t size, int file, const char *path);
lm_st_set *lm_st_new(void);

/* Open one .safetensors file. */
lm_status lm_st_open_file(const char *path, lm_st_set **out);
/* Open a model directory: model.safetensors.index.json (shards), else model.safetensors,
 * else every *.safetensors file in it. */
lm_status lm_st_open_dir(const char *dir, lm_st_set **out);
void lm_st_close(lm_st_set *set);

const lm_st_tensor *lm_st_find(const lm_st_set *set, const char *name);
/* Total bytes of tensor data in all files. */
size_t lm_st_data_bytes(const lm_st_set *set);

/* Writer: tensors are written in the order given. */
typedef struct lm_st_out {
    const char *name;
    lm_dtype dtype;
    int ndim;
    int64_t shape[LM_ST_MAX_DIMS];
    const void *data;
} lm_st_out;

/* metadata_json: NULL or a JSON object text for "__metadata__" (string values only). */
lm_status lm_st_write(const char *path, const lm_st_out *tensors, int n, const char *metadata_json);

#endif
