/* libFuzzer: the safetensors header parser on arbitrary file images. */
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lm_st_set *set = lm_st_new();
    if (!set)
        return 0;
    if (lm_st_parse_buffer(set, data, size, 0, "fuzz.safetensors") == LM_OK) {
        for (int i = 0; i < set->n_tensors; i++) { /* every tensor must lie inside the buffer */
            const lm_st_tensor *t = &set->tensors[i];
            const uint8_t *p = t->data;
            if (p < data || p + t->nbytes > data + size)
                __builtin_trap();
            if (t->nbytes)
                (void)(volatile uint8_t)p[t->nbytes - 1];
            if (lm_st_find(set, t->name) != t)
                __builtin_trap();
        }
    }
    lm_st_close(set); /* no files were mapped */
    return 0;
}
