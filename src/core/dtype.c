#include "core/dtype.h"

#include <string.h>

const lm_dtype_info LM_DTYPES[LM_DT_COUNT] = {
    [LM_DT_F32] = {"F32", "f32", 4},       [LM_DT_F16] = {"F16", "f16", 2},
    [LM_DT_BF16] = {"BF16", "bf16", 2},    [LM_DT_F64] = {"F64", "f64", 8},
    [LM_DT_I64] = {"I64", "i64", 8},       [LM_DT_I32] = {"I32", "i32", 4},
    [LM_DT_I16] = {"I16", "i16", 2},       [LM_DT_I8] = {"I8", "i8", 1},
    [LM_DT_U64] = {"U64", "u64", 8},       [LM_DT_U32] = {"U32", "u32", 4},
    [LM_DT_U16] = {"U16", "u16", 2},       [LM_DT_U8] = {"U8", "u8", 1},
    [LM_DT_BOOL] = {"BOOL", "bool", 1},    [LM_DT_F8_E4M3] = {"F8_E4M3", "f8e4m3", 1},
    [LM_DT_F8_E5M2] = {"F8_E5M2", "f8e5m2", 1}, [LM_DT_F8_E8M0] = {"F8_E8M0", "e8m0", 1},
};

lm_dtype lm_dtype_from_st(const char *name) {
    for (int i = 0; i < LM_DT_COUNT; i++)
        if (strcmp(LM_DTYPES[i].st_name, name) == 0)
            return (lm_dtype)i;
    return LM_DT_COUNT;
}
