#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define SPIN_ITERS 20000 /* a worker's spins for the next job before it sleeps */
#define WAIT_SPINS 2000  /* the caller's spins for the workers before it yields */

/* the next task of one thread's range, alone on its cache line */
typedef struct range_slot {
    _Alignas(64) atomic_int next;
    int end;
} range_slot;

struct lm_pool {
    int n_threads;
    range_slot *ranges;  /* [n_threads]; used when `ranged` */
    int ranged;
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;     /* bumped for each job */
    atomic_int next;     /* next task to take */
    atomic_int active;   /* workers still inside the current job */
    atomic_int stop;
    int n_tasks;
    lm_task_fn fn;
    void *ctx;
};

typedef struct worker_arg {
    lm_pool *pool;
    int id;
} worker_arg;

static void do_tasks(lm_pool *p, int thread) {
    if (p->ranged) { /* own range first, then the rest of the others' in turn */
        for (int k = 0; k < p->n_threads; k++) {
            range_slot *r = &p->ranges[(thread + k) % p->n_threads];
            for (int t; (t = atomic_fetch_add_explicit(&r->next, 1, memory_order_relaxed)) < r->end;)
                p->fn(p->ctx, t, thread);
        }
        return;
    }
    for (;;) {
        int t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= p->n_tasks)
            break;
        p->fn(p->ctx, t, thread);
    }
}

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    lm_pool *p = wa->pool;
    int id = wa->id;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen && !atomic_load(&p->stop)) {
            if (++spins < SPIN_ITERS) {
                if (spins % 256 == 0)
                    sched_yield(); /* let a descheduled peer of this pool run */
                else
                    CPU_RELAX();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop))
            break;
        seen = g;
        do_tasks(p, id);
        atomic_fetch_sub_explicit(&p->active, 1, memory_order_release);
    }
    return NULL;
}

int lm_physical_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    /* count distinct (package, core) pairs; fall back to logical CPUs */
    int seen[1024][2], ns = 0;
    for (long i = 0; i < n && i < 1024; i++) {
        char path[128];
        int pk = -1, co = -1;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/physical_package_id", i);
        FILE *f = fopen(path, "r");
        if (!f)
            return (int)n;
        if (fscanf(f, "%d", &pk) != 1)
            pk = -1;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/core_id", i);
        f = fopen(path, "r");
        if (!f)
            return (int)n;
        if (fscanf(f, "%d", &co) != 1)
            co = -1;
        fclose(f);
        int dup = 0;
        for (int j = 0; j < ns; j++)
            if (seen[j][0] == pk && seen[j][1] == co)
                dup = 1;
        if (!dup) {
            seen[ns][0] = pk;
            seen[ns][1] = co;
            ns++;
        }
    }
    return ns > 0 ? ns : (int)n;
}

lm_pool *lm_pool_new(int n_threads) {
    if (n_threads <= 0)
        n_threads = lm_physical_cores();
    if (n_threads > 256)
        n_threads = 256;
    lm_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->workers = calloc((size_t)n_threads, sizeof *p->workers);
    p->ranges = aligned_alloc(64, (size_t)n_threads * sizeof *p->ranges);
    if (!p->workers || !p->ranges) {
        free(p->workers);
        free(p->ranges);
        free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa || pthread_create(&p->workers[i], NULL, worker_main, (wa->pool = p, wa->id = i, wa)) != 0) {
            free(wa);
            p->n_threads = i; /* run with the workers we have */
            break;
        }
    }
    return p;
}

void lm_pool_free(lm_pool *p) {
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->workers[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->workers);
    free(p->ranges);
    free(p);
}

int lm_pool_threads(const lm_pool *p) { return p ? p->n_threads : 1; }

static void pool_run(lm_pool *p, int n_tasks, lm_task_fn fn, void *ctx, int ranged) {
    if (n_tasks <= 0)
        return;
    if (!p || p->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++)
            fn(ctx, t, 0);
        return;
    }
    p->ranged = ranged;
    for (int i = 0; ranged && i < p->n_threads; i++) {
        atomic_store_explicit(&p->ranges[i].next, (int)((long long)n_tasks * i / p->n_threads), memory_order_relaxed);
        p->ranges[i].end = (int)((long long)n_tasks * (i + 1) / p->n_threads);
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->active, p->n_threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    do_tasks(p, 0);
    /* wait for the workers' last tasks; on a busy machine a worker may be waiting for this very
     * core, so after a short spin give it away */
    for (int spins = 0; atomic_load_explicit(&p->active, memory_order_acquire) > 0; spins++) {
        if (spins < WAIT_SPINS)
            CPU_RELAX();
        else
            sched_yield();
    }
}

void lm_pool_run(lm_pool *p, int n_tasks, lm_task_fn fn, void *ctx) { pool_run(p, n_tasks, fn, ctx, 0); }

void lm_pool_run_ranges(lm_pool *p, int n_tasks, lm_task_fn fn, void *ctx) { pool_run(p, n_tasks, fn, ctx, 1); }
