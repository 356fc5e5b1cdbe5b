/* Small shared helpers: files, paths, growable buffers, half-precision conversion. */
#ifndef LM_CORE_UTIL_H
#define LM_CORE_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/status.h"

/* Read a whole file into a NUL-terminated malloc'd buffer. */
lm_status lm_read_file(const char *path, char **out, size_t *len);
int lm_file_exists(const char *path);
/* snprintf into a fixed buffer; fails (LM_ERR_INVALID_ARG) when the path does not fit. */
lm_status lm_path_join(char *buf, size_t cap, const char *dir, const char *name);
double lm_time_s(void); /* monotonic seconds */

void *lm_malloc(size_t n); /* 64-byte aligned, NULL on failure; free with lm_free */
void *lm_calloc(size_t n);
void lm_free(void *p);
char *lm_strdup(const char *s);

/* checked size arithmetic: returns 0 on overflow */
static inline int lm_mul_ok(size_t a, size_t b, size_t *r) { return !__builtin_mul_overflow(a, b, r); }

static inline float lm_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t lm_f32_to_bf16(float f) { /* round to nearest even, NaN kept */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}
float lm_f16_to_f32(uint16_t h);
uint16_t lm_f32_to_f16(float f);

#endif
