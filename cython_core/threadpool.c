/* threadpool.c - persistent pthread pool (see threadpool.h).
 * Workers spin briefly on the generation counter (ops come in quick succession inside a
 * forward pass), then sleep on a condition variable; eng_pool_park ends the spin at once
 * (a burst of ops is over: leave the cores to the caller's other threads). The caller, done
 * with its share of a job, spins a little on the count of workers still in it before it
 * sleeps: the last worker is usually a few microseconds behind, less than a futex sleep and
 * wake-up cost (78 of those per 256x256 demo generation made it 9% slower on the 2-vCPU dev
 * VM). The caller's spin is kept short (CALLER_SPIN_NS): where the last worker was preempted
 * by another thread (the server's event loop), a long spin would keep a core from both (A/B
 * with 4 load.py clients: a 0.26 ms spin gave worse p99 latencies than 6 or 26 us).
 * Spins are measured in time, not iterations: a pause takes 13 ns on the dev VM, 40-50 ns on
 * Skylake-SP, and an ARM yield next to nothing.
 *
 * The mutex is taken only by a thread that goes to sleep and by whoever wakes one: a worker
 * whose spin sees the new job reads it without the lock (the caller writes it before the
 * release that bumps the generation), the caller broadcasts only when a worker sleeps, and
 * the last worker out signals only when the caller sleeps. Each side announces its sleep
 * (sleepers, caller_sleeping) before its last look at the other's counter, and the other
 * side changes that counter before it looks at the announcement, all sequentially
 * consistent: at least one of the two sees the other, so no wake-up is lost. Taking the
 * mutex on every job instead, a spinning worker saw the new generation while the caller
 * still held the mutex and slept on it (a futex sleep and a wake-up, tens of microseconds
 * on the dev VM, for ops of that size): ~145 futex calls per 256x256 demo generation. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "threadpool.h"

#define WORKER_SPIN_NS 250000 /* an idle worker's spin before it sleeps */
#define CALLER_SPIN_NS 25000  /* the caller's spin on the last worker before it sleeps */
#define SPIN_CLOCK_EVERY 32   /* spin iterations per clock read (~20-40 ns each, vDSO) */

struct eng_pool {
    int n;                      /* threads including the caller */
    pthread_t *workers;         /* n - 1 */
    int n_started;
    pthread_mutex_t run_mu;     /* serialises eng_pool_run callers */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    atomic_uint_fast64_t generation;
    atomic_int parked;          /* 1: idle workers stop spinning (eng_pool_park) */
    int stop;
    atomic_int sleepers;        /* workers asleep on cv_work or about to be (under mu) */
    atomic_int caller_sleeping; /* 1: the caller sleeps on cv_done or is about to (under mu) */
    /* current job (written before the generation is bumped) */
    eng_task_fn fn;
    void *ctx;
    int64_t n_tasks;
    atomic_int_fast64_t next;
    atomic_int active;          /* workers still inside the current job */
};

typedef struct worker_arg {
    eng_pool *pool;
    int id;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spin while still(p) holds, for about budget_ns; returns still(p) at the end. */
static int spin_while(eng_pool *p, int (*still)(eng_pool *, uint64_t), uint64_t arg,
                      uint64_t budget_ns) {
    if (!still(p, arg)) return 0; /* the common case: no clock read */
    uint64_t end = now_ns() + budget_ns;
    for (unsigned i = 1;; i++) {
        if (!still(p, arg)) return 0;
        if (i % SPIN_CLOCK_EVERY == 0 && now_ns() >= end) return still(p, arg);
        cpu_relax();
    }
}

/* a worker that has seen generation `seen`: no new job yet and not parked */
static int no_new_job(eng_pool *p, uint64_t seen) {
    return atomic_load_explicit(&p->generation, memory_order_acquire) == seen &&
           !atomic_load_explicit(&p->parked, memory_order_relaxed);
}

static int workers_busy(eng_pool *p, uint64_t unused) {
    (void)unused;
    return atomic_load_explicit(&p->active, memory_order_acquire) > 0;
}

static void run_tasks(eng_pool *p, int id) {
    int64_t t;
    while ((t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed)) < p->n_tasks)
        p->fn(p->ctx, t, id);
}

static void *worker_main(void *arg) {
    eng_pool *p = ((worker_arg *)arg)->pool;
    int id = ((worker_arg *)arg)->id;
    free(arg);
    uint64_t seen = 0;
    for (;;) {
        if (!atomic_load_explicit(&p->parked, memory_order_relaxed))
            spin_while(p, no_new_job, seen, WORKER_SPIN_NS);
        uint64_t g = atomic_load(&p->generation); /* seq_cst: see the header */
        if (g == seen) { /* no job yet: sleep (announced before the last look) */
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (!p->stop && (g = atomic_load(&p->generation)) == seen)
                pthread_cond_wait(&p->cv_work, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            const int stop = p->stop;
            pthread_mutex_unlock(&p->mu);
            if (stop) return NULL;
        }
        seen = g;

        run_tasks(p, id);

        /* the last one out wakes the caller if it sleeps: under mu, which the caller holds
         * from its announcement until it waits, so the wake-up cannot be lost */
        if (atomic_fetch_sub(&p->active, 1) == 1 && atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

eng_status eng_pool_create(int n_threads, eng_pool **out, eng_error *err) {
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "thread count %d outside [1, 1024]",
                           n_threads);
    eng_pool *p = calloc(1, sizeof *p);
    if (!p) return eng_err_set(err, ENG_ERR_OOM, "thread pool: out of memory");
    p->n = n_threads;
    pthread_mutex_init(&p->run_mu, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->next, 0);
    atomic_init(&p->parked, 0);
    atomic_init(&p->active, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->caller_sleeping, 0);
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) {
            eng_pool_free(p);
            return eng_err_set(err, ENG_ERR_OOM, "thread pool: out of memory");
        }
        for (int i = 1; i < n_threads; i++) {
            worker_arg *a = malloc(sizeof *a);
            if (!a) {
                eng_pool_free(p);
                return eng_err_set(err, ENG_ERR_OOM, "thread pool: out of memory");
            }
            a->pool = p;
            a->id = i;
            int rc = pthread_create(&p->workers[i - 1], NULL, worker_main, a);
            if (rc != 0) {
                free(a);
                eng_pool_free(p);
                return eng_err_set(err, ENG_ERR_OOM, "thread pool: cannot start thread %d of %d: %s",
                                   i + 1, n_threads, strerror(rc));
            }
            p->n_started++;
        }
    }
    *out = p;
    return ENG_OK;
}

void eng_pool_free(eng_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->workers[i], NULL);
    free(p->workers);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->run_mu);
    free(p);
}

int eng_pool_size(const eng_pool *p) { return p ? p->n : 1; }

void eng_pool_park(eng_pool *p) {
    if (p) atomic_store_explicit(&p->parked, 1, memory_order_relaxed);
}

void eng_pool_run(eng_pool *p, int64_t n_tasks, eng_task_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    if (!p || p->n == 1 || n_tasks == 1) {
        for (int64_t t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    pthread_mutex_lock(&p->run_mu);
    /* every worker has left the last job (active was 0): the job can be rewritten */
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->active, p->n - 1, memory_order_relaxed);
    atomic_store_explicit(&p->parked, 0, memory_order_relaxed);
    atomic_fetch_add(&p->generation, 1); /* seq_cst: publishes the job; see the header */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv_work);
        pthread_mutex_unlock(&p->mu);
    }

    run_tasks(p, 0);

    if (spin_while(p, workers_busy, 0, CALLER_SPIN_NS)) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_sleeping, 1);
        while (atomic_load(&p->active) > 0) pthread_cond_wait(&p->cv_done, &p->mu);
        atomic_store(&p->caller_sleeping, 0);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->run_mu);
}
