/* Run-time selection of the CPU kernel set. */
#include "backend/cpu/cpu_simd.h"

#include <stdlib.h>
#include <string.h>

static const char *const ISA_NAMES[LM_ISA_COUNT] = {
    [LM_ISA_SCALAR] = "scalar",
    [LM_ISA_AVX2] = "avx2",
    [LM_ISA_AVX512] = "avx512",
};

const char *lm_isa_name(lm_isa isa) { return isa >= 0 && isa < LM_ISA_COUNT ? ISA_NAMES[isa] : "?"; }

const lm_cpu_kernels *lm_cpu_kernels_get(lm_isa isa) {
    switch (isa) {
    case LM_ISA_SCALAR:
        return lm_cpu_kernels_scalar();
    case LM_ISA_AVX2:
        return lm_cpu_kernels_avx2();
    case LM_ISA_AVX512:
        return lm_cpu_kernels_avx512();
    default:
        return NULL;
    }
}

const lm_cpu_kernels *lm_cpu_kernels_best(void) {
    int cap = LM_ISA_COUNT - 1;
    const char *env = getenv("LMCORE_ISA");
    for (int i = 0; env && i < LM_ISA_COUNT; i++)
        if (strcmp(env, ISA_NAMES[i]) == 0)
            cap = i;
    for (int i = cap; i > 0; i--) {
        const lm_cpu_kernels *k = lm_cpu_kernels_get((lm_isa)i);
        if (k)
            return k;
    }
    return lm_cpu_kernels_scalar();
}
