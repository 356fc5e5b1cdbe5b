/* The CUDA entry points of a build without CUDA (LMCORE_CUDA off or no nvcc). */
#include "backend/backend.h"

#ifndef LM_HAVE_CUDA
lm_status lm_backend_cuda_new(int device, lm_backend **out) {
    *out = NULL;
    return lm_err(LM_ERR_UNSUPPORTED, "this build of lmcore has no CUDA backend (configure with nvcc present and "
                  "-DLMCORE_CUDA=ON)");
}

int lm_backend_cuda_available(void) { return 0; }
#else
typedef int lm_cuda_none_unused; /* ISO C forbids an empty translation unit */
#endif
