/* kern_gemm_avx512.c - GEMM micro-kernel and packing for AVX-512 (F/BW/DQ/VL + FMA + F16C).
 * Micro-tile MR x NR = 14 x 32: 28 zmm accumulators, 2 zmm of B per k, A broadcast from memory.
 * Same contracts as kern_gemm_scalar.c (the specification). */
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#include "dtype.h"
#include "kernels.h"

#define MR 14
#define NR 32

#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)

/* c (MR, NR) (+)= a (kc, MR)^T . b (kc rows of NR, stride ldb) */
static void gemm_ukr_avx512(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
                            int64_t ldc, const float *bias, int flags) {
#define DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
    ROWS(DECL)
#undef DECL
#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; p++) {
        const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#define STEP(i)                                           \
    {                                                     \
        const __m512 ai = _mm512_set1_ps(a[i]);           \
        c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);       \
        c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);       \
    }
        ROWS(STEP)
#undef STEP
        a += MR;
        b += ldb;
    }
    if (flags & ENG_UKR_ACCUM) {
#define STORE(i)                                                                        \
    _mm512_storeu_ps(c + i * ldc, _mm512_add_ps(_mm512_loadu_ps(c + i * ldc), c##i##0)); \
    _mm512_storeu_ps(c + i * ldc + 16, _mm512_add_ps(_mm512_loadu_ps(c + i * ldc + 16), c##i##1));
        ROWS(STORE)
#undef STORE
    } else if (flags & ENG_UKR_BIAS_N) {
        const __m512 bb0 = _mm512_loadu_ps(bias), bb1 = _mm512_loadu_ps(bias + 16);
#define STORE(i)                                                      \
    _mm512_storeu_ps(c + i * ldc, _mm512_add_ps(c##i##0, bb0));       \
    _mm512_storeu_ps(c + i * ldc + 16, _mm512_add_ps(c##i##1, bb1));
        ROWS(STORE)
#undef STORE
    } else if (flags & ENG_UKR_BIAS_M) {
#define STORE(i)                                                                   \
    {                                                                              \
        const __m512 bi = _mm512_set1_ps(bias[i]);                                 \
        _mm512_storeu_ps(c + i * ldc, _mm512_add_ps(c##i##0, bi));                 \
        _mm512_storeu_ps(c + i * ldc + 16, _mm512_add_ps(c##i##1, bi));            \
    }
        ROWS(STORE)
#undef STORE
    } else {
#define STORE(i)                                  \
    _mm512_storeu_ps(c + i * ldc, c##i##0);       \
    _mm512_storeu_ps(c + i * ldc + 16, c##i##1);
        ROWS(STORE)
#undef STORE
    }
}

/* In-register 16 x 16 transpose of r[0..15]. */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    /* r[4q + s] now holds, per 128-bit lane L, column 4L + s' of rows 4q..4q+3 where the
     * within-lane order is columns (0,1,2,3) -> rows; finish with 128-bit lane shuffles. */
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);      /* lanes 0,2 of a | 0,2 of b */
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);  /* lanes 1,3 of a | 1,3 of b */
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

/* Row loaders: 16 consecutive elements of one W row as f32 (rows past n_valid read as 0). */
static inline __m512 load16_f32(const void *row, int64_t p) {
    return _mm512_loadu_ps((const float *)row + p);
}
static inline __m512 load16_bf16(const void *row, int64_t p) {
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
static inline __m512 load16_f16(const void *row, int64_t p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + p)));
}

/* dst (kc, NR) <- W rows 0..NR-1 (stride ldw) x cols 0..kc-1, transposed 16 x 16 at a time. */
#define DEFINE_PACK_B(NAME, T, LOAD, CONV1)                                                 \
    static void NAME(float *dst, const T *w, int64_t ldw, int64_t n_valid, int64_t kc) {    \
        int64_t p = 0;                                                                      \
        for (; p + 16 <= kc; p += 16) {                                                     \
            for (int half = 0; half < 2; half++) {                                          \
                __m512 r[16];                                                               \
                for (int j = 0; j < 16; j++) {                                              \
                    int64_t row = half * 16 + j;                                            \
                    r[j] = row < n_valid ? LOAD(w + row * ldw, p) : _mm512_setzero_ps();     \
                }                                                                           \
                transpose16(r);                                                             \
                for (int q = 0; q < 16; q++) _mm512_storeu_ps(dst + (p + q) * NR + half * 16, r[q]); \
            }                                                                               \
        }                                                                                   \
        for (; p < kc; p++)                                                                 \
            for (int64_t j = 0; j < NR; j++)                                                \
                dst[p * NR + j] = j < n_valid ? CONV1(w[j * ldw + p]) : 0.0f;               \
    }

static inline float conv_f32(float v) { return v; }
#define conv_bf16 eng_bf16_to_f32_1
#define conv_f16 eng_f16_to_f32_1

DEFINE_PACK_B(pack_b_f32_avx512, float, load16_f32, conv_f32)
DEFINE_PACK_B(pack_b_bf16_avx512, uint16_t, load16_bf16, conv_bf16)
DEFINE_PACK_B(pack_b_f16_avx512, uint16_t, load16_f16, conv_f16)

/* dst (kc, MR) <- x rows 0..MR-1 (stride ldx): 16 x 16 transposes of rows 0..13 (+2 zero
 * rows), each k-row stored as 14 lanes (masked store). */
static void pack_a_f32_avx512(float *dst, const float *x, int64_t ldx, int64_t m_valid, int64_t kc) {
    const __mmask16 keep = (__mmask16)((1u << MR) - 1u);
    int64_t p = 0;
    for (; p + 16 <= kc; p += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; i++)
            r[i] = i < m_valid ? _mm512_loadu_ps(x + i * ldx + p) : _mm512_setzero_ps();
        transpose16(r);
        for (int q = 0; q < 16; q++) _mm512_mask_storeu_ps(dst + (p + q) * MR, keep, r[q]);
    }
    for (; p < kc; p++)
        for (int64_t i = 0; i < MR; i++) dst[p * MR + i] = i < m_valid ? x[i * ldx + p] : 0.0f;
}

/* y (n) = W (n, k) . x (k): 4 rows of W at a time, 16 k-lanes per step, reduced at the end. */
#define DEFINE_GEMV(NAME, T, LOADW, CONV1)                                                  \
    static void NAME(float *y, const float *x, const T *w, int64_t ldw, int64_t n, int64_t k) { \
        int64_t j = 0;                                                                      \
        for (; j + 4 <= n; j += 4) {                                                        \
            const T *w0 = w + j * ldw, *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;       \
            __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();                          \
            int64_t p = 0;                                                                  \
            for (; p + 16 <= k; p += 16) {                                                 \
                const __m512 xv = _mm512_loadu_ps((x + p));                                           \
                a0 = _mm512_fmadd_ps(xv, LOADW(w0 + p), a0);                                           \
                a1 = _mm512_fmadd_ps(xv, LOADW(w1 + p), a1);                                           \
                a2 = _mm512_fmadd_ps(xv, LOADW(w2 + p), a2);                                           \
                a3 = _mm512_fmadd_ps(xv, LOADW(w3 + p), a3);                                           \
            }                                                                               \
            float s0 = _mm512_reduce_add_ps(a0), s1 = _mm512_reduce_add_ps(a1), s2 = _mm512_reduce_add_ps(a2), s3 = _mm512_reduce_add_ps(a3);  \
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
            __m512 a = _mm512_setzero_ps();                                                                 \
            int64_t p = 0;                                                                  \
            for (; p + 16 <= k; p += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps((x + p)), LOADW(wj + p), a);     \
            float s = _mm512_reduce_add_ps(a);                                                          \
            for (; p < k; p++) s += x[p] * CONV1(wj[p]);                                    \
            y[j] = s;                                                                       \
        }                                                                                   \
    }

static inline __m512 gemv_load_f32(const float *p) { return _mm512_loadu_ps(p); }
static inline __m512 gemv_load_bf16(const uint16_t *p) { return load16_bf16(p, 0); }
static inline __m512 gemv_load_f16(const uint16_t *p) { return load16_f16(p, 0); }
DEFINE_GEMV(gemv_f32_avx512, float, gemv_load_f32, conv_f32)
DEFINE_GEMV(gemv_bf16_avx512, uint16_t, gemv_load_bf16, conv_bf16)
DEFINE_GEMV(gemv_f16_avx512, uint16_t, gemv_load_f16, conv_f16)

void eng_kern_gemm_avx512(eng_kernels *t) {
    t->gemv_f32 = gemv_f32_avx512;
    t->gemv_bf16 = gemv_bf16_avx512;
    t->gemv_f16 = gemv_f16_avx512;
    t->gemm_mr = MR;
    t->gemm_nr = NR;
    t->gemm_ukr = gemm_ukr_avx512;
    t->pack_a_f32 = pack_a_f32_avx512;
    t->pack_b_f32 = pack_b_f32_avx512;
    t->pack_b_bf16 = pack_b_bf16_avx512;
    t->pack_b_f16 = pack_b_f16_avx512;
}
#endif /* __x86_64__ */
