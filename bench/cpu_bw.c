/* Memory-bandwidth probe: a read-only streaming sum over a buffer far larger than the caches,
 * split across N threads, repeated; each thread reads its slice as 1 stream and, in other
 * repetitions, as 4 interleaved streams (kernels that read several rows at once see more
 * bandwidth that way), or as 1 stream that touches the page 64 KiB ahead once per 4 KiB page
 * (the buffer is in 4 KiB pages: the page walks of a plain stream, which the hardware
 * prefetchers do not start across page borders, held it 2-25% below what the memory gives on
 * the development machine, a KVM guest; the decode kernels do the same, LM_PAGE_AHEAD).
 * Prints, as JSON, the median and best GB/s of the best variant, and the best median of the
 * two plain variants (what this probe reported before the page-ahead variant).
 *   cpu_bw [THREADS=2] [MiB=1024] [REPS=9] */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_simd.h" /* LM_PAGE_AHEAD */
#include "core/util.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define TGT __attribute__((target("avx2")))
#else
#define TGT
#endif

typedef struct job {
    const uint8_t *p;
    size_t n;
    int streams; /* 1, 4, or 0: 1 stream with the page walk ahead */
    uint64_t sum;
    pthread_barrier_t *bar;
    double t0, t1;
} job;

TGT static uint64_t stream_sum1(const uint8_t *p, size_t n, int ahead) {
#if defined(__x86_64__)
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        if (ahead && (i & 4095) == 0)
            _mm_prefetch((const char *)(p + i + LM_PAGE_AHEAD), _MM_HINT_T0);
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    uint64_t o[4];
    _mm256_storeu_si256((__m256i *)o, _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
    return o[0] + o[1] + o[2] + o[3];
#else
    (void)ahead;
    uint64_t s = 0;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        s += v;
    }
    return s;
#endif
}

/* four quarters of the slice, 128 bytes of each in turn */
TGT static uint64_t stream_sum4(const uint8_t *p, size_t n) {
    size_t q = n / 4 / 128 * 128;
    uint64_t s = 0;
    for (size_t i = 0; i < q; i += 1024)
        for (int k = 0; k < 4; k++)
            s += stream_sum1(p + k * q + i, 1024 < q - i ? 1024 : q - i, 0);
    return s;
}

static void *run(void *arg) {
    job *j = arg;
    pthread_barrier_wait(j->bar);
    j->t0 = lm_time_s();
    j->sum = j->streams == 4 ? stream_sum4(j->p, j->n) : stream_sum1(j->p, j->n, j->streams == 0);
    j->t1 = lm_time_s();
    return NULL;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int nt = argc > 1 ? atoi(argv[1]) : 2, reps = argc > 3 ? atoi(argv[3]) : 9;
    size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 1024;
    if (nt < 1 || nt > 256 || mib < 64 || reps < 1 || reps > 99) {
        fprintf(stderr, "usage: cpu_bw [THREADS 1..256] [MiB >= 64] [REPS 1..99]\n");
        return 2;
    }
    size_t n = mib << 20;
    uint8_t *p = lm_malloc(n);
    if (!p) {
        fprintf(stderr, "cpu_bw: cannot allocate %zu MiB\n", mib);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)i;
    enum { NV = 3 };
    static const int STREAMS[NV] = {1, 4, 0};
    double gbs[NV][99];
    uint64_t check = 0;
    for (int r = 0; r < NV * reps; r++) {
        int streams = STREAMS[r % NV];
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, (unsigned)nt);
        job jobs[256];
        pthread_t th[256];
        size_t per = n / (size_t)nt / 128 * 128;
        for (int t = 0; t < nt; t++) {
            jobs[t] = (job){p + per * t, per, streams, 0, &bar, 0, 0};
            if (t)
                pthread_create(&th[t], NULL, run, &jobs[t]);
        }
        run(&jobs[0]);
        double t0 = jobs[0].t0, t1 = jobs[0].t1;
        for (int t = 1; t < nt; t++) {
            pthread_join(th[t], NULL);
            t0 = jobs[t].t0 < t0 ? jobs[t].t0 : t0;
            t1 = jobs[t].t1 > t1 ? jobs[t].t1 : t1;
        }
        for (int t = 0; t < nt; t++)
            check += jobs[t].sum;
        pthread_barrier_destroy(&bar);
        gbs[r % NV][r / NV] = (double)per * nt / (t1 - t0) / 1e9;
    }
    int v = 0;
    for (int k = 0; k < NV; k++) {
        qsort(gbs[k], (size_t)reps, sizeof gbs[k][0], cmp_d);
        v = gbs[k][reps / 2] > gbs[v][reps / 2] ? k : v;
    }
    double plain = gbs[1][reps / 2] > gbs[0][reps / 2] ? gbs[1][reps / 2] : gbs[0][reps / 2];
    printf("{\"threads\": %d, \"mib\": %zu, \"median_gbs\": %.2f, \"best_gbs\": %.2f, \"streams\": %d, "
           "\"page_ahead\": %d, \"median_1_stream\": %.2f, \"median_page_ahead\": %.2f, \"median_plain\": %.2f, "
           "\"check\": %llu}\n",
           nt, mib, gbs[v][reps / 2], gbs[v][reps - 1], STREAMS[v] ? STREAMS[v] : 1, STREAMS[v] == 0, gbs[0][reps / 2],
           gbs[2][reps / 2], plain, (unsigned long long)(check & 0xff));
    lm_free(p);
    return 0;
}
