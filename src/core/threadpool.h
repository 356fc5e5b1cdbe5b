/* A persistent thread pool for data-parallel loops. The calling thread takes part, so a pool
 * of n threads starts n-1 workers. Workers spin briefly between jobs (decode issues hundreds
 * of small parallel loops per token) and then sleep. */
#ifndef LM_CORE_THREADPOOL_H
#define LM_CORE_THREADPOOL_H

typedef struct lm_pool lm_pool;

/* fn(ctx, task, thread): called once for every task in [0, n_tasks); thread in [0, n_threads). */
typedef void (*lm_task_fn)(void *ctx, int task, int thread);

/* n_threads <= 0: one per physical core. NULL on failure. */
lm_pool *lm_pool_new(int n_threads);
void lm_pool_free(lm_pool *pool);
int lm_pool_threads(const lm_pool *pool);
/* Run n_tasks tasks and wait for all of them. Not reentrant. */
void lm_pool_run(lm_pool *pool, int n_tasks, lm_task_fn fn, void *ctx);
/* The same, the tasks split into one contiguous range per thread: a thread runs its own range
 * in order, then what is left of the others' (tasks that stream memory in order then read one
 * sequential stream per thread). */
void lm_pool_run_ranges(lm_pool *pool, int n_tasks, lm_task_fn fn, void *ctx);
int lm_physical_cores(void);

#endif
