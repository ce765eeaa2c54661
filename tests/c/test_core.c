/* test_core.c - the engine core: dtype conversions (exhaustive for bf16/f16), arena, thread
 * pool, cancel token, ISA parsing/resolution, runtime parameters, error helpers. */
#define _DEFAULT_SOURCE /* usleep */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "arena.h"
#include "dtype.h"
#include "test_util.h"
#include "threadpool.h"
#include "sampler.h"

/* f16 -> f32 -> f16 is the identity for every non-NaN bit pattern; bf16 likewise. */
static void test_half_roundtrip_exhaustive(void) {
    int bad16 = 0, badb = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = eng_f16_to_f32_1((uint16_t)h);
        if (f == f && eng_f32_to_f16_1(f) != h) bad16++;
        float g = eng_bf16_to_f32_1((uint16_t)h);
        if (g == g && eng_f32_to_bf16_1(g) != h) badb++;
        if (!(f == f)) CHECK(((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff), "NaN from non-NaN 0x%x", h);
    }
    CHECK(bad16 == 0, "%d f16 patterns do not round-trip", bad16);
    CHECK(badb == 0, "%d bf16 patterns do not round-trip", badb);
}

/* f32 -> f16/bf16 rounds to nearest, ties to even, compared against a double-based oracle. */
static double f16_value(uint16_t h) { return (double)eng_f16_to_f32_1(h); }

static void test_rounding(void) {
    test_rng r = {7};
    int bad = 0;
    for (int i = 0; i < 200000; i++) {
        uint32_t bits = (uint32_t)(test_next(&r) >> 32);
        float f = eng_bits_f32(bits);
        if (!(f == f)) continue;
        double a = fabs((double)f);
        if (a > 65504.0) continue;
        uint16_t h = eng_f32_to_f16_1(f);
        /* the neighbour on each side must not be strictly closer, ties must pick even */
        double got = f16_value(h);
        uint16_t up = (uint16_t)(h + 1), dn = (uint16_t)(h - 1);
        double du = fabs(f16_value(up) - (double)f), dd = (h & 0x7fff) ? fabs(f16_value(dn) - (double)f) : INFINITY;
        double dg = fabs(got - (double)f);
        if ((h & 0x7c00) != 0x7c00 && (du < dg || dd < dg || ((du == dg || dd == dg) && (h & 1)))) bad++;
    }
    CHECK(bad == 0, "%d f32->f16 roundings are not nearest-even", bad);
    /* bf16 ties: 1 + 2^-8 -> 1.0 (even), 1 + 3*2^-8 -> 1 + 2^-6 */
    CHECK(eng_f32_to_bf16_1(1.00390625f) == 0x3f80, "bf16 tie to even (down)");
    CHECK(eng_f32_to_bf16_1(1.01171875f) == 0x3f82, "bf16 tie to even (up)");
    CHECK(eng_f32_to_bf16_1(3.4e38f) == 0x7f80, "bf16 overflow rounds to inf");
    CHECK(eng_f32_to_f16_1(65519.0f) == 0x7bff && eng_f32_to_f16_1(65520.0f) == 0x7c00, "f16 overflow edge");
    CHECK(eng_f32_to_f16_1(5.960464477539063e-08f) == 1, "smallest f16 subnormal");
    CHECK(eng_f32_to_f16_1(2.98023223876953125e-08f) == 0, "half the smallest subnormal ties to 0");
    CHECK(eng_f8e4m3_to_f32_1(0x7e) == 448.0f && eng_f8e4m3_to_f32_1(0x01) == 0.001953125f, "f8 e4m3");
    float nan = eng_bf16_to_f32_1(eng_f32_to_bf16_1(NAN));
    CHECK(nan != nan, "NaN survives bf16");
}

static void test_arena(void) {
    eng_arena a;
    eng_error err;
    eng_err_clear(&err);
    CHECK(eng_arena_init(&a, 1000, &err) == ENG_OK, "%s", err.message);
    void *p = eng_arena_alloc(&a, 10, "p", &err);
    void *q = eng_arena_alloc(&a, 100, "q", &err);
    CHECK(p && q && ((uintptr_t)p % ENG_ALIGN) == 0 && ((uintptr_t)q % ENG_ALIGN) == 0, "aligned");
    size_t mark = eng_arena_mark(&a);
    CHECK(eng_arena_alloc(&a, 2000, "too_big", &err) == NULL && err.status == ENG_ERR_OOM &&
              strstr(err.message, "too_big"),
          "overflow names the buffer: %s", err.message);
    eng_err_clear(&err);
    CHECK(eng_arena_alloc(&a, SIZE_MAX - 8, "huge", &err) == NULL, "size_t overflow is caught");
    eng_arena_reset(&a, mark);
    CHECK(a.used == mark && a.peak >= 164, "reset keeps peak");
    eng_arena_free(&a);
    eng_arena_free(&a); /* idempotent */
}

typedef struct pool_ctx {
    atomic_int_fast64_t sum;
    atomic_int hits[1000];
    atomic_int max_thread;
    int64_t out[1000]; /* plain memory each task writes: the caller must see it afterwards */
} pool_ctx;

static void pool_fn(void *ctx, int64_t task, int thread) {
    pool_ctx *c = ctx;
    atomic_fetch_add(&c->sum, task);
    atomic_fetch_add(&c->hits[task], 1);
    c->out[task] = 3 * task + 1;
    int m = atomic_load(&c->max_thread);
    while (thread > m && !atomic_compare_exchange_weak(&c->max_thread, &m, thread)) {
    }
}

static void slow_pool_fn(void *ctx, int64_t task, int thread) {
    pool_ctx *c = ctx;
    if (thread != 0) usleep(1500);
    atomic_fetch_add(&c->hits[task], 1);
}

/* workers take 1.5 ms per task, far longer than the caller spins for them: the caller must
 * sleep, be woken by the last worker and see every task's result when eng_pool_run returns */
static void check_caller_waits(eng_pool *pool, int n) {
    for (int rep = 0; rep < 20; rep++) {
        static pool_ctx c;
        memset(&c, 0, sizeof c);
        eng_pool_run(pool, 2 * n, slow_pool_fn, &c);
        int done = 0;
        for (int t = 0; t < 2 * n; t++) done += atomic_load(&c.hits[t]);
        CHECK(done == 2 * n, "eng_pool_run returned after every task (n=%d: %d of %d)", n, done,
              2 * n);
    }
}

/* The pool's lock-free hand-offs (threadpool.c): thousands of jobs of random size, with
 * workers spinning, parked or asleep and the caller spinning or asleep at random, each job
 * checked for every task exactly once. Run under TSan in CI as well. */
static void slowish_pool_fn(void *ctx, int64_t task, int thread) {
    if (thread != 0 && task % 7 == 0) usleep(40); /* longer than the caller's spin */
    pool_fn(ctx, task, thread);
}

static void test_pool_stress(void) {
    unsigned seed = 12345;
    for (int n = 2; n <= 4; n++) {
        eng_pool *pool = NULL;
        eng_error err;
        eng_err_clear(&err);
        CHECK(eng_pool_create(n, &pool, &err) == ENG_OK, "%s", err.message);
        int failures = 0;
        for (int rep = 0; rep < 1500; rep++) {
            static pool_ctx c;
            memset(&c, 0, sizeof c);
            seed = seed * 1103515245u + 12345u;
            const unsigned r = (seed >> 8) % 100;
            const int64_t tasks = 1 + (int64_t)((seed >> 16) % 48);
            eng_pool_run(pool, tasks, r < 10 ? slowish_pool_fn : pool_fn, &c);
            int wrong = atomic_load(&c.sum) != tasks * (tasks - 1) / 2;
            for (int64_t t = 0; t < tasks; t++)
                wrong += atomic_load(&c.hits[t]) != 1 || c.out[t] != 3 * t + 1;
            failures += wrong != 0;
            if (r >= 85) eng_pool_park(pool);
            if (r >= 95) usleep(400); /* past the workers' spin: they sleep on the condvar */
        }
        CHECK(failures == 0, "every job's tasks exactly once (n=%d: %d bad jobs)", n, failures);
        eng_pool_free(pool);
    }
}

static void test_pool(void) {
    for (int n = 1; n <= 4; n++) {
        eng_pool *pool = NULL;
        eng_error err;
        eng_err_clear(&err);
        CHECK(eng_pool_create(n, &pool, &err) == ENG_OK, "%s", err.message);
        for (int rep = 0; rep < 200; rep++) {
            static pool_ctx c;
            memset(&c, 0, sizeof c);
            int64_t tasks = 1 + rep % 1000;
            eng_pool_run(pool, tasks, pool_fn, &c);
            int dup = 0;
            for (int64_t t = 0; t < tasks; t++) dup += atomic_load(&c.hits[t]) != 1;
            CHECK(dup == 0 && atomic_load(&c.sum) == tasks * (tasks - 1) / 2,
                  "every task exactly once (n=%d tasks=%lld)", n, (long long)tasks);
            int bad = 0;
            for (int64_t t = 0; t < tasks; t++) bad += c.out[t] != 3 * t + 1;
            CHECK(bad == 0, "the tasks' plain writes are visible after eng_pool_run (n=%d)", n);
            CHECK(atomic_load(&c.max_thread) < n, "thread ids in range");
            if (rep % 3 == 0) eng_pool_park(pool); /* the next run must wake parked workers */
            if (rep % 50 == 0) usleep(2000);        /* ...also once they sleep on the condvar */
        }
        if (n > 1) check_caller_waits(pool, n);
        eng_pool_free(pool);
    }
    eng_pool *pool = NULL;
    eng_error err;
    eng_err_clear(&err);
    CHECK(eng_pool_create(0, &pool, &err) == ENG_ERR_INVALID_ARG && pool == NULL, "0 threads rejected");
    eng_pool_free(NULL);
    eng_pool_park(NULL);
}

static void *cancel_thread(void *arg) {
    eng_cancel_request((eng_cancel *)arg);
    return NULL;
}

static void test_cancel(void) {
    eng_cancel *c = eng_cancel_create();
    CHECK(c && !eng_cancel_requested(c), "fresh token");
    pthread_t th;
    pthread_create(&th, NULL, cancel_thread, c);
    pthread_join(th, NULL);
    CHECK(eng_cancel_requested(c), "cancelled from another thread");
    eng_cancel_free(c);
    CHECK(!eng_cancel_requested(NULL), "NULL token is never cancelled");
    eng_cancel_request(NULL);
    eng_cancel_free(NULL);
}

static void test_isa(void) {
    eng_isa isa;
    eng_error err;
    eng_err_clear(&err);
    CHECK(eng_isa_parse("AVX2", &isa, &err) == ENG_OK && isa == ENG_ISA_AVX2, "case-insensitive");
    CHECK(eng_isa_parse("sse9", &isa, &err) == ENG_ERR_INVALID_ARG && strstr(err.message, "sse9"),
          "unknown name: %s", err.message);
    CHECK(eng_isa_supported(ENG_ISA_SCALAR) && eng_isa_supported(eng_isa_best()), "best is supported");
    const eng_isa all[] = {ENG_ISA_AVX2, ENG_ISA_AVX512, ENG_ISA_NEON};
    for (int i = 0; i < 3; i++) {
        eng_err_clear(&err);
        eng_isa got;
        eng_status st = eng_isa_resolve(all[i], &got, &err);
        if (eng_isa_supported(all[i]))
            CHECK(st == ENG_OK && got == all[i], "%s resolves", eng_isa_name(all[i]));
        else
            CHECK(st == ENG_ERR_UNSUPPORTED && strstr(err.message, eng_isa_name(all[i])),
                  "missing ISA is an error, never a fallback: %s", err.message);
        /* a runtime asked for it behaves the same */
        eng_runtime_params p = eng_runtime_params_default();
        p.isa = all[i];
        p.n_threads = 1;
        eng_runtime *rt = NULL;
        eng_err_clear(&err);
        st = eng_runtime_create(&p, &rt, &err);
        CHECK((st == ENG_OK) == (eng_isa_supported(all[i]) != 0), "runtime %s", eng_isa_name(all[i]));
        if (rt) CHECK(eng_runtime_isa(rt) == all[i], "runtime keeps the ISA");
        eng_runtime_free(rt);
    }
    char feats[256];
    eng_cpu_features(feats, sizeof feats);
    CHECK(strlen(feats) > 0, "features string");
    CHECK(strstr(eng_build_info(), "version=") != NULL, "build info");
}

static void test_runtime_params(void) {
    eng_runtime_params p = eng_runtime_params_default();
    eng_runtime *rt = NULL;
    eng_error err;
    eng_err_clear(&err);
    p.n_threads = -1;
    CHECK(eng_runtime_create(&p, &rt, &err) == ENG_ERR_INVALID_ARG, "negative threads");
    p = eng_runtime_params_default();
    p.backend = ENG_BACKEND_CUDA;
    eng_err_clear(&err);
    CHECK(eng_runtime_create(&p, &rt, &err) == ENG_ERR_UNSUPPORTED && strstr(err.message, "cuda"),
          "cuda backend not built: %s", err.message);
    eng_runtime_free(NULL);
}

static void test_errors(void) {
    eng_error err;
    eng_err_clear(&err);
    eng_err_set(&err, ENG_ERR_FORMAT, "first %d", 1);
    eng_err_set(&err, ENG_ERR_IO, "second");
    CHECK(err.status == ENG_ERR_FORMAT && strcmp(err.message, "first 1") == 0, "first error wins");
    eng_err_prefix(&err, "loading '%s'", "x");
    CHECK(strcmp(err.message, "loading 'x': first 1") == 0, "prefix: %s", err.message);
    CHECK(strcmp(eng_status_name(ENG_ERR_CANCELLED), "ENG_ERR_CANCELLED") == 0, "status names");
    CHECK(strcmp(eng_status_name((eng_status)99), "ENG_ERR_UNKNOWN") == 0, "unknown status");
}

/* Random123 known-answer vectors for Philox4x32-10, and eng_randn's stream properties. */
static void test_philox_and_randn(void) {
    const uint32_t c0[4] = {0, 0, 0, 0}, k0[2] = {0, 0};
    const uint32_t c1[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, k1[2] = {0xffffffffu, 0xffffffffu};
    const uint32_t c2[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, k2[2] = {0xa4093822u, 0x299f31d0u};
    uint32_t o[4];
    eng_philox4x32_10(c0, k0, o);
    CHECK(o[0] == 0x6627e8d5u && o[1] == 0xe169c58du && o[2] == 0xbc57ac4cu && o[3] == 0x9b00dbd8u, "KAT zero");
    eng_philox4x32_10(c1, k1, o);
    CHECK(o[0] == 0x408f276du && o[1] == 0x41c83b0eu && o[2] == 0xa20bc7c6u && o[3] == 0x6d5451fdu, "KAT ones");
    eng_philox4x32_10(c2, k2, o);
    CHECK(o[0] == 0xd16cfe09u && o[1] == 0x94fdccebu && o[2] == 0x5001e420u && o[3] == 0x24126ea1u, "KAT pi");
    /* any offset/length split gives the same stream */
    float a[103], b[103];
    eng_randn(12345, 0, a, 103);
    eng_randn(12345, 0, b, 5);
    eng_randn(12345, 5, b + 5, 98);
    CHECK(memcmp(a, b, sizeof a) == 0, "stream is split-invariant");
    eng_randn(12346, 0, b, 103);
    CHECK(memcmp(a, b, sizeof a) != 0, "seeds differ");
    double s = 0, s2 = 0;
    static float big[1 << 16];
    eng_randn(7, 0, big, 1 << 16);
    for (int i = 0; i < (1 << 16); i++) s += big[i], s2 += (double)big[i] * big[i];
    s /= 1 << 16, s2 /= 1 << 16;
    CHECK(fabs(s) < 0.02 && fabs(s2 - 1.0) < 0.03, "mean %.4f var %.4f", s, s2);
    /* on a pool: bit-identical for every thread count, offset and length */
    static float par[(1 << 16) + 8];
    for (int threads = 1; threads <= 3; threads++) {
        eng_runtime *rt = test_runtime(ENG_ISA_AUTO, threads);
        eng_error err;
        eng_err_clear(&err);
        CHECK(eng_randn_parallel(rt, 7, 0, par, 1 << 16, &err) == ENG_OK, "%s", err.message);
        CHECK(memcmp(par, big, sizeof big) == 0, "threads=%d: differs from eng_randn", threads);
        CHECK(eng_randn_parallel(rt, 12345, 5, par, 98, &err) == ENG_OK, "%s", err.message);
        CHECK(memcmp(par, a + 5, 98 * sizeof(float)) == 0, "threads=%d: offset 5", threads);
        CHECK(eng_randn_parallel(rt, 1, 0, NULL, 4, &err) == ENG_ERR_INVALID_ARG, "NULL out");
        CHECK(eng_randn_parallel(rt, 1, 0, par, -1, &err) == ENG_ERR_INVALID_ARG, "n < 0");
        CHECK(eng_randn_parallel(NULL, 1, 0, par, 4, &err) == ENG_ERR_INVALID_ARG, "NULL rt");
        eng_runtime_free(rt);
    }
}

int main(void) {
    RUN(test_philox_and_randn);
    RUN(test_half_roundtrip_exhaustive);
    RUN(test_rounding);
    RUN(test_arena);
    RUN(test_pool);
    RUN(test_pool_stress);
    RUN(test_cancel);
    RUN(test_isa);
    RUN(test_runtime_params);
    RUN(test_errors);
    return test_finish("test_core");
}
