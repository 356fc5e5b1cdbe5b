/* Open-addressing hash map from NUL-terminated strings (not copied) to int values. */
#ifndef LM_CORE_STRMAP_H
#define LM_CORE_STRMAP_H
#include <stddef.h>
#include <stdint.h>

typedef struct lm_strmap {
    const char **keys; /* [cap] */
    int *vals;         /* [cap] */
    size_t cap, n;
} lm_strmap;

uint64_t lm_hash_str(const char *s);
/* 0 ok, -1 out of memory, 1 key already present (value left unchanged). */
int lm_strmap_put(lm_strmap *m, const char *key, int val);
/* -1 when absent. */
int lm_strmap_get(const lm_strmap *m, const char *key);
void lm_strmap_free(lm_strmap *m);

#endif
