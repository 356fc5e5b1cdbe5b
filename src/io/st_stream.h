/* A safetensors writer whose header is written first and whose tensor data is then written in
 * pieces at known offsets (pwrite), so a converter never holds a whole checkpoint in memory. */
#ifndef LM_IO_ST_STREAM_H
#define LM_IO_ST_STREAM_H
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "io/safetensors.h"

typedef struct lm_st_stream {
    int fd;            /* -1 when closed */
    char *path;
    uint64_t data_start; /* file offset of the data section */
    uint64_t data_len;
} lm_st_stream;

/* Create `path` and write the header for tensors[0..n) (their data fields are ignored); the
 * data section is laid out in the order given. offsets[i] receives tensor i's offset inside the
 * data section. metadata_json: NULL or a JSON object of strings for "__metadata__". */
lm_status lm_st_stream_create(const char *path, const lm_st_out *tensors, int n, const char *metadata_json,
                              uint64_t *offsets, lm_st_stream *out);
/* Write `len` bytes at `off` inside the data section (bounds-checked). */
lm_status lm_st_stream_write(lm_st_stream *s, uint64_t off, const void *data, size_t len);
/* Close; with ok == 0 the file is removed (a failed conversion leaves no half-written shard). */
lm_status lm_st_stream_close(lm_st_stream *s, int ok);

/* Bytes of tensor data of one entry (0 when the shape overflows). */
uint64_t lm_st_out_bytes(const lm_st_out *t);

#endif
