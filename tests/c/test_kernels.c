/* test_kernels.c - the row kernels of kernels.h (kern_elem_*.c): rmsnorm, layernorm, silu,
 * gelu_tanh, softmax, rope_pairs, rope_half, upsample2x.
 *  (a) the scalar table (the specification) against double-precision naive references
 *      written here, independently of the kernels' formulas;
 *  (b) every SIMD table this CPU runs against the scalar table: every tail shape (1..67),
 *      127..129, the model rows 3072 / 3584, 12289; random and mixed magnitudes; random
 *      NULL / given weights; unaligned pointers; guard words around every output; and for
 *      every table, in place (y == x) bit-identical to out of place;
 *  (c) special values: -inf / huge / all-equal softmax rows, silu / gelu saturation and NaN,
 *      eps, NULL weights vs explicit ones, rope identity and quarter turn.
 * Set ENG_TEST_VERBOSE=1 to print the largest error seen per kernel and check kind. */
#include <float.h>

#include "test_util.h"

#define GUARD 16 /* guard floats on each side of every output buffer */
#define UP_H 3   /* rows of the upsample2x test planes (the length under test is the width) */
#define MAX_TABLES 4

/* (b): SIMD vs scalar, relative to the row's largest |value|. The two differ only by
 * summation order (pairwise vs 16/32/64 lane partial sums, each ~1e-7 relative on these
 * sums), by vexp.h (<= 2 ulp) vs glibc expf (<= 1 ulp), and by FMA saving a rounding in
 * rope / the reductions: a handful of ulp (1 ulp = 6e-8) of the row maximum. 2e-6 leaves
 * ~30 ulp of headroom and is still 5 orders below what a real bug (a wrong lane, a skipped or
 * doubled tail element, a missing weight) produces. upsample2x is a copy: exact. */
#define TOL_SIMD 2e-6

enum kern { K_RMSNORM, K_LAYERNORM, K_SILU, K_GELU, K_SOFTMAX, K_ROPE_PAIRS, K_ROPE_HALF,
            K_UPSAMPLE, K_COUNT };
static const char *const k_names[K_COUNT] = {"rmsnorm", "layernorm", "silu", "gelu_tanh",
                                             "softmax", "rope_pairs", "rope_half", "upsample2x"};

/* (a): scalar vs the double reference, relative to max |reference|.
 *  rmsnorm, layernorm 1e-6: pairwise float sums are accurate to a few ulp (~3e-7), halved by
 *    the square root; then 2-3 rounded multiplies/adds per output (inputs here are centred,
 *    so x - mean does not cancel; the offset case is tested separately in (c)).
 *  silu, gelu_tanh 2e-6 (libm): expf (<= 1 ulp) of a float argument whose own rounding is
 *    amplified by |argument| - large only where the output is tiny next to the row max - plus
 *    the add and divide; gelu's reference is the tanh form with exact double constants.
 *  softmax 2e-6 (libm): expf of the rounded x - max (same amplification, same tiny outputs),
 *    a float pairwise sum and one scaling multiply.
 *  rope 1e-6: two rounded products and a rounded add; a rotation keeps each pair's norm,
 *    so the row max of the output is as large as the input's.
 *  upsample2x: exact (a copy). */
static const double k_tol_ref[K_COUNT] = {1e-6, 1e-6, 2e-6, 2e-6, 2e-6, 1e-6, 1e-6, 0.0};

static int t_verbose;
static double t_worst_ref[K_COUNT], t_worst_simd[K_COUNT];

typedef struct params {
    const float *w;         /* (n) or NULL: rmsnorm weight */
    const float *g, *b;     /* (n) or NULL: layernorm gain and bias */
    const float *cos, *sin; /* (n): rope tables, one value per pair */
    float eps;
} params;

static int64_t in_len(int k, int64_t n) {
    if (k == K_ROPE_PAIRS || k == K_ROPE_HALF) return 2 * n; /* n pairs / half = n */
    if (k == K_UPSAMPLE) return UP_H * n;                    /* (UP_H, n) */
    return n;
}
static int64_t out_len(int k, int64_t n) { return k == K_UPSAMPLE ? 4 * UP_H * n : in_len(k, n); }

/* y (out_len) = kernel k of table t on x (in_len). The rope kernels work in place, so x is
 * copied into y first. With y == x every kernel but upsample2x runs in place. */
static void run(const eng_kernels *t, int k, float *y, const float *x, const params *p,
                int64_t n) {
    switch (k) {
    case K_RMSNORM: t->rmsnorm(y, x, p->w, n, p->eps); break;
    case K_LAYERNORM: t->layernorm(y, x, p->g, p->b, n, p->eps); break;
    case K_SILU: t->silu(y, x, n); break;
    case K_GELU: t->gelu_tanh(y, x, n); break;
    case K_SOFTMAX: t->softmax(y, x, n); break;
    case K_ROPE_PAIRS:
        if (y != x) memcpy(y, x, (size_t)(2 * n) * sizeof(float));
        t->rope_pairs(y, p->cos, p->sin, n);
        break;
    case K_ROPE_HALF:
        if (y != x) memcpy(y, x, (size_t)(2 * n) * sizeof(float));
        t->rope_half(y, p->cos, p->sin, n);
        break;
    case K_UPSAMPLE: t->upsample2x(y, x, UP_H, n); break;
    default: break;
    }
}

/* ---- double-precision naive references ------------------------------------------------- */

/* r (out_len) = kernel k on x (in_len), in double, straight from the definitions. */
static void reference(int k, double *r, const float *x, const params *p, int64_t n) {
    switch (k) {
    case K_RMSNORM: {
        double ms = 0;
        for (int64_t i = 0; i < n; i++) ms += (double)x[i] * x[i];
        double scale = 1.0 / sqrt(ms / (double)n + (double)p->eps);
        for (int64_t i = 0; i < n; i++) r[i] = x[i] * scale * (p->w ? p->w[i] : 1.0);
        break;
    }
    case K_LAYERNORM: {
        double mean = 0, var = 0;
        for (int64_t i = 0; i < n; i++) mean += x[i];
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
        var /= (double)n;
        double rstd = 1.0 / sqrt(var + (double)p->eps);
        for (int64_t i = 0; i < n; i++)
            r[i] = (x[i] - mean) * rstd * (p->g ? p->g[i] : 1.0) + (p->b ? p->b[i] : 0.0);
        break;
    }
    case K_SILU:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] / (1.0 + exp(-(double)x[i]));
        break;
    case K_GELU: {
        const double c = sqrt(2.0 / 3.14159265358979323846);
        for (int64_t i = 0; i < n; i++) {
            double v = x[i];
            r[i] = 0.5 * v * (1.0 + tanh(c * (v + 0.044715 * v * v * v)));
        }
        break;
    }
    case K_SOFTMAX: {
        double m = -INFINITY, s = 0;
        for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
        for (int64_t i = 0; i < n; i++) s += r[i] = exp(x[i] - m);
        for (int64_t i = 0; i < n; i++) r[i] /= s;
        break;
    }
    case K_ROPE_PAIRS:
        for (int64_t m = 0; m < n; m++) {
            double a = x[2 * m], b = x[2 * m + 1], c = p->cos[m], s = p->sin[m];
            r[2 * m] = a * c - b * s;
            r[2 * m + 1] = a * s + b * c;
        }
        break;
    case K_ROPE_HALF:
        for (int64_t m = 0; m < n; m++) {
            double a = x[m], b = x[m + n], c = p->cos[m], s = p->sin[m];
            r[m] = a * c - b * s;
            r[m + n] = b * c + a * s;
        }
        break;
    case K_UPSAMPLE:
        for (int64_t i = 0; i < 2 * UP_H; i++)
            for (int64_t j = 0; j < 2 * n; j++) r[i * 2 * n + j] = x[(i / 2) * n + j / 2];
        break;
    default: break;
    }
}

/* max |a - r| / max |r| (INFINITY on NaN) */
static double rel_err_d(const float *a, const double *r, int64_t n) {
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - r[i]);
        if (d != d) return INFINITY;
        if (d > md) md = d;
        if (fabs(r[i]) > mr) mr = fabs(r[i]);
    }
    return md / (mr > 1e-300 ? mr : 1e-300);
}

/* ---- buffers with guard words --------------------------------------------------------- */

static const uint32_t k_guard_bits = 0x7fc0dead; /* a NaN no kernel produces */

typedef struct gbuf {
    float *base; /* (total) */
    float *p;    /* (n) = base + GUARD + off: deliberately misaligned by off floats */
    int64_t n, total;
} gbuf;

static gbuf gbuf_new(int64_t n, int off) {
    gbuf g;
    g.n = n;
    g.total = n + 2 * GUARD + off;
    g.base = test_alloc((size_t)g.total * sizeof(float));
    g.p = g.base + GUARD + off;
    for (int64_t i = 0; i < g.total; i++) memcpy(g.base + i, &k_guard_bits, 4);
    return g;
}
static int gbuf_intact(const gbuf *g) {
    for (int64_t i = 0; i < g->total; i++) {
        if (g->base + i >= g->p && g->base + i < g->p + g->n) continue;
        if (memcmp(g->base + i, &k_guard_bits, 4) != 0) return 0;
    }
    return 1;
}
static void gbuf_free(gbuf *g) { eng_free(g->base); }

/* ---- tables ---------------------------------------------------------------------------- */

/* tabs[0] = scalar, then every SIMD table this CPU runs; returns the count. */
static int load_tables(eng_kernels *tabs) {
    eng_isa isas[3];
    eng_error err;
    memset(&err, 0, sizeof err);
    int n = 0;
    CHECK(eng_kernels_init(&tabs[n], ENG_ISA_SCALAR, &err) == ENG_OK, "scalar table");
    n++;
    int n_simd = test_simd_isas(isas);
    for (int i = 0; i < n_simd && n < MAX_TABLES; i++) {
        eng_status st = eng_kernels_init(&tabs[n], isas[i], &err);
        CHECK(st == ENG_OK, "%s table", eng_isa_name(isas[i]));
        if (st == ENG_OK) n++;
    }
    return n;
}

/* ---- (a) + (b): random rows ------------------------------------------------------------ */

/* mode 0: uniform in [-s, s], s = 10^U(-3, 3) per row; mode 1: each element its own
 * magnitude 10^U(-3, 3). */
static void fill_random(test_rng *r, float *x, int64_t n, int mode) {
    float s = powf(10.0f, 3.0f * test_uniform(r));
    for (int64_t i = 0; i < n; i++)
        x[i] = test_uniform(r) * (mode ? powf(10.0f, 3.0f * test_uniform(r)) : s);
}

static void test_random_rows(void) {
    eng_kernels tabs[MAX_TABLES];
    int n_tabs = load_tables(tabs);
    int64_t sizes[80];
    int n_sizes = 0;
    for (int64_t n = 1; n <= 67; n++) sizes[n_sizes++] = n;
    const int64_t big[] = {127, 128, 129, 3072, 3584, 12289};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) sizes[n_sizes++] = big[i];

    test_rng rng = {0x9e3779b97f4a7c15ull};
    for (int k = 0; k < K_COUNT; k++) {
        for (int si = 0; si < n_sizes; si++) {
            int64_t n = sizes[si], nin = in_len(k, n), nout = out_len(k, n);
            for (int mode = 0; mode < 2; mode++) {
                float *x = test_alloc((size_t)nin * sizeof(float));       /* (nin) */
                float *w = test_alloc((size_t)n * sizeof(float));         /* (n) */
                float *g = test_alloc((size_t)n * sizeof(float));         /* (n) */
                float *b = test_alloc((size_t)n * sizeof(float));         /* (n) */
                float *cs = test_alloc((size_t)n * sizeof(float));        /* (n) */
                float *sn = test_alloc((size_t)n * sizeof(float));        /* (n) */
                double *ref = test_alloc((size_t)nout * sizeof(double)); /* (nout) */
                fill_random(&rng, x, nin, mode);
                for (int64_t i = 0; i < n; i++) {
                    w[i] = 1.0f + 0.5f * test_uniform(&rng);
                    g[i] = 1.0f + 0.5f * test_uniform(&rng);
                    b[i] = 0.2f * test_uniform(&rng);
                    double th = 3.2 * test_uniform(&rng);
                    cs[i] = (float)cos(th);
                    sn[i] = (float)sin(th);
                }
                uint64_t bits = test_next(&rng);
                params p = {(bits & 1) ? w : NULL, (bits & 2) ? g : NULL, (bits & 4) ? b : NULL,
                            cs, sn, 1e-6f};

                gbuf ys = gbuf_new(nout, (int)(si % 4)); /* scalar result */
                run(&tabs[0], k, ys.p, x, &p, n);
                reference(k, ref, x, &p, n);
                double e = rel_err_d(ys.p, ref, nout);
                if (e > t_worst_ref[k]) t_worst_ref[k] = e;
                CHECK(e <= k_tol_ref[k], "%s scalar vs double n=%lld mode=%d: rel err %.3g > %.3g",
                      k_names[k], (long long)n, mode, e, k_tol_ref[k]);

                for (int ti = 0; ti < n_tabs; ti++) {
                    const eng_kernels *t = &tabs[ti];
                    gbuf yv = gbuf_new(nout, (int)((si + ti + 1) % 4));
                    run(t, k, yv.p, x, &p, n);
                    CHECK(gbuf_intact(&yv), "%s %s n=%lld: wrote outside the output", t->name,
                          k_names[k], (long long)n);
                    if (ti > 0) {
                        double es = test_rel_err(yv.p, ys.p, nout);
                        if (es > t_worst_simd[k]) t_worst_simd[k] = es;
                        double tol = k == K_UPSAMPLE ? 0.0 : TOL_SIMD;
                        CHECK(es <= tol, "%s %s vs scalar n=%lld mode=%d: rel err %.3g > %.3g",
                              t->name, k_names[k], (long long)n, mode, es, tol);
                    }
                    if (k != K_UPSAMPLE && k != K_ROPE_PAIRS && k != K_ROPE_HALF) {
                        gbuf z = gbuf_new(nin, (int)((si + ti) % 4));
                        memcpy(z.p, x, (size_t)nin * sizeof(float));
                        run(t, k, z.p, z.p, &p, n);
                        int same = memcmp(z.p, yv.p, (size_t)nin * sizeof(float)) == 0;
                        CHECK(gbuf_intact(&z) && same,
                              "%s %s n=%lld: in place differs from out of place", t->name,
                              k_names[k], (long long)n);
                        gbuf_free(&z);
                    }
                    gbuf_free(&yv);
                }
                gbuf_free(&ys);
                eng_free(x), eng_free(w), eng_free(g), eng_free(b), eng_free(cs), eng_free(sn);
                eng_free(ref);
            }
        }
    }
}

/* ---- (c) special values ---------------------------------------------------------------- */

/* |a - r| <= rel |r| + abs, elementwise; NaN never passes. */
static int close_each(const float *a, const double *r, int64_t n, double rel, double abs_) {
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - r[i]);
        if (!(d <= rel * fabs(r[i]) + abs_)) return 0;
    }
    return 1;
}

static void test_softmax_special(void) {
    eng_kernels tabs[MAX_TABLES];
    int n_tabs = load_tables(tabs);
    for (int ti = 0; ti < n_tabs; ti++) {
        const eng_kernels *t = &tabs[ti];
        /* the example from the kernel contract: max 1e30, the rest underflows to exactly 0 */
        float a[3] = {1e30f, 0.0f, -INFINITY}, y[3];
        t->softmax(y, a, 3);
        CHECK(y[0] == 1.0f && y[1] == 0.0f && y[2] == 0.0f, "%s softmax [1e30,0,-inf] = %g %g %g",
              t->name, y[0], y[1], y[2]);
        float c[3] = {0.0f, -1000.0f, 1000.0f};
        t->softmax(c, c, 3); /* in place */
        CHECK(c[0] == 0.0f && c[1] == 0.0f && c[2] == 1.0f, "%s softmax [0,-1e3,1e3] = %g %g %g",
              t->name, c[0], c[1], c[2]);
        float one = -1e30f;
        t->softmax(&one, &one, 1);
        CHECK(one == 1.0f, "%s softmax n=1 = %g", t->name, one);

        /* -inf entries (masked scores) scattered through body and tail lanes: exactly 0 out,
         * the rest a distribution. Sum tolerance: n float roundings of ~1/n-sized terms. */
        const int64_t ns[] = {5, 37, 3077};
        for (size_t q = 0; q < sizeof ns / sizeof ns[0]; q++) {
            int64_t n = ns[q];
            float *x = test_alloc((size_t)n * sizeof(float)); /* (n) */
            float *o = test_alloc((size_t)n * sizeof(float)); /* (n) */
            test_rng rng = {42 + (uint64_t)n};
            for (int64_t i = 0; i < n; i++)
                x[i] = (i % 3 == 1 || i == n - 1) ? -INFINITY : 4.0f * test_uniform(&rng);
            t->softmax(o, x, n);
            int ok = 1;
            double s = 0;
            for (int64_t i = 0; i < n; i++) {
                if (isinf(x[i]) && o[i] != 0.0f) ok = 0;
                if (!(o[i] >= 0.0f && o[i] <= 1.0f)) ok = 0;
                s += o[i];
            }
            CHECK(ok && fabs(s - 1.0) < 1e-5, "%s softmax with -inf n=%lld: sum %.9g", t->name,
                  (long long)n, s);
            eng_free(x), eng_free(o);
        }

        /* all-equal rows: every x - max is exactly 0, the sum of n ones is exact, so every
         * output is exactly float(1/n), whatever the value (even +-1e30). */
        const float vals[] = {0.0f, 3.7f, -1e30f, 1e30f};
        const int64_t lens[] = {1, 7, 16, 3072, 12289};
        for (size_t vi = 0; vi < 4; vi++)
            for (size_t li = 0; li < 5; li++) {
                int64_t n = lens[li];
                float *x = test_alloc((size_t)n * sizeof(float)); /* (n) */
                for (int64_t i = 0; i < n; i++) x[i] = vals[vi];
                t->softmax(x, x, n);
                int ok = 1;
                for (int64_t i = 0; i < n; i++) ok &= x[i] == 1.0f / (float)n;
                CHECK(ok, "%s softmax all-equal %g n=%lld", t->name, vals[vi], (long long)n);
                eng_free(x);
            }
    }
}

static void test_act_special(void) {
    eng_kernels tabs[MAX_TABLES];
    int n_tabs = load_tables(tabs);
    const float sp[] = {-1000.0f, 1000.0f,  -1e30f,   1e30f,    -FLT_MAX, FLT_MAX, 0.0f,
                        -0.0f,    1e-30f,   -1e-30f,  88.7f,    -88.7f,   89.0f,   -89.0f,
                        87.4f,    -87.4f,   20.0f,    -20.0f,   5.0f,     -5.0f,   1e-45f,
                        1e20f,    -1e20f,   0.5f,     -1.5f};
    const int64_t n_sp = (int64_t)(sizeof sp / sizeof sp[0]);
    enum { N = 61 }; /* the list repeated at shifting offsets: every value hits body and tail */
    float x[N], y[N];
    double r[N];
    for (int64_t i = 0; i < N; i++) x[i] = sp[(i * 7) % n_sp];
    for (int ti = 0; ti < n_tabs; ti++) {
        const eng_kernels *t = &tabs[ti];
        /* Per element: the exp argument (up to ~88 here) carries its own float rounding,
         * amplified by |argument| into the result: <= ~90 * 6e-8 = 5e-6 relative; the
         * absolute 1e-30 floor covers results that underflow (silu(-89) = -2e-37 -> -0). */
        params p = {0};
        for (int k = K_SILU; k <= K_GELU; k++) {
            run(t, k, y, x, &p, N);
            reference(k, r, x, &p, N);
            CHECK(close_each(y, r, N, 1e-5, 1e-30), "%s %s special values", t->name, k_names[k]);
        }
        /* the saturation points named by the kernel contract, exactly */
        float q[6] = {-1000.0f, 1000.0f, 1e20f, -1e20f, FLT_MAX, -FLT_MAX}, o[6];
        t->silu(o, q, 6);
        CHECK(o[0] == 0.0f && o[1] == 1000.0f && o[2] == 1e20f && o[3] == 0.0f &&
                  o[4] == FLT_MAX && o[5] == 0.0f,
              "%s silu saturation: %g %g %g %g %g %g", t->name, o[0], o[1], o[2], o[3], o[4], o[5]);
        t->gelu_tanh(o, q, 6);
        CHECK(o[0] == 0.0f && o[1] == 1000.0f && o[2] == 1e20f && o[3] == 0.0f &&
                  o[4] == FLT_MAX && o[5] == 0.0f,
              "%s gelu saturation: %g %g %g %g %g %g", t->name, o[0], o[1], o[2], o[3], o[4], o[5]);
        /* NaN in, NaN out (and its neighbours unharmed) */
        float nn[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
        nn[4] = NAN;
        t->silu(o, nn, 6);
        CHECK(isnan(o[4]) && !isnan(o[3]) && !isnan(o[5]), "%s silu NaN", t->name);
        t->gelu_tanh(o, nn, 6);
        CHECK(isnan(o[4]) && !isnan(o[3]) && !isnan(o[5]), "%s gelu NaN", t->name);
    }
}

static void test_norm_special(void) {
    eng_kernels tabs[MAX_TABLES];
    int n_tabs = load_tables(tabs);
    const int64_t n = 3077;
    float *x = test_alloc((size_t)n * sizeof(float));    /* (n) */
    float *y = test_alloc((size_t)n * sizeof(float));    /* (n) */
    float *y2 = test_alloc((size_t)n * sizeof(float));   /* (n) */
    float *ones = test_alloc((size_t)n * sizeof(float)); /* (n) */
    float *zero = test_alloc((size_t)n * sizeof(float)); /* (n) */
    double *r = test_alloc((size_t)n * sizeof(double));  /* (n) */
    for (int64_t i = 0; i < n; i++) ones[i] = 1.0f, zero[i] = 0.0f;
    for (int ti = 0; ti < n_tabs; ti++) {
        const eng_kernels *t = &tabs[ti];
        test_rng rng = {7};
        /* rmsnorm, all zeros: eps keeps it finite: exactly 0 */
        memset(x, 0, (size_t)n * sizeof(float));
        t->rmsnorm(y, x, NULL, 37, 1e-6f);
        int ok = 1;
        for (int i = 0; i < 37; i++) ok &= y[i] == 0.0f;
        CHECK(ok, "%s rmsnorm zeros", t->name);
        /* eps enters as mean(x^2) + eps: +-1 with eps 3 is exactly +-1/sqrt(4) = +-0.5 */
        for (int i = 0; i < 20; i++) x[i] = (i & 1) ? -1.0f : 1.0f;
        t->rmsnorm(y, x, NULL, 20, 3.0f);
        ok = 1;
        for (int i = 0; i < 20; i++) ok &= y[i] == ((i & 1) ? -0.5f : 0.5f);
        CHECK(ok, "%s rmsnorm eps=3: %g", t->name, y[0]);
        /* eps 0 on a constant row: +-1 to rounding (sum, divide, sqrt: a few ulp) */
        for (int i = 0; i < 33; i++) x[i] = -3.0f;
        t->rmsnorm(y, x, NULL, 33, 0.0f);
        ok = 1;
        for (int i = 0; i < 33; i++) ok &= fabsf(y[i] + 1.0f) <= 4e-7f;
        CHECK(ok, "%s rmsnorm eps=0: %g", t->name, y[0]);
        /* tiny rows: eps dominates, y ~ x / sqrt(eps) (checked against the reference) */
        test_fill(&rng, x, n, 1e-5f);
        params pr = {NULL, NULL, NULL, NULL, NULL, 1e-6f};
        t->rmsnorm(y, x, NULL, n, 1e-6f);
        reference(K_RMSNORM, r, x, &pr, n);
        CHECK(rel_err_d(y, r, n) <= 2e-6, "%s rmsnorm eps-dominated", t->name);
        /* w = NULL is w = 1 exactly */
        test_fill(&rng, x, n, 3.0f);
        t->rmsnorm(y, x, NULL, n, 1e-6f);
        t->rmsnorm(y2, x, ones, n, 1e-6f);
        CHECK(memcmp(y, y2, (size_t)n * sizeof(float)) == 0, "%s rmsnorm w NULL vs ones", t->name);

        /* layernorm: g, b NULL are g = 1, b = 0 (compared with ==: -0 + 0 is +0) */
        const float *gs[2] = {NULL, ones}, *bs[2] = {NULL, zero};
        t->layernorm(y, x, NULL, NULL, n, 1e-6f);
        for (int gi = 0; gi < 2; gi++)
            for (int bi = 0; bi < 2; bi++) {
                t->layernorm(y2, x, gs[gi], bs[bi], n, 1e-6f);
                ok = 1;
                for (int64_t i = 0; i < n; i++) ok &= y[i] == y2[i];
                CHECK(ok, "%s layernorm g %s b %s vs NULL", t->name, gi ? "ones" : "NULL",
                      bi ? "zeros" : "NULL");
            }
        /* all-equal row: variance ~0, output = b. The float mean of 3077 copies of 0.1 is off
         * by a few ulp (~1e-8), times rstd <= 1/sqrt(eps) = 1e3: |y - b| <= ~1e-5. */
        for (int64_t i = 0; i < n; i++) x[i] = 0.1f, y2[i] = test_uniform(&rng);
        t->layernorm(y, x, NULL, y2, n, 1e-6f);
        ok = 1;
        for (int64_t i = 0; i < n; i++) ok &= fabsf(y[i] - y2[i]) <= 1e-4f;
        CHECK(ok, "%s layernorm constant row", t->name);
        /* eps: +-1 rows have mean 0, var 1: y = +-1/sqrt(1 + eps) = +-1/sqrt(2) for eps 1 */
        for (int i = 0; i < 20; i++) x[i] = (i & 1) ? -1.0f : 1.0f;
        t->layernorm(y, x, NULL, NULL, 20, 1.0f);
        ok = 1;
        for (int i = 0; i < 20; i++) ok &= fabs(fabs((double)y[i]) - sqrt(0.5)) <= 1e-7;
        CHECK(ok, "%s layernorm eps=1: %g", t->name, y[0]);
        /* offset 100, spread 1: a one-pass E[x^2] - E[x]^2 would lose nearly every digit of
         * the variance; two-pass keeps the error at the rounding of the mean, about
         * ulp(100) = 7.6e-6 absolute before scaling by rstd ~ 1.7: tolerance 2e-5 of the max. */
        for (int64_t i = 0; i < n; i++) x[i] = 100.0f + test_uniform(&rng);
        params pl = {NULL, NULL, NULL, NULL, NULL, 1e-6f};
        t->layernorm(y, x, NULL, NULL, n, 1e-6f);
        reference(K_LAYERNORM, r, x, &pl, n);
        double e = rel_err_d(y, r, n);
        CHECK(e <= 2e-5, "%s layernorm offset 100: rel err %.3g", t->name, e);
    }
    eng_free(x), eng_free(y), eng_free(y2), eng_free(ones), eng_free(zero), eng_free(r);
}

static void test_rope_special(void) {
    eng_kernels tabs[MAX_TABLES];
    int n_tabs = load_tables(tabs);
    enum { P = 67 };
    float x[2 * P], y[2 * P], c1[P], s0[P];
    test_rng rng = {99};
    test_fill(&rng, x, 2 * P, 5.0f);
    for (int i = 0; i < P; i++) c1[i] = 1.0f, s0[i] = 0.0f;
    const int64_t lens[] = {64, 37, 3};
    for (int ti = 0; ti < n_tabs; ti++) {
        const eng_kernels *t = &tabs[ti];
        for (int li = 0; li < 3; li++) {
            int64_t m = lens[li];
            /* cos 1, sin 0: identity */
            memcpy(y, x, sizeof x);
            t->rope_pairs(y, c1, s0, m);
            int ok = 1;
            for (int64_t i = 0; i < 2 * P; i++) ok &= y[i] == x[i];
            CHECK(ok, "%s rope_pairs identity m=%lld", t->name, (long long)m);
            memcpy(y, x, sizeof x);
            t->rope_half(y, c1, s0, m);
            ok = 1;
            for (int64_t i = 0; i < 2 * P; i++) ok &= y[i] == x[i];
            CHECK(ok, "%s rope_half identity m=%lld", t->name, (long long)m);
            /* cos 0, sin 1: a quarter turn, (a, b) -> (-b, a), exactly; nothing past 2m */
            memcpy(y, x, sizeof x);
            t->rope_pairs(y, s0, c1, m);
            ok = 1;
            for (int64_t i = 0; i < m; i++)
                ok &= y[2 * i] == -x[2 * i + 1] && y[2 * i + 1] == x[2 * i];
            for (int64_t i = 2 * m; i < 2 * P; i++) ok &= y[i] == x[i];
            CHECK(ok, "%s rope_pairs quarter turn m=%lld", t->name, (long long)m);
            memcpy(y, x, sizeof x);
            t->rope_half(y, s0, c1, m);
            ok = 1;
            for (int64_t i = 0; i < m; i++) ok &= y[i] == -x[i + m] && y[i + m] == x[i];
            for (int64_t i = 2 * m; i < 2 * P; i++) ok &= y[i] == x[i];
            CHECK(ok, "%s rope_half quarter turn m=%lld", t->name, (long long)m);
        }
    }
}

int main(void) {
    const char *v = getenv("ENG_TEST_VERBOSE");
    t_verbose = v && v[0] && v[0] != '0';
    RUN(test_random_rows);
    RUN(test_softmax_special);
    RUN(test_act_special);
    RUN(test_norm_special);
    RUN(test_rope_special);
    if (t_verbose)
        for (int k = 0; k < K_COUNT; k++)
            printf("%-11s worst rel err: scalar vs double %.3g (tol %.3g), simd vs scalar %.3g "
                   "(tol %.3g)\n",
                   k_names[k], t_worst_ref[k], k_tol_ref[k], t_worst_simd[k], TOL_SIMD);
    return test_finish("test_kernels");
}
