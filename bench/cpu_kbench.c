/* Kernel speed in isolation: the backend's linear op on weights far larger than the caches.
 * Decode (T=1) as GB/s of weight streamed; prefill (T tokens) as GFLOP/s.
 *   cpu_kbench [THREADS=1] [T=64] [FORMAT=all]   (LMCORE_ISA caps the kernel set)
 * KB_OUT=ROWS (default 8192; 256 keeps one matrix in cache), KB_IN=COLUMNS (default 2048; a
 * multiple of 64, e.g. 1024 for Qwen3-0.6B rows). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_simd.h"
#include "core/util.h"

#include <time.h>

static double cpu_s(void) { /* CPU time of the whole process: under contention, rate per CPU-second */
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct fmt {
    const char *name;
    lm_wkind kind;
    lm_dtype dt;
    int bits;
} fmt;

static const fmt FMTS[] = {{"bf16", LM_W_DENSE, LM_DT_BF16, 16}, {"f16", LM_W_DENSE, LM_DT_F16, 16},
                           {"f32", LM_W_DENSE, LM_DT_F32, 32},   {"q8", LM_W_AFFINE, LM_DT_BF16, 8},
                           {"q4", LM_W_AFFINE, LM_DT_BF16, 4},   {"q6", LM_W_AFFINE, LM_DT_BF16, 6},
                           {"mxfp4", LM_W_MXFP4, LM_DT_U8, 4}};

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1, T = argc > 2 ? atoi(argv[2]) : 64;
    const char *only = argc > 3 ? argv[3] : "all";
    if (threads < 1 || T < 1) {
        fprintf(stderr, "usage: cpu_kbench [THREADS] [T] [FORMAT]\n");
        return 2;
    }
    lm_backend *be;
    if (lm_backend_cpu_new(threads, &be) != LM_OK)
        return 1;
    const int out = getenv("KB_OUT") ? atoi(getenv("KB_OUT")) : 8192, /* KB_OUT=256: in cache */
              in = getenv("KB_IN") ? atoi(getenv("KB_IN")) : 2048; /* KB_IN=1024: Qwen3-0.6B rows */
    printf("kernels %s, %d threads\n", lm_cpu_kernels_best()->name, threads);
    for (size_t f = 0; f < sizeof FMTS / sizeof FMTS[0]; f++) {
        const fmt *F = &FMTS[f];
        if (strcmp(only, "all") && strcmp(only, F->name))
            continue;
        lm_linear w = {.kind = F->kind, .dtype = F->dt, .out = out, .in = in, .in_step = 1};
        w.bits = F->bits;
        w.group = F->kind == LM_W_MXFP4 ? 32 : 64;
        w.w_row_bytes = (size_t)in * F->bits / 8;
        w.s_row_bytes = F->kind == LM_W_MXFP4 ? (size_t)in / 32 : F->kind == LM_W_AFFINE ? (size_t)in / 64 * 2 : 0;
        size_t one = lm_linear_bytes(&w);
        int nmat = out < 8192 ? 1 : (int)((512u << 20) / one) + 1; /* > 512 MiB: nothing stays in cache */
        lm_linear *ws = calloc((size_t)nmat, sizeof *ws);
        for (int m = 0; m < nmat; m++) {
            ws[m] = w;
            uint8_t *d = lm_malloc(w.w_row_bytes * out), *s = lm_malloc(w.s_row_bytes * out + 1),
                    *b = lm_malloc(w.s_row_bytes * out + 1);
            for (size_t i = 0; i < w.w_row_bytes * out; i++)
                d[i] = (uint8_t)(i * 2654435761u >> 13);
            for (size_t i = 0; i < w.s_row_bytes * out; i++)
                s[i] = b[i] = F->kind == LM_W_MXFP4 ? 120 : (i & 1 ? 0x3c : 0);
            if (F->kind == LM_W_DENSE && F->dt == LM_DT_F32)
                for (size_t i = 0; i < (size_t)out * in; i++)
                    ((float *)d)[i] = 0.01f;
            ws[m].w = d, ws[m].scales = s, ws[m].biases = b;
        }
        be->ops->reserve(be, in, 16);
        float *x = be->ops->alloc(be, (size_t)T * in * 4), *y = be->ops->alloc(be, (size_t)T * out * 4);
        for (int i = 0; i < T * in; i++)
            x[i] = (float)(i % 7) * 0.1f;
        for (int m = 0; m < nmat; m++) /* warm-up */
            be->ops->linear(be, &ws[m], x, 1, y);
        double t0 = lm_time_s(), c0 = cpu_s();
        int iters = 0;
        while (lm_time_s() - t0 < 1.0)
            for (int m = 0; m < nmat; m++, iters++)
                be->ops->linear(be, &ws[m], x, 1, y);
        double gbs = (double)one * iters / (lm_time_s() - t0) / 1e9;
        double gbc = (double)one * iters / (cpu_s() - c0) / 1e9 * threads;
        t0 = lm_time_s(), c0 = cpu_s();
        int gi = 0;
        while (lm_time_s() - t0 < 1.0)
            be->ops->linear(be, &ws[gi++ % nmat], x, T, y);
        double gfl = 2.0 * out * in * T * gi / (lm_time_s() - t0) / 1e9;
        double gfc = 2.0 * out * in * T * gi / (cpu_s() - c0) / 1e9 * threads;
        printf("%-6s decode %6.2f GB/s (%6.2f per CPU-s x threads)   prefill T=%d %7.1f GFLOP/s (%7.1f)\n", F->name,
               gbs, gbc, T, gfl, gfc);
        for (int m = 0; m < nmat; m++) {
            lm_free((void *)ws[m].w);
            lm_free((void *)ws[m].scales);
            lm_free((void *)ws[m].biases);
        }
        free(ws);
        be->ops->release(be, x);
        be->ops->release(be, y);
    }
    be->ops->destroy(be);
    return 0;
}
