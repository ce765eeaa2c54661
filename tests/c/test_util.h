/* test_util.h - a tiny test harness for the C unit tests (one executable per concern).
 * Each executable prints one line per failed check and ends with "N passed, N failed"; its
 * exit status is nonzero when anything failed, which is what ctest reads. */
#ifndef ENG_TEST_UTIL_H
#define ENG_TEST_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "internal.h"
#include "kernels.h"

static int t_passed, t_failed;
static const char *t_current __attribute__((unused)) = "";

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (cond) {                                                                   \
            t_passed++;                                                               \
        } else {                                                                      \
            t_failed++;                                                               \
            printf("FAIL %s (%s:%d): %s -- ", t_current, __FILE__, __LINE__, #cond);  \
            printf(__VA_ARGS__);                                                      \
            printf("\n");                                                             \
        }                                                                             \
    } while (0)

#define RUN(fn)                  \
    do {                         \
        t_current = #fn;         \
        fn();                    \
    } while (0)

static inline int test_finish(const char *suite) {
    printf("%s: %d passed, %d failed\n", suite, t_passed, t_failed);
    return t_failed ? 1 : 0;
}

/* Deterministic xorshift64* generator: uniform floats in [-1, 1). */
typedef struct test_rng {
    uint64_t s;
} test_rng;
static inline uint64_t test_next(test_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ull;
}
static inline float test_uniform(test_rng *r) {
    return (float)((test_next(r) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static inline int64_t test_int(test_rng *r, int64_t lo, int64_t hi) { /* [lo, hi] */
    return lo + (int64_t)(test_next(r) % (uint64_t)(hi - lo + 1));
}
static inline void test_fill(test_rng *r, float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = test_uniform(r) * scale;
}

/* max |a - b| / max(max |b|, tiny) */
static inline double test_rel_err(const float *a, const float *b, int64_t n) {
    double md = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d) return INFINITY; /* NaN */
        if (d > md) md = d;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return md / (mb > 1e-30 ? mb : 1e-30);
}
static inline double test_max_abs(const float *a, const float *b, int64_t n) {
    double md = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d) return INFINITY;
        if (d > md) md = d;
    }
    return md;
}

/* The SIMD ISAs this CPU can run (scalar excluded); returns the count. */
static inline int test_simd_isas(eng_isa *out) {
    int n = 0;
    const eng_isa all[] = {ENG_ISA_AVX2, ENG_ISA_AVX512, ENG_ISA_NEON};
    for (int i = 0; i < 3; i++)
        if (eng_isa_supported(all[i])) out[n++] = all[i];
    return n;
}

static inline void *test_alloc(size_t bytes) {
    void *p = eng_aligned_alloc(bytes);
    if (!p) {
        printf("FATAL: out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    return p;
}

/* A runtime for one ISA and thread count; exits the test binary if it cannot be made. */
static inline eng_runtime *test_runtime(eng_isa isa, int threads) {
    eng_runtime_params p = eng_runtime_params_default();
    p.isa = isa;
    p.n_threads = threads;
    eng_runtime *rt = NULL;
    eng_error err;
    eng_err_clear(&err);
    if (eng_runtime_create(&p, &rt, &err) != ENG_OK) {
        printf("FATAL: runtime %s: %s\n", eng_isa_name(isa), err.message);
        exit(2);
    }
    return rt;
}

#endif /* ENG_TEST_UTIL_H */
