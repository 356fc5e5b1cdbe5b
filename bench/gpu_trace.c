/* Kernel timeline for gpu_bench --trace (bench/gpu_timeline.sh): CUPTI's concurrent-kernel
 * activity records each kernel's start and end as it ran, without serializing the kernels (ncu
 * does), so kernels that start early (programmatic dependent launch) show their overlap. Built
 * into gpu_bench when the CUDA toolkit has CUPTI. */
#include "gpu_trace.h"

#include <cupti.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct trace_rec {
    unsigned long long start, end;
    int grid;
    char name[96];
} trace_rec;

static trace_rec *g_recs;
static size_t g_n, g_cap;

static void CUPTIAPI buf_request(uint8_t **buf, size_t *size, size_t *max_records) {
    *size = (size_t)8 << 20;
    *buf = aligned_alloc(8, *size);
    *max_records = 0;
}

/* Kernel records only. The fields read (start, end, grid, name) sit at the same offsets in every
 * CUpti_ActivityKernel version from 4 on. */
static void CUPTIAPI buf_complete(CUcontext ctx, uint32_t stream, uint8_t *buf, size_t size, size_t valid) {
    (void)ctx, (void)stream, (void)size;
    CUpti_Activity *r = NULL;
    while (cuptiActivityGetNextRecord(buf, valid, &r) == CUPTI_SUCCESS) {
        if (r->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL)
            continue;
        const CUpti_ActivityKernel4 *k = (const CUpti_ActivityKernel4 *)r;
        if (g_n == g_cap) {
            size_t cap = g_cap ? 2 * g_cap : 4096;
            trace_rec *p = realloc(g_recs, cap * sizeof *p);
            if (!p)
                break;
            g_recs = p, g_cap = cap;
        }
        trace_rec *t = &g_recs[g_n++];
        t->start = k->start, t->end = k->end;
        t->grid = k->gridX * k->gridY * k->gridZ;
        snprintf(t->name, sizeof t->name, "%s", k->name ? k->name : "?");
    }
    free(buf);
}

int gpu_trace_start(void) {
    if (cuptiActivityRegisterCallbacks(buf_request, buf_complete) != CUPTI_SUCCESS ||
        cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
        fprintf(stderr, "gpu_bench: CUPTI kernel tracing is not available\n");
        return -1;
    }
    return 0;
}

static int cmp_start(const void *a, const void *b) {
    unsigned long long x = ((const trace_rec *)a)->start, y = ((const trace_rec *)b)->start;
    return x < y ? -1 : x > y;
}

int gpu_trace_stop(const char *path) {
    cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
    cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "gpu_bench: %s: cannot write the trace\n", path);
        return -1;
    }
    qsort(g_recs, g_n, sizeof *g_recs, cmp_start);
    fprintf(f, "start_ns,end_ns,grid,name\n");
    for (size_t i = 0; i < g_n; i++) {
        char *c = strchr(g_recs[i].name, ','); /* (a demangled name's template arguments would split the line) */
        if (c)
            *c = 0;
        fprintf(f, "%llu,%llu,%d,%s\n", g_recs[i].start, g_recs[i].end, g_recs[i].grid, g_recs[i].name);
    }
    fclose(f);
    free(g_recs);
    g_recs = NULL, g_n = g_cap = 0;
    return 0;
}
