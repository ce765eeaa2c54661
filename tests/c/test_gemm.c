/* test_gemm.c - GEMM micro-kernels, packing and the threaded linear / conv2d drivers:
 * every ISA this CPU runs vs scalar, and scalar vs a double-precision reference, on random
 * shapes with odd tails, for f32, bf16 and f16 weights. */
#include "dtype.h"
#include "test_util.h"

/* y (m, n) = x (m, k) . w (n, k)^T + b, in double, w given as f32 (already dtype-rounded). */
static void ref_linear(float *y, const float *x, const float *w, const float *b, int64_t m,
                       int64_t n, int64_t k) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double acc = b ? b[j] : 0.0;
            for (int64_t p = 0; p < k; p++) acc += (double)x[i * k + p] * (double)w[j * k + p];
            y[i * n + j] = (float)acc;
        }
}

/* Stores w (n*k floats) as dtype dt into raw, and rounds w to what the engine will see. */
static void make_weights(eng_dtype dt, float *w, void *raw, int64_t nk) {
    for (int64_t i = 0; i < nk; i++) {
        if (dt == ENG_F32) {
            ((float *)raw)[i] = w[i];
        } else if (dt == ENG_BF16) {
            uint16_t h = eng_f32_to_bf16_1(w[i]);
            ((uint16_t *)raw)[i] = h;
            w[i] = eng_bf16_to_f32_1(h);
        } else {
            uint16_t h = eng_f32_to_f16_1(w[i]);
            ((uint16_t *)raw)[i] = h;
            w[i] = eng_f16_to_f32_1(h);
        }
    }
}


/* One random linear problem on every ISA and thread count. */
static void check_linear(test_rng *r, int64_t m, int64_t n, int64_t k, eng_dtype dt, int with_bias) {
    float *x = test_alloc((size_t)(m * k) * 4), *w = test_alloc((size_t)(n * k) * 4);
    void *raw = test_alloc((size_t)(n * k) * 4);
    float *b = test_alloc((size_t)n * 4), *ref = test_alloc((size_t)(m * n) * 4);
    float *y = test_alloc((size_t)(m * n) * 4), *ys = test_alloc((size_t)(m * n) * 4);
    test_fill(r, x, m * k, 1.0f);
    test_fill(r, w, n * k, 0.5f);
    test_fill(r, b, n, 1.0f);
    make_weights(dt, w, raw, n * k);
    ref_linear(ref, x, w, with_bias ? b : NULL, m, n, k);
    eng_error err;

    /* scalar vs double reference: f32 accumulation over k terms of magnitude <= 0.5 */
    eng_runtime *rs = test_runtime(ENG_ISA_SCALAR, 1);
    eng_err_clear(&err);
    eng_status st = eng_linear(rs, ys, (size_t)(m * n) * 4, x, raw, dt, with_bias ? b : NULL, m, n, k, &err);
    CHECK(st == ENG_OK, "scalar linear: %s", err.message);
    double e = test_rel_err(ys, ref, m * n);
    CHECK(e < 2e-6 * (1.0 + k / 256.0), "scalar vs ref m=%lld n=%lld k=%lld %s err=%.3g", (long long)m,
          (long long)n, (long long)k, eng_dtype_name(dt), e);
    eng_runtime_free(rs);

    eng_isa isas[4];
    int n_isa = test_simd_isas(isas);
    for (int ii = 0; ii < n_isa; ii++) {
        for (int threads = 1; threads <= 3; threads += 2) {
            eng_runtime *rt = test_runtime(isas[ii], threads);
            memset(y, 0xff, (size_t)(m * n) * 4); /* NaN: every output must be written */
            eng_err_clear(&err);
            st = eng_linear(rt, y, (size_t)(m * n) * 4, x, raw, dt, with_bias ? b : NULL, m, n, k, &err);
            CHECK(st == ENG_OK, "%s linear: %s", eng_isa_name(isas[ii]), err.message);
            e = test_rel_err(y, ys, m * n);
            /* same products, different summation order (FMA vs mul+add): a few ulp x sqrt(k) */
            CHECK(e < 2e-6 * (1.0 + k / 256.0), "%s/%dT vs scalar m=%lld n=%lld k=%lld %s bias=%d err=%.3g",
                  eng_isa_name(isas[ii]), threads, (long long)m, (long long)n, (long long)k,
                  eng_dtype_name(dt), with_bias, e);
            eng_runtime_free(rt);
        }
    }
    eng_free(x); eng_free(w); eng_free(raw); eng_free(b); eng_free(ref); eng_free(y); eng_free(ys);
}

static void test_linear_shapes(void) {
    test_rng r = {0x1234567ull};
    const int64_t fixed[][3] = {{1, 1, 1}, {1, 33, 7}, {14, 32, 16}, {15, 33, 17}, {64, 64, 64},
                                {29, 100, 300}, {200, 70, 513}, {3, 600, 40}, {130, 1030, 33},
                                {1, 200, 3072}, {2, 67, 1000}, {4, 130, 77}, {5, 70, 300},
                                {37, 2100, 800}, {300, 1100, 1000}};
    const eng_dtype dts[] = {ENG_F32, ENG_BF16, ENG_F16};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        for (int d = 0; d < 3; d++) check_linear(&r, fixed[i][0], fixed[i][1], fixed[i][2], dts[d], (int)(i + d) % 2);
    for (int t = 0; t < 12; t++) {
        int64_t m = test_int(&r, 1, 90), n = test_int(&r, 1, 150), k = test_int(&r, 1, 600);
        check_linear(&r, m, n, k, dts[t % 3], t % 2);
    }
}

/* Micro-kernel flags directly: ACCUM and BIAS_M on each ISA vs scalar semantics. */
static void test_ukr_flags(void) {
    eng_isa isas[4];
    int n_isa = test_simd_isas(isas);
    test_rng r = {99};
    for (int ii = -1; ii < n_isa; ii++) {
        eng_kernels t;
        eng_error err;
        eng_err_clear(&err);
        CHECK(eng_kernels_init(&t, ii < 0 ? ENG_ISA_SCALAR : isas[ii], &err) == ENG_OK, "%s", err.message);
        int MR = t.gemm_mr, NR = t.gemm_nr;
        int64_t kc = 37;
        float *a = test_alloc((size_t)(kc * MR) * 4), *b = test_alloc((size_t)(kc * NR) * 4);
        float *c = test_alloc((size_t)(MR * NR) * 4), *c0 = test_alloc((size_t)(MR * NR) * 4);
        float *bias = test_alloc((size_t)(MR > NR ? MR : NR) * 4);
        test_fill(&r, a, kc * MR, 1);
        test_fill(&r, b, kc * NR, 1);
        test_fill(&r, c0, MR * NR, 1);
        test_fill(&r, bias, MR > NR ? MR : NR, 1);
        for (int mode = 0; mode < 3; mode++) {
            int flags = mode == 0 ? ENG_UKR_ACCUM : mode == 1 ? ENG_UKR_BIAS_M : ENG_UKR_BIAS_N;
            memcpy(c, c0, (size_t)(MR * NR) * 4);
            t.gemm_ukr(kc, a, b, NR, c, NR, bias, flags);
            double md = 0;
            for (int i = 0; i < MR; i++)
                for (int j = 0; j < NR; j++) {
                    double acc = mode == 0 ? c0[i * NR + j] : mode == 1 ? bias[i] : bias[j];
                    for (int64_t p = 0; p < kc; p++) acc += (double)a[p * MR + i] * b[p * NR + j];
                    double d = fabs(acc - c[i * NR + j]);
                    if (d > md) md = d;
                }
            CHECK(md < 1e-4, "%s ukr flags=%d maxdiff=%.3g", t.name, flags, md);
        }
        eng_free(a); eng_free(b); eng_free(c); eng_free(c0); eng_free(bias);
    }
}

/* y (cout, h, w) reference for a stride-1, same-padded conv. */
static void ref_conv(float *y, const float *x, const float *w, const float *b, int64_t cin,
                     int64_t cout, int64_t h, int64_t wd, int ks) {
    int pad = (ks - 1) / 2;
    for (int64_t co = 0; co < cout; co++)
        for (int64_t yy = 0; yy < h; yy++)
            for (int64_t xx = 0; xx < wd; xx++) {
                double acc = b ? b[co] : 0.0;
                for (int64_t ci = 0; ci < cin; ci++)
                    for (int ky = 0; ky < ks; ky++)
                        for (int kx = 0; kx < ks; kx++) {
                            int64_t sy = yy + ky - pad, sx = xx + kx - pad;
                            if (sy < 0 || sy >= h || sx < 0 || sx >= wd) continue;
                            acc += (double)x[(ci * h + sy) * wd + sx] *
                                   w[((co * cin + ci) * ks + ky) * ks + kx];
                        }
                y[(co * h + yy) * wd + xx] = (float)acc;
            }
}

static void check_conv(test_rng *r, int64_t cin, int64_t cout, int64_t h, int64_t wd, int ks,
                       eng_dtype dt, int with_bias) {
    int64_t nw = cout * cin * ks * ks, nx = cin * h * wd, ny = cout * h * wd;
    float *x = test_alloc((size_t)nx * 4), *w = test_alloc((size_t)nw * 4), *raw = test_alloc((size_t)nw * 4);
    float *b = test_alloc((size_t)cout * 4), *ref = test_alloc((size_t)ny * 4), *y = test_alloc((size_t)ny * 4);
    test_fill(r, x, nx, 1.0f);
    test_fill(r, w, nw, 0.5f);
    test_fill(r, b, cout, 1.0f);
    make_weights(dt, w, raw, nw);
    ref_conv(ref, x, w, with_bias ? b : NULL, cin, cout, h, wd, ks);
    eng_isa isas[4];
    int n_isa = test_simd_isas(isas);
    for (int ii = -1; ii < n_isa; ii++) {
        eng_isa isa = ii < 0 ? ENG_ISA_SCALAR : isas[ii];
        eng_runtime *rt = test_runtime(isa, 2);
        eng_error err;
        eng_err_clear(&err);
        memset(y, 0xff, (size_t)ny * 4);
        eng_status st = eng_conv2d(rt, y, (size_t)ny * 4, x, raw, dt, with_bias ? b : NULL, cin, cout, h, wd, ks, &err);
        CHECK(st == ENG_OK, "%s conv2d: %s", eng_isa_name(isa), err.message);
        double e = test_rel_err(y, ref, ny);
        CHECK(e < 3e-6 * (1.0 + cin * ks * ks / 256.0), "%s conv%d cin=%lld cout=%lld %lldx%lld %s err=%.3g",
              eng_isa_name(isa), ks, (long long)cin, (long long)cout, (long long)h, (long long)wd,
              eng_dtype_name(dt), e);
        eng_runtime_free(rt);
    }
    eng_free(x); eng_free(w); eng_free(raw); eng_free(b); eng_free(ref); eng_free(y);
}

static void test_conv(void) {
    test_rng r = {4242};
    check_conv(&r, 3, 5, 7, 9, 3, ENG_F32, 1);
    check_conv(&r, 16, 33, 12, 20, 3, ENG_BF16, 1);
    check_conv(&r, 17, 8, 1, 1, 3, ENG_F32, 0);
    check_conv(&r, 24, 40, 15, 6, 1, ENG_F16, 1);
    check_conv(&r, 5, 3, 33, 17, 1, ENG_F32, 0);
    check_conv(&r, 40, 24, 16, 16, 3, ENG_F32, 1);
}

static void test_errors(void) {
    eng_runtime *rt = test_runtime(ENG_ISA_SCALAR, 1);
    float x[4] = {0}, w[4] = {0}, y[4];
    eng_error err;
    eng_err_clear(&err);
    CHECK(eng_linear(rt, y, 8, x, w, ENG_F32, NULL, 2, 2, 1, &err) == ENG_ERR_INVALID_ARG &&
              strstr(err.message, "needs 16"),
          "small y: %s", err.message);
    eng_err_clear(&err);
    CHECK(eng_linear(rt, y, 16, x, w, ENG_I32, NULL, 2, 2, 1, &err) == ENG_ERR_UNSUPPORTED, "dtype: %s", err.message);
    eng_err_clear(&err);
    CHECK(eng_linear(rt, y, 16, x, w, ENG_F32, NULL, 0, 2, 1, &err) == ENG_ERR_INVALID_ARG, "m=0: %s", err.message);
    eng_err_clear(&err);
    CHECK(eng_linear(rt, y, 16, x, w, ENG_F32, NULL, (int64_t)1 << 40, (int64_t)1 << 40, 1, &err) == ENG_ERR_INVALID_ARG,
          "huge: %s", err.message);
    eng_err_clear(&err);
    CHECK(eng_conv2d(rt, y, 16, x, w, ENG_F32, NULL, 1, 1, 2, 2, 5, &err) == ENG_ERR_INVALID_ARG &&
              strstr(err.message, "kernel size"),
          "ksize: %s", err.message);
    eng_runtime_free(rt);
}

int main(void) {
    RUN(test_ukr_flags);
    RUN(test_linear_shapes);
    RUN(test_conv);
    RUN(test_errors);
    return test_finish("test_gemm");
}
