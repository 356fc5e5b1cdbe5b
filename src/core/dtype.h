/* Element types of stored tensors (safetensors names) and their sizes. */
#ifndef LM_CORE_DTYPE_H
#define LM_CORE_DTYPE_H
#include <stddef.h>

typedef enum {
    LM_DT_F32, LM_DT_F16, LM_DT_BF16, LM_DT_F64,
    LM_DT_I64, LM_DT_I32, LM_DT_I16, LM_DT_I8,
    LM_DT_U64, LM_DT_U32, LM_DT_U16, LM_DT_U8,
    LM_DT_BOOL, LM_DT_F8_E4M3, LM_DT_F8_E5M2, LM_DT_F8_E8M0,
    LM_DT_COUNT
} lm_dtype;

typedef struct lm_dtype_info {
    const char *st_name; /* safetensors spelling */
    const char *short_name;
    size_t size;         /* bytes per element */
} lm_dtype_info;

extern const lm_dtype_info LM_DTYPES[LM_DT_COUNT];

/* LM_DT_COUNT when the name is unknown. */
lm_dtype lm_dtype_from_st(const char *name);

#endif
