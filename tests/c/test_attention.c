/* test_attention.c - eng_attention (attention.c + kern_attn_*.c) against a naive
 * double-precision oracle that materialises the (sq, sk) scores (llm.c pattern), through a
 * runtime for the scalar ISA and every SIMD ISA this CPU runs, with 1 and 2 threads; plus the
 * attn_softmax_tile kernels against the scalar specification, cancellation and the
 * invalid-argument messages of ops.c.
 *
 * Tolerance: relative 1e-5 of max |o_ref| over the whole output. The engine computes in f32:
 * d-term dot products, sk-term sums of p and p.v, scale folded into Q, and a ~2 ulp vector exp
 * in the SIMD tables, so its error is a few 1e-7 to 1e-6 of the output scale at these sizes;
 * an indexing, masking or rescaling bug moves outputs by O(1e-2) or more. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <pthread.h>
#include <time.h>

#include "test_util.h"

#define MAX_RTS 8
#define TOL 1e-5

typedef struct rt_list {
    eng_runtime *rt[MAX_RTS];
    char name[MAX_RTS][32];
    int n;
} rt_list;

static rt_list g_rts; /* every (ISA, threads) runtime under test */

static void rts_open(void) {
    eng_isa isas[4] = {ENG_ISA_SCALAR};
    int n_isa = 1 + test_simd_isas(isas + 1);
    for (int i = 0; i < n_isa; i++) {
        for (int th = 1; th <= 2; th++) {
            eng_runtime_params p = eng_runtime_params_default();
            p.isa = isas[i];
            p.n_threads = th;
            eng_error err = {0};
            eng_runtime *rt = NULL;
            eng_status st = eng_runtime_create(&p, &rt, &err);
            CHECK(st == ENG_OK, "runtime %s x%d: %s", eng_isa_name(isas[i]), th, err.message);
            if (st != ENG_OK) continue;
            g_rts.rt[g_rts.n] = rt;
            snprintf(g_rts.name[g_rts.n], sizeof g_rts.name[0], "%s x%d", eng_isa_name(isas[i]),
                     th);
            g_rts.n++;
        }
    }
}

static void rts_close(void) {
    for (int i = 0; i < g_rts.n; i++) eng_runtime_free(g_rts.rt[i]);
}

/* Naive oracle in double. o, q: (hq, sq, d); k, v: (hkv, sk, d); mask (sk) or NULL. */
static void ref_attention(float *o, const float *q, const float *k, const float *v,
                          const uint8_t *mask, int causal, int64_t hq, int64_t hkv, int64_t sq,
                          int64_t sk, int64_t d, double scale) {
    double *s = malloc((size_t)sk * sizeof(double));   /* (sk) scores of one query */
    double *acc = malloc((size_t)d * sizeof(double));  /* (d) */
    if (!s || !acc) {
        printf("FATAL: out of memory\n");
        exit(2);
    }
    const int64_t group = hq / hkv;
    for (int64_t h = 0; h < hq; h++) {
        const float *kh = k + (h / group) * sk * d, *vh = v + (h / group) * sk * d;
        for (int64_t i = 0; i < sq; i++) {
            const float *qi = q + (h * sq + i) * d;
            double mx = -INFINITY;
            for (int64_t j = 0; j < sk; j++) {
                int visible = (!mask || mask[j]) && (!causal || j <= i);
                if (!visible) {
                    s[j] = -INFINITY;
                    continue;
                }
                double dot = 0;
                for (int64_t c = 0; c < d; c++) dot += (double)qi[c] * kh[j * d + c];
                s[j] = dot * scale;
                if (s[j] > mx) mx = s[j];
            }
            float *oi = o + (h * sq + i) * d;
            if (mx == -INFINITY) {
                for (int64_t c = 0; c < d; c++) oi[c] = 0.0f;
                continue;
            }
            double sum = 0;
            for (int64_t c = 0; c < d; c++) acc[c] = 0;
            for (int64_t j = 0; j < sk; j++) {
                if (s[j] == -INFINITY) continue;
                double p = exp(s[j] - mx);
                sum += p;
                for (int64_t c = 0; c < d; c++) acc[c] += p * vh[j * d + c];
            }
            for (int64_t c = 0; c < d; c++) oi[c] = (float)(acc[c] / sum);
        }
    }
    free(s);
    free(acc);
}

enum { MASK_NONE, MASK_RANDOM, MASK_ALL_MASKED, MASK_ALL_VISIBLE, MASK_MIDDLE_BLOCK, MASK_PREFIX };

/* Runs one shape through every runtime and compares with the oracle. Returns the worst error. */
static double run_case(test_rng *r, int64_t hq, int64_t hkv, int64_t sq, int64_t sk, int64_t d,
                       int mask_kind, int causal, float scale, float in_scale) {
    const int64_t nq = hq * sq * d, nk = hkv * sk * d;
    float *q = test_alloc((size_t)nq * 4);   /* (hq, sq, d) */
    float *k = test_alloc((size_t)nk * 4);   /* (hkv, sk, d) */
    float *v = test_alloc((size_t)nk * 4);   /* (hkv, sk, d) */
    float *o = test_alloc((size_t)nq * 4);   /* (hq, sq, d) */
    float *ref = test_alloc((size_t)nq * 4); /* (hq, sq, d) */
    uint8_t *mask = NULL;                    /* (sk) */
    test_fill(r, q, nq, in_scale);
    test_fill(r, k, nk, in_scale);
    test_fill(r, v, nk, 1.0f);
    if (mask_kind != MASK_NONE) {
        mask = test_alloc((size_t)sk);
        for (int64_t j = 0; j < sk; j++) {
            switch (mask_kind) {
            case MASK_RANDOM: /* 3/4 visible, any nonzero byte means visible */
                mask[j] = (uint8_t)(test_next(r) % 4 != 0 ? 1 + test_next(r) % 255 : 0);
                break;
            case MASK_ALL_MASKED: mask[j] = 0; break;
            case MASK_ALL_VISIBLE: mask[j] = 1; break;
            case MASK_MIDDLE_BLOCK: mask[j] = !(j >= 200 && j < 560); break; /* whole blocks */
            case MASK_PREFIX: mask[j] = j >= sk / 3; break; /* causal: early queries see nothing */
            }
        }
    }
    const double eff_scale = scale > 0 ? (double)scale : 1.0 / sqrt((double)d);
    ref_attention(ref, q, k, v, mask, causal, hq, hkv, sq, sk, d, eff_scale);
    int want_zeros = mask_kind == MASK_ALL_MASKED;
    double worst = 0;
    for (int i = 0; i < g_rts.n; i++) {
        for (int64_t j = 0; j < nq; j++) o[j] = NAN;
        eng_error err = {0};
        eng_status st = eng_attention(g_rts.rt[i], o, (size_t)nq * 4, q, k, v, mask, causal, hq,
                                      hkv, sq, sk, d, scale, NULL, &err);
        CHECK(st == ENG_OK, "%s hq=%lld hkv=%lld sq=%lld sk=%lld d=%lld: %s", g_rts.name[i],
              (long long)hq, (long long)hkv, (long long)sq, (long long)sk, (long long)d,
              err.message);
        if (want_zeros) {
            double mx = 0;
            for (int64_t j = 0; j < nq; j++) mx = fabs(o[j]) > mx || o[j] != o[j] ? 1 : mx;
            CHECK(mx == 0, "%s all-masked sq=%lld sk=%lld d=%lld: output not all zeros",
                  g_rts.name[i], (long long)sq, (long long)sk, (long long)d);
            continue;
        }
        double e = test_rel_err(o, ref, nq);
        worst = e > worst ? e : worst;
        CHECK(e <= TOL,
              "%s hq=%lld hkv=%lld sq=%lld sk=%lld d=%lld mask=%d causal=%d scale=%g: rel err %.3g",
              g_rts.name[i], (long long)hq, (long long)hkv, (long long)sq, (long long)sk,
              (long long)d, mask_kind, causal, (double)scale, e);
    }
    eng_free(q);
    eng_free(k);
    eng_free(v);
    eng_free(o);
    eng_free(ref);
    eng_free(mask);
    return worst;
}

/* ---- attn_softmax_tile: every SIMD table against the scalar specification --------------- */
static void test_softmax_tile(void) {
    eng_kernels ref_t;
    eng_error err = {0};
    CHECK(eng_kernels_init(&ref_t, ENG_ISA_SCALAR, &err) == ENG_OK, "%s", err.message);
    eng_isa isas[4];
    int n_isa = test_simd_isas(isas);
    test_rng r = {0x5eed0001};
    const int64_t ld = 320;
    float *sin_ = test_alloc(24 * ld * 4);                                /* (rows, ld) input */
    float *s0 = test_alloc(24 * ld * 4), *s1 = test_alloc(24 * ld * 4); /* (rows, ld) outputs */
    float m_in[24], l_in[24], m0[24], l0[24], c0[24], m1[24], l1[24], c1[24];
    for (int it = 0; it < 300; it++) {
        int64_t rows = test_int(&r, 1, 24), cols = test_int(&r, 1, 300);
        int neg_pct = (int)test_int(&r, 0, 3) * 30; /* 0, 30, 60, 90 % of scores masked */
        for (int64_t i = 0; i < rows; i++) {
            int dead_row = test_int(&r, 0, 7) == 0;
            for (int64_t j = 0; j < ld; j++) {
                int masked = dead_row || (int)test_int(&r, 0, 99) < neg_pct;
                sin_[i * ld + j] = masked ? -INFINITY : test_uniform(&r) * 8.0f;
            }
            int fresh = test_int(&r, 0, 2) == 0;
            m_in[i] = fresh ? -INFINITY : test_uniform(&r) * 8.0f;
            l_in[i] = fresh ? 0.0f : 1.0f + 10.0f * fabsf(test_uniform(&r));
        }
        memcpy(s0, sin_, (size_t)(rows * ld) * 4);
        memcpy(m0, m_in, sizeof m_in);
        memcpy(l0, l_in, sizeof l_in);
        ref_t.attn_softmax_tile(s0, ld, rows, cols, m0, l0, c0);
        for (int e = 0; e < n_isa; e++) {
            eng_kernels t;
            CHECK(eng_kernels_init(&t, isas[e], &err) == ENG_OK, "%s", err.message);
            memcpy(s1, sin_, (size_t)(rows * ld) * 4);
            memcpy(m1, m_in, sizeof m_in);
            memcpy(l1, l_in, sizeof l_in);
            t.attn_softmax_tile(s1, ld, rows, cols, m1, l1, c1);
            for (int64_t i = 0; i < rows; i++) {
                /* m is a max: exact. p and corr in [0, 1]: absolute. l: relative. */
                CHECK(m1[i] == m0[i], "%s row %lld: m %g vs %g", t.name, (long long)i, m1[i],
                      m0[i]);
                CHECK(fabsf(c1[i] - c0[i]) <= 1e-6f, "%s row %lld: corr %g vs %g", t.name,
                      (long long)i, c1[i], c0[i]);
                CHECK(fabsf(l1[i] - l0[i]) <= 1e-5f * fabsf(l0[i]), "%s row %lld: l %g vs %g",
                      t.name, (long long)i, l1[i], l0[i]);
                double e_p = test_max_abs(s1 + i * ld, s0 + i * ld, cols);
                CHECK(e_p <= 1e-6, "%s rows=%lld cols=%lld row %lld: p err %g", t.name,
                      (long long)rows, (long long)cols, (long long)i, e_p);
                CHECK(memcmp(s1 + i * ld + cols, sin_ + i * ld + cols,
                             (size_t)(ld - cols) * 4) == 0,
                      "%s row %lld: wrote past cols", t.name, (long long)i);
            }
        }
    }
    /* The all -inf contract, per ISA (scalar included). */
    eng_isa all[4] = {ENG_ISA_SCALAR};
    int n_all = 1 + test_simd_isas(all + 1);
    for (int e = 0; e < n_all; e++) {
        eng_kernels t;
        CHECK(eng_kernels_init(&t, all[e], &err) == ENG_OK, "%s", err.message);
        for (int64_t cols = 1; cols <= 40; cols++) {
            for (int64_t j = 0; j < cols; j++) s1[j] = -INFINITY;
            s1[cols] = 7.0f; /* sentinel past the row */
            float m = -INFINITY, l = 0.5f, c = 0.0f;
            t.attn_softmax_tile(s1, ld, 1, cols, &m, &l, &c);
            int zeros = 1;
            for (int64_t j = 0; j < cols; j++) zeros &= s1[j] == 0.0f && !signbit(s1[j]);
            CHECK(m == -INFINITY && l == 0.5f && c == 1.0f && zeros && s1[cols] == 7.0f,
                  "%s cols=%lld: all -inf row gave m=%g l=%g corr=%g", t.name, (long long)cols, m,
                  l, c);
        }
    }
    eng_free(sin_);
    eng_free(s0);
    eng_free(s1);
}

/* ---- attention vs the oracle ------------------------------------------------------------ */
static const int64_t dims[] = {8, 16, 40, 64, 72, 128};

static void test_random_shapes(void) {
    test_rng r = {0xa77e0001};
    const int64_t ratios[] = {1, 2, 7};
    for (int it = 0; it < 24; it++) {
        int64_t ratio = ratios[test_int(&r, 0, 2)];
        int64_t hkv = test_int(&r, 1, 2), hq = hkv * ratio;
        int64_t sq = test_int(&r, 1, 200), sk = test_int(&r, 1, 200);
        int64_t d = dims[test_int(&r, 0, 5)];
        int mask_kind = (int)test_int(&r, 0, 1) ? MASK_RANDOM : MASK_NONE;
        int causal = (int)test_int(&r, 0, 2) == 0;
        float scale = test_int(&r, 0, 1) ? 0.0f : 0.05f + fabsf(test_uniform(&r));
        run_case(&r, hq, hkv, sq, sk, d, mask_kind, causal, scale, 1.0f);
    }
}

static void test_larger(void) {
    test_rng r = {0xa77e0002};
    run_case(&r, 2, 1, 300, 517, 64, MASK_NONE, 0, 0.0f, 1.0f);
    run_case(&r, 2, 2, 517, 517, 128, MASK_NONE, 1, 0.0f, 1.0f);
    run_case(&r, 3, 3, 517, 300, 72, MASK_RANDOM, 0, 0.0f, 1.0f);
    run_case(&r, 1, 1, 517, 517, 40, MASK_RANDOM, 1, 0.0f, 1.0f);
    /* peaky softmax (|s| up to ~20): the running max changes often, rescaling matters */
    run_case(&r, 2, 1, 300, 517, 16, MASK_NONE, 0, 1.0f, 2.0f);
    run_case(&r, 1, 1, 300, 300, 8, MASK_NONE, 1, 2.0f, 2.0f);
}

static void test_gqa(void) {
    test_rng r = {0xa77e0003};
    run_case(&r, 3, 3, 37, 91, 64, MASK_NONE, 0, 0.0f, 1.0f);
    run_case(&r, 6, 3, 37, 91, 64, MASK_NONE, 0, 0.0f, 1.0f);
    run_case(&r, 14, 2, 37, 91, 40, MASK_NONE, 1, 0.0f, 1.0f);
    run_case(&r, 7, 1, 129, 65, 16, MASK_RANDOM, 0, 0.0f, 1.0f);
}

static void test_masks(void) {
    test_rng r = {0xa77e0004};
    run_case(&r, 2, 1, 50, 133, 64, MASK_RANDOM, 0, 0.0f, 1.0f);
    run_case(&r, 2, 1, 50, 133, 64, MASK_ALL_MASKED, 0, 0.0f, 1.0f);
    run_case(&r, 2, 1, 50, 133, 64, MASK_ALL_MASKED, 1, 0.0f, 1.0f);
    run_case(&r, 2, 1, 50, 133, 64, MASK_ALL_VISIBLE, 0, 0.0f, 1.0f);
    run_case(&r, 2, 2, 90, 700, 72, MASK_MIDDLE_BLOCK, 0, 0.0f, 1.0f);
    run_case(&r, 2, 2, 700, 700, 16, MASK_MIDDLE_BLOCK, 1, 0.0f, 1.0f);
    /* causal + prefix mask: queries i < sk/3 see no key and must come out as zeros */
    run_case(&r, 2, 1, 150, 150, 40, MASK_PREFIX, 1, 0.0f, 1.0f);
    run_case(&r, 1, 1, 1, 1, 8, MASK_ALL_MASKED, 0, 0.0f, 1.0f);
}

static void test_causal(void) {
    test_rng r = {0xa77e0005};
    run_case(&r, 2, 1, 200, 200, 64, MASK_NONE, 1, 0.0f, 1.0f); /* sq == sk */
    run_case(&r, 2, 1, 77, 300, 64, MASK_NONE, 1, 0.0f, 1.0f);  /* sq < sk: top-left aligned */
    run_case(&r, 2, 1, 300, 77, 64, MASK_NONE, 1, 0.0f, 1.0f);  /* sq > sk */
    run_case(&r, 1, 1, 1, 1, 128, MASK_NONE, 1, 0.0f, 1.0f);
    run_case(&r, 1, 1, 1, 300, 128, MASK_NONE, 1, 0.0f, 1.0f);
}

static void test_scale(void) {
    test_rng r = {0xa77e0006};
    /* scale <= 0 means 1/sqrt(d): run_case's oracle uses that; an explicit value too */
    run_case(&r, 2, 1, 33, 65, 72, MASK_NONE, 0, -1.0f, 1.0f);
    run_case(&r, 2, 1, 33, 65, 72, MASK_NONE, 0, 0.0f, 1.0f);
    run_case(&r, 2, 1, 33, 65, 72, MASK_NONE, 0, 0.3f, 1.0f);
}

/* Packed K/V of all kv heads over the driver's budget (16 MB; 6 MB per head here): it packs
 * and runs them in groups, {2, 1} heads. */
static void test_kv_groups(void) {
    test_rng r = {0xa77e0007};
    run_case(&r, 6, 3, 5, 12000, 128, MASK_NONE, 0, 0.0f, 1.0f);
    run_case(&r, 3, 3, 3, 12000, 72, MASK_RANDOM, 1, 0.0f, 1.0f);
}

/* ---- cancellation ------------------------------------------------------------------------ */
typedef struct canceller {
    eng_cancel *token;
    int delay_ms;
} canceller;

static void *cancel_later(void *arg) {
    canceller *c = arg;
    struct timespec ts = {c->delay_ms / 1000, (long)(c->delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    eng_cancel_request(c->token);
    return NULL;
}

static void test_cancel(void) {
    const int64_t hq = 8, sq = 2048, d = 64, n = hq * sq * d;
    float *q = test_alloc((size_t)n * 4), *kv = test_alloc((size_t)n * 4); /* (8, 2048, 64) */
    float *o = test_alloc((size_t)n * 4);                                  /* (8, 2048, 64) */
    test_rng r = {0xa77e0008};
    test_fill(&r, q, n, 1.0f);
    test_fill(&r, kv, n, 1.0f);
    eng_cancel *token = eng_cancel_create();
    CHECK(token != NULL, "cancel token");
    eng_cancel_request(token);
    for (int i = 0; i < g_rts.n; i++) {
        eng_error err = {0};
        eng_status st = eng_attention(g_rts.rt[i], o, (size_t)n * 4, q, kv, kv, NULL, 0, hq, hq,
                                      sq, sq, d, 0.0f, token, &err);
        CHECK(st == ENG_ERR_CANCELLED && err.status == ENG_ERR_CANCELLED &&
                  strstr(err.message, "cancel") != NULL,
              "%s pre-cancelled: %s '%s'", g_rts.name[i], eng_status_name(st), err.message);
    }
    eng_cancel_free(token);

    /* Cancelled while running: the per-task poll stops it (scalar x2 takes seconds here). */
    for (int i = 0; i < g_rts.n; i++) {
        if (strcmp(g_rts.name[i], "scalar x2") != 0) continue;
        canceller cc = {eng_cancel_create(), 30};
        pthread_t th;
        CHECK(pthread_create(&th, NULL, cancel_later, &cc) == 0, "pthread_create");
        eng_error err = {0};
        eng_status st = eng_attention(g_rts.rt[i], o, (size_t)n * 4, q, kv, kv, NULL, 0, hq, hq,
                                      sq, sq, d, 0.0f, cc.token, &err);
        pthread_join(th, NULL);
        CHECK(st == ENG_ERR_CANCELLED && strstr(err.message, "cancel") != NULL,
              "%s cancelled mid-run: %s '%s'", g_rts.name[i], eng_status_name(st), err.message);
        eng_cancel_free(cc.token);
    }
    eng_free(q);
    eng_free(kv);
    eng_free(o);
}

/* ---- argument validation (ops.c) ---------------------------------------------------------- */
static void expect_invalid(eng_status st, const eng_error *err, const char *needle,
                           const char *what) {
    CHECK(st == ENG_ERR_INVALID_ARG && strstr(err->message, needle) != NULL, "%s: %s '%s'", what,
          eng_status_name(st), err->message);
}

static void test_invalid(void) {
    eng_runtime *rt = g_rts.rt[0];
    float buf[3 * 4 * 8] = {0}; /* room for (3, 4, 8) */
    eng_error err = {0};
    eng_status st = eng_attention(rt, buf, sizeof buf, buf, buf, buf, NULL, 0, 3, 2, 4, 4, 8, 0.0f,
                                  NULL, &err);
    expect_invalid(st, &err, "not a multiple of 2 kv heads", "hq % hkv");
    /* (hq, hkv, sq, sk, d) with one zero each */
    int64_t bad[5][5] = {
        {0, 1, 4, 4, 8}, {1, 0, 4, 4, 8}, {1, 1, 0, 4, 8}, {1, 1, 4, 0, 8}, {1, 1, 4, 4, 0}};
    for (int i = 0; i < 5; i++) {
        eng_err_clear(&err);
        st = eng_attention(rt, buf, sizeof buf, buf, buf, buf, NULL, 0, bad[i][0], bad[i][1],
                           bad[i][2], bad[i][3], bad[i][4], 0.0f, NULL, &err);
        expect_invalid(st, &err, "must all be >= 1", "zero size");
    }
    eng_err_clear(&err);
    st = eng_attention(rt, buf, 3 * 4 * 8 * 4 - 4, buf, buf, buf, NULL, 0, 3, 3, 4, 4, 8, 0.0f,
                       NULL, &err);
    expect_invalid(st, &err, "o buffer has 380 bytes, needs 384", "small o");
    eng_err_clear(&err);
    st = eng_attention(rt, buf, sizeof buf, buf, NULL, buf, NULL, 0, 3, 3, 4, 4, 8, 0.0f, NULL,
                       &err);
    expect_invalid(st, &err, "must be non-NULL", "NULL k");
    eng_err_clear(&err);
    st = eng_attention(rt, buf, sizeof buf, buf, buf, buf, NULL, 0, 1, 1, 1, 1, 2048, 0.0f, NULL,
                       &err);
    expect_invalid(st, &err, "head dim 2048 > 1024", "d too large");
    eng_err_clear(&err);
    st = eng_attention(rt, buf, sizeof buf, buf, buf, buf, NULL, 0, 3, 3, 4, 4, 8, NAN, NULL, &err);
    expect_invalid(st, &err, "scale must be finite", "NaN scale");
    eng_err_clear(&err);
    st = eng_attention(NULL, buf, sizeof buf, buf, buf, buf, NULL, 0, 3, 3, 4, 4, 8, 0.0f, NULL,
                       &err);
    expect_invalid(st, &err, "runtime is NULL", "NULL runtime");
}

int main(void) {
    rts_open();
    if (g_rts.n == 0) return test_finish("test_attention");
    RUN(test_softmax_tile);
    RUN(test_random_shapes);
    RUN(test_larger);
    RUN(test_gqa);
    RUN(test_masks);
    RUN(test_causal);
    RUN(test_scale);
    RUN(test_kv_groups);
    RUN(test_cancel);
    RUN(test_invalid);
    rts_close();
    return test_finish("test_attention");
}
