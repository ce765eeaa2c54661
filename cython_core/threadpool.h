/* threadpool.h - the persistent thread pool: the only place the engine creates threads.
 * Work is a parallel-for over n_tasks indices handed out by an atomic counter; the calling
 * thread takes part (as thread 0). Concurrent callers are serialised. */
#ifndef ENG_THREADPOOL_H
#define ENG_THREADPOOL_H

#include <stdint.h>

#include "internal.h"

typedef struct eng_pool eng_pool;

/* task in [0, n_tasks); thread in [0, eng_pool_size(pool)) identifies per-thread scratch. */
typedef void (*eng_task_fn)(void *ctx, int64_t task, int thread);

eng_status eng_pool_create(int n_threads, eng_pool **out, eng_error *err);
void eng_pool_free(eng_pool *pool); /* NULL-safe; joins the workers */
int eng_pool_size(const eng_pool *pool);
/* Runs fn(ctx, t, thread) for every t in [0, n_tasks) and returns when all are done.
 * pool may be NULL (runs inline on the caller). */
void eng_pool_run(eng_pool *pool, int64_t n_tasks, eng_task_fn fn, void *ctx);
/* Idle workers stop spinning and sleep until the next eng_pool_run. NULL-safe. */
void eng_pool_park(eng_pool *pool);

#endif /* ENG_THREADPOOL_H */
