/* kern_gemm_avx2.c - GEMM micro-kernel and packing for AVX2 + FMA + F16C.
 * Micro-tile MR x NR = 6 x 16: 12 ymm accumulators, 2 ymm of B per k, 1 broadcast register.
 * Same contracts as kern_gemm_scalar.c (the specification). */
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#include "dtype.h"
#include "kernels.h"

#define MR 6
#define NR 16

#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* c (MR, NR) (+)= a (kc, MR)^T . b (kc rows of NR, stride ldb) */
static void gemm_ukr_avx2(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
                          int64_t ldc, const float *bias, int flags) {
#define DECL(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps();
    ROWS(DECL)
#undef DECL
#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; p++) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#define STEP(i)                                           \
    {                                                     \
        const __m256 ai = _mm256_broadcast_ss(a + i);     \
        c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);       \
        c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);       \
    }
        ROWS(STEP)
#undef STEP
        a += MR;
        b += ldb;
    }
    if (flags & ENG_UKR_ACCUM) {
#define STORE(i)                                                                        \
    _mm256_storeu_ps(c + i * ldc, _mm256_add_ps(_mm256_loadu_ps(c + i * ldc), c##i##0)); \
    _mm256_storeu_ps(c + i * ldc + 8, _mm256_add_ps(_mm256_loadu_ps(c + i * ldc + 8), c##i##1));
        ROWS(STORE)
#undef STORE
    } else if (flags & ENG_UKR_BIAS_N) {
        const __m256 bb0 = _mm256_loadu_ps(bias), bb1 = _mm256_loadu_ps(bias + 8);
#define STORE(i)                                                     \
    _mm256_storeu_ps(c + i * ldc, _mm256_add_ps(c##i##0, bb0));      \
    _mm256_storeu_ps(c + i * ldc + 8, _mm256_add_ps(c##i##1, bb1));
        ROWS(STORE)
#undef STORE
    } else if (flags & ENG_UKR_BIAS_M) {
#define STORE(i)                                                        \
    {                                                                   \
        const __m256 bi = _mm256_broadcast_ss(bias + i);                \
        _mm256_storeu_ps(c + i * ldc, _mm256_add_ps(c##i##0, bi));      \
        _mm256_storeu_ps(c + i * ldc + 8, _mm256_add_ps(c##i##1, bi));  \
    }
        ROWS(STORE)
#undef STORE
    } else {
#define STORE(i)                                 \
    _mm256_storeu_ps(c + i * ldc, c##i##0);      \
    _mm256_storeu_ps(c + i * ldc + 8, c##i##1);
        ROWS(STORE)
#undef STORE
    }
}

/* In-register 8 x 8 transpose of r[0..7]. */
static inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

static inline __m256 load8_f32(const void *row, int64_t p) {
    return _mm256_loadu_ps((const float *)row + p);
}
static inline __m256 load8_bf16(const void *row, int64_t p) {
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
static inline __m256 load8_f16(const void *row, int64_t p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + p)));
}
static inline float conv_f32(float v) { return v; }
#define conv_bf16 eng_bf16_to_f32_1
#define conv_f16 eng_f16_to_f32_1

/* dst (kc, NR) <- W rows 0..NR-1 (stride ldw) x cols 0..kc-1, transposed 8 x 8 at a time. */
#define DEFINE_PACK_B(NAME, T, LOAD, CONV1)                                                 \
    static void NAME(float *dst, const T *w, int64_t ldw, int64_t n_valid, int64_t kc) {    \
        int64_t p = 0;                                                                      \
        for (; p + 8 <= kc; p += 8) {                                                       \
            for (int half = 0; half < 2; half++) {                                          \
                __m256 r[8];                                                                \
                for (int j = 0; j < 8; j++) {                                               \
                    int64_t row = half * 8 + j;                                             \
                    r[j] = row < n_valid ? LOAD(w + row * ldw, p) : _mm256_setzero_ps();     \
                }                                                                           \
                transpose8(r);                                                              \
                for (int q = 0; q < 8; q++) _mm256_storeu_ps(dst + (p + q) * NR + half * 8, r[q]); \
            }                                                                               \
        }                                                                                   \
        for (; p < kc; p++)                                                                 \
            for (int64_t j = 0; j < NR; j++)                                                \
                dst[p * NR + j] = j < n_valid ? CONV1(w[j * ldw + p]) : 0.0f;               \
    }

DEFINE_PACK_B(pack_b_f32_avx2, float, load8_f32, conv_f32)
DEFINE_PACK_B(pack_b_bf16_avx2, uint16_t, load8_bf16, conv_bf16)
DEFINE_PACK_B(pack_b_f16_avx2, uint16_t, load8_f16, conv_f16)

/* dst (kc, MR) <- x rows 0..MR-1 (stride ldx): 8 x 8 transposes of rows 0..5 (+2 zero rows);
 * the 6 useful lanes of each k-row are written with a 4 + 2 split store. */
static void pack_a_f32_avx2(float *dst, const float *x, int64_t ldx, int64_t m_valid, int64_t kc) {
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        __m256 r[8];
        for (int i = 0; i < 8; i++)
            r[i] = i < m_valid && i < MR ? _mm256_loadu_ps(x + i * ldx + p) : _mm256_setzero_ps();
        transpose8(r);
        for (int q = 0; q < 8; q++) {
            float *d = dst + (p + q) * MR;
            _mm_storeu_ps(d, _mm256_castps256_ps128(r[q]));
            _mm_storel_pi((__m64 *)(d + 4), _mm256_extractf128_ps(r[q], 1));
        }
    }
    for (; p < kc; p++)
        for (int64_t i = 0; i < MR; i++) dst[p * MR + i] = i < m_valid ? x[i * ldx + p] : 0.0f;
}

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* y (n) = W (n, k) . x (k): 4 rows of W at a time, 8 k-lanes per step, reduced at the end. */
#define DEFINE_GEMV(NAME, T, LOADW, CONV1)                                                  \
    static void NAME(float *y, const float *x, const T *w, int64_t ldw, int64_t n, int64_t k) { \
        int64_t j = 0;                                                                      \
        for (; j + 4 <= n; j += 4) {                                                        \
            const T *w0 = w + j * ldw, *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;       \
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();                          \
            int64_t p = 0;                                                                  \
            for (; p + 8 <= k; p += 8) {                                                 \
                const __m256 xv = _mm256_loadu_ps((x + p));                                           \
                a0 = _mm256_fmadd_ps(xv, LOADW(w0 + p), a0);                                           \
                a1 = _mm256_fmadd_ps(xv, LOADW(w1 + p), a1);                                           \
                a2 = _mm256_fmadd_ps(xv, LOADW(w2 + p), a2);                                           \
                a3 = _mm256_fmadd_ps(xv, LOADW(w3 + p), a3);                                           \
            }                                                                               \
            float s0 = hsum256(a0), s1 = hsum256(a1), s2 = hsum256(a2), s3 = hsum256(a3);  \
            for (; p < k; p++) {                                                            \
                s0 += x[p] * CONV1(w0[p]);                                                  \
                s1 += x[p] * CONV1(w1[p]);                                                  \
                s2 += x[p] * CONV1(w2[p]);                                                  \
                s3 += x[p] * CONV1(w3[p]);                                                  \
            }                                                                               \
            y[j] = s0; y[j + 1] = s1; y[j + 2] = s2; y[j + 3] = s3;                         \
        }                                                                                   \
        for (; j < n; j++) {                                                                \
            const T *wj = w + j * ldw;                                                      \
            __m256 a = _mm256_setzero_ps();                                                                 \
            int64_t p = 0;                                                                  \
            for (; p + 8 <= k; p += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps((x + p)), LOADW(wj + p), a);     \
            float s = hsum256(a);                                                          \
            for (; p < k; p++) s += x[p] * CONV1(wj[p]);                                    \
            y[j] = s;                                                                       \
        }                                                                                   \
    }

static inline __m256 gemv_load_f32(const float *p) { return _mm256_loadu_ps(p); }
static inline __m256 gemv_load_bf16(const uint16_t *p) { return load8_bf16(p, 0); }
static inline __m256 gemv_load_f16(const uint16_t *p) { return load8_f16(p, 0); }
DEFINE_GEMV(gemv_f32_avx2, float, gemv_load_f32, conv_f32)
DEFINE_GEMV(gemv_bf16_avx2, uint16_t, gemv_load_bf16, conv_bf16)
DEFINE_GEMV(gemv_f16_avx2, uint16_t, gemv_load_f16, conv_f16)

void eng_kern_gemm_avx2(eng_kernels *t) {
    t->gemv_f32 = gemv_f32_avx2;
    t->gemv_bf16 = gemv_bf16_avx2;
    t->gemv_f16 = gemv_f16_avx2;
    t->gemm_mr = MR;
    t->gemm_nr = NR;
    t->gemm_ukr = gemm_ukr_avx2;
    t->pack_a_f32 = pack_a_f32_avx2;
    t->pack_b_f32 = pack_b_f32_avx2;
    t->pack_b_bf16 = pack_b_bf16_avx2;
    t->pack_b_f16 = pack_b_f16_avx2;
}
#endif /* __x86_64__ */
