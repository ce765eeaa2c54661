/* runtime.h - what an eng_runtime holds: the kernel table for its ISA, the thread pool, the
 * backend and per-thread scratch for packing buffers (grown before a parallel region, never
 * inside one). */
#ifndef ENG_RUNTIME_H
#define ENG_RUNTIME_H

#include <pthread.h>

#include "backend.h"
#include "internal.h"
#include "kernels.h"
#include "threadpool.h"

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
};

/* Ensures every thread has at least `bytes` of scratch (grows, never shrinks). Call before
 * eng_pool_run; tasks then use eng_runtime_thread_scratch(rt, thread). */
eng_status eng_runtime_reserve_scratch(eng_runtime *rt, size_t bytes, eng_error *err);
static inline void *eng_runtime_thread_scratch(eng_runtime *rt, int thread) {
    return rt->scratch[thread];
}

#endif /* ENG_RUNTIME_H */
