/* runtime.h - what an eng_runtime holds: the kernel table for its ISA, the thread pool, the
 * backend, per-thread scratch for packing buffers (grown before a parallel region, never
 * inside one) and the kept workspaces of the model code. */
#ifndef ENG_RUNTIME_H
#define ENG_RUNTIME_H

#include <pthread.h>

#include "backend.h"
#include "internal.h"
#include "kernels.h"
#include "threadpool.h"

/* Workspaces kept from one op to the next: every op of a runtime runs under its lock, one at
 * a time, so the transformer, the VAE and the text encoder share one activation arena (peak
 * memory is the largest of them, as if each freed its own) and no op pays for fresh pages.
 * Fresh pages are not free: a page first read then written takes two faults, and with the
 * pool's threads on other cores each costs a TLB-shootdown IPI (the 256x256 demo VAE ran
 * 1.7x slower in a gRPC server process). Freed by eng_runtime_trim. */
typedef enum eng_ws_slot {
    ENG_WS_ACTIVATIONS = 0,        /* the arena of a forward / decode (eng_arena over it);
                                    * png_zlib's filtered bands                            */
    ENG_WS_ATTENTION = 1,          /* attention's packed K/V (inside a forward's arena use) */
    ENG_WS_COUNT
} eng_ws_slot;

struct eng_runtime {
    eng_kernels kern;              /* copy of the table for `isa` */
    eng_isa isa;
    eng_backend backend;
    const eng_backend_ops *ops;
    eng_pool *pool;
    int n_threads;
    pthread_mutex_t lock;          /* public ops hold it; internal code calls *_impl directly */
    unsigned char **scratch;       /* [n_threads] ENG_ALIGN-aligned blocks */
    size_t scratch_bytes;          /* size of each block */
    unsigned char *ws[ENG_WS_COUNT]; /* ENG_ALIGN-aligned, ws_cap[i] bytes (NULL when 0)     */
    size_t ws_cap[ENG_WS_COUNT];
};

/* At least `bytes` of workspace `slot` (grown, contents lost; kept after the op). The caller
 * holds rt->lock. NULL + ENG_ERR_OOM on failure (what = the caller, for the message). */
void *eng_runtime_workspace(eng_runtime *rt, eng_ws_slot slot, size_t bytes, const char *what,
                            eng_error *err);
/* Frees the workspaces; the caller holds rt->lock. */
void eng_runtime_trim_locked(eng_runtime *rt);

/* Ensures every thread has at least `bytes` of scratch (grows, never shrinks). Call before
 * eng_pool_run; tasks then use eng_runtime_thread_scratch(rt, thread). */
eng_status eng_runtime_reserve_scratch(eng_runtime *rt, size_t bytes, eng_error *err);
static inline void *eng_runtime_thread_scratch(eng_runtime *rt, int thread) {
    return rt->scratch[thread];
}

/* A public op that is one parallel loop: n_tasks of fn on rt's pool, under rt->lock. */
static inline void eng_runtime_parallel(eng_runtime *rt, int64_t n_tasks, eng_task_fn fn,
                                        void *ctx) {
    pthread_mutex_lock(&rt->lock);
    eng_pool_run(rt->pool, n_tasks, fn, ctx);
    pthread_mutex_unlock(&rt->lock);
}

#endif /* ENG_RUNTIME_H */
