/* runtime.c - eng_runtime: ISA resolution, kernel table, thread pool, scratch, backend. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime.h"

eng_runtime_params eng_runtime_params_default(void) {
    eng_runtime_params p;
    memset(&p, 0, sizeof p);
    p.isa = ENG_ISA_AUTO;
    p.backend = ENG_BACKEND_AUTO;
    p.n_threads = 0;
    return p;
}

static int default_threads(void) {
    const char *env = getenv("ENG_THREADS");
    if (env && env[0]) {
        char *end = NULL;
        long v = strtol(env, &end, 10);
        if (end && *end == '\0' && v >= 1 && v <= 1024) return (int)v;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 ? (int)(n > 1024 ? 1024 : n) : 1;
}

eng_status eng_runtime_create(const eng_runtime_params *p, eng_runtime **out, eng_error *err) {
    if (!out) return eng_err_set(err, ENG_ERR_INVALID_ARG, "eng_runtime_create: out is NULL");
    *out = NULL;
    eng_runtime_params params = p ? *p : eng_runtime_params_default();
    if (params.n_threads < 0 || params.n_threads > 1024)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "threads=%d outside [0, 1024] (0 = all CPUs)",
                           params.n_threads);
    if (params.backend < 0 || params.backend >= ENG_BACKEND_COUNT)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "backend value %d out of range",
                           (int)params.backend);
    if (params.backend == ENG_BACKEND_CUDA)
        return eng_err_set(err, ENG_ERR_UNSUPPORTED,
                           "backend 'cuda' is not available: the CUDA backend is not built yet "
                           "(configure with -DENG_CUDA=ON once it exists)");
    eng_isa isa;
    eng_status st = eng_isa_resolve(params.isa, &isa, err);
    if (st != ENG_OK) return st;

    eng_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) return eng_err_set(err, ENG_ERR_OOM, "runtime: out of memory");
    rt->isa = isa;
    rt->backend = ENG_BACKEND_CPU;
    rt->ops = &eng_backend_cpu;
    rt->n_threads = params.n_threads ? params.n_threads : default_threads();
    pthread_mutex_init(&rt->lock, NULL);
    if ((st = eng_kernels_init(&rt->kern, isa, err)) != ENG_OK) goto fail;
    if ((st = eng_pool_create(rt->n_threads, &rt->pool, err)) != ENG_OK) goto fail;
    rt->scratch = calloc((size_t)rt->n_threads, sizeof *rt->scratch);
    if (!rt->scratch) {
        st = eng_err_set(err, ENG_ERR_OOM, "runtime: out of memory");
        goto fail;
    }
    *out = rt;
    return ENG_OK;
fail:
    eng_runtime_free(rt);
    return st;
}

void eng_runtime_free(eng_runtime *rt) {
    if (!rt) return;
    eng_pool_free(rt->pool);
    eng_runtime_trim_locked(rt);
    if (rt->scratch)
        for (int i = 0; i < rt->n_threads; i++) eng_free(rt->scratch[i]);
    free(rt->scratch);
    pthread_mutex_destroy(&rt->lock);
    free(rt);
}

eng_isa eng_runtime_isa(const eng_runtime *rt) { return rt ? rt->isa : ENG_ISA_AUTO; }
eng_backend eng_runtime_backend(const eng_runtime *rt) { return rt ? rt->backend : ENG_BACKEND_AUTO; }
int32_t eng_runtime_threads(const eng_runtime *rt) { return rt ? rt->n_threads : 0; }

void eng_runtime_park(eng_runtime *rt) {
    if (rt) eng_pool_park(rt->pool);
}

void *eng_runtime_workspace(eng_runtime *rt, eng_ws_slot slot, size_t bytes, const char *what,
                            eng_error *err) {
    if (bytes <= rt->ws_cap[slot] && rt->ws[slot]) return rt->ws[slot];
    eng_free(rt->ws[slot]);
    rt->ws_cap[slot] = 0;
    if (!(rt->ws[slot] = eng_aligned_alloc(bytes))) {
        eng_err_set(err, ENG_ERR_OOM, "%s: cannot allocate %zu bytes of workspace", what, bytes);
        return NULL;
    }
    rt->ws_cap[slot] = bytes;
    return rt->ws[slot];
}

void eng_runtime_trim_locked(eng_runtime *rt) {
    for (int i = 0; i < ENG_WS_COUNT; i++) {
        eng_free(rt->ws[i]);
        rt->ws[i] = NULL;
        rt->ws_cap[i] = 0;
    }
}

void eng_runtime_trim(eng_runtime *rt) {
    if (!rt) return;
    pthread_mutex_lock(&rt->lock);
    eng_runtime_trim_locked(rt);
    pthread_mutex_unlock(&rt->lock);
}

eng_status eng_runtime_reserve_scratch(eng_runtime *rt, size_t bytes, eng_error *err) {
    if (bytes <= rt->scratch_bytes) return ENG_OK;
    for (int i = 0; i < rt->n_threads; i++) {
        void *blk = eng_aligned_alloc(bytes);
        if (!blk)
            return eng_err_set(err, ENG_ERR_OOM, "runtime scratch: cannot allocate %zu bytes x %d threads",
                               bytes, rt->n_threads);
        eng_free(rt->scratch[i]);
        rt->scratch[i] = blk;
    }
    rt->scratch_bytes = bytes;
    return ENG_OK;
}
