/* The thread pool: every task runs exactly once on a valid thread, with the plain scheduler and
 * with contiguous ranges per thread (lm_pool_run_ranges), for task counts below, at and above
 * the thread count; with ranges a thread that finds its range untouched runs it in order. */
#include <stdatomic.h>

#include "core/threadpool.h"
#include "test_util.h"

#define MAXT 1000

typedef struct job {
    atomic_int runs[MAXT];
    atomic_int bad_thread;
    atomic_int backwards; /* tasks a thread ran below its previous one of the same range */
    int n_threads, n_tasks;
    int last[8];          /* per thread: the last task it ran (-1: none) */
} job;

/* the range holding task t, as lm_pool_run_ranges splits n tasks over nt threads */
static int range_of(int t, int n, int nt) {
    int r = 0;
    while ((long long)n * (r + 1) / nt <= t)
        r++;
    return r;
}

static void task(void *ctx, int t, int thread) {
    job *j = ctx;
    atomic_fetch_add(&j->runs[t], 1);
    if (thread < 0 || thread >= j->n_threads) {
        atomic_fetch_add(&j->bad_thread, 1);
        return;
    }
    int prev = j->last[thread];
    if (prev > t && range_of(prev, j->n_tasks, j->n_threads) == range_of(t, j->n_tasks, j->n_threads))
        atomic_fetch_add(&j->backwards, 1);
    j->last[thread] = t;
}

int main(void) {
    static job j;
    const int counts[] = {1, 2, 3, 7, 16, 17, 64, 999};
    for (int nt = 1; nt <= 4; nt++) {
        lm_pool *p = lm_pool_new(nt);
        CHECK(p != NULL);
        if (!p)
            continue;
        CHECK(lm_pool_threads(p) == nt);
        for (int ranged = 0; ranged < 2; ranged++)
            for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
                for (int rep = 0; rep < 20; rep++) {
                    int n = counts[c];
                    for (int t = 0; t < n; t++)
                        atomic_store(&j.runs[t], 0);
                    atomic_store(&j.bad_thread, 0);
                    j.n_threads = nt;
                    j.n_tasks = n;
                    atomic_store(&j.backwards, 0);
                    for (int k = 0; k < 8; k++)
                        j.last[k] = -1;
                    if (ranged)
                        lm_pool_run_ranges(p, n, task, &j);
                    else
                        lm_pool_run(p, n, task, &j);
                    int once = 1;
                    for (int t = 0; t < n; t++)
                        once &= atomic_load(&j.runs[t]) == 1;
                    CHECKF(once, "threads %d, %s, %d tasks: every task once", nt, ranged ? "ranges" : "plain", n);
                    CHECKF(atomic_load(&j.bad_thread) == 0, "threads %d, %d tasks: thread ids", nt, n);
                    if (ranged)
                        CHECKF(atomic_load(&j.backwards) == 0, "threads %d, %d tasks: a range ran out of order", nt, n);
                }
        lm_pool_run_ranges(p, 0, task, &j); /* no tasks: returns */
        lm_pool_free(p);
    }
    return test_done("threadpool");
}
