/* Scalar-portable CPU kernels (the reference every SIMD path is tested against). */
#ifndef LM_CPU_KERNELS_H
#define LM_CPU_KERNELS_H
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"

float lm_dot_f32(const float *x, const float *w, int n);
float lm_dot_bf16(const float *x, const uint16_t *w, int n);
float lm_dot_f16(const float *x, const uint16_t *w, int n);
/* dot of x with a dense row of dtype dt */
float lm_dot_dense(const float *x, const void *w, lm_dtype dt, int n);

float lm_gelu_tanh(float x);
float lm_gelu_erf(float x);
float lm_silu(float x);

#endif
