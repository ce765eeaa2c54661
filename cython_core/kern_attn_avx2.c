/* kern_attn_avx2.c - the online-softmax tile update (kernels.h attn_softmax_tile) with
 * AVX2 + FMA: 8 lanes, maskload/maskstore for the column tail. Same function as
 * kern_attn_scalar.c. exp only ever sees x = s - max <= 0 (or -inf): the short Cephes form
 * kern_attn_avx512.c describes, with 2^n built in the exponent bits; x < ln(FLT_MIN), -inf
 * included, gives exactly 0. About 1 ulp on [-87.3, 0]; NaN stays NaN. */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels.h"

#define ATTN_LOG2E 1.44269504088896341f
#define ATTN_LN2_HI 0.693359375f /* ln 2 = HI + LO (Cephes split; n HI is exact) */
#define ATTN_LN2_LO (-2.12194440e-4f)
#define ATTN_EXP_LO (-87.33654475f) /* ln(FLT_MIN): below it exp gives exactly 0 */
#define ATTN_E_C2 0.4999999403953552f /* e^r = 1 + r (1 + r (C2 + r (C3 + ... r C6))) */
#define ATTN_E_C3 0.1666642129421234f
#define ATTN_E_C4 0.04166772589087486f
#define ATTN_E_C5 0.008374763652682304f
#define ATTN_E_C6 0.001385929062962532f

/* exp(x) for x <= 0 or -inf. */
static inline __m256 exp_nonpos256(__m256 x) {
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(ATTN_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(ATTN_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(ATTN_LN2_LO), r);
    __m256 p = _mm256_set1_ps(ATTN_E_C6);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ATTN_E_C5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ATTN_E_C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ATTN_E_C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ATTN_E_C2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* 2^n for n in [-126, 0]; lanes with x < ln(FLT_MIN) (garbage exponent, or NaN r from
     * -inf) are zeroed */
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(ATTN_EXP_LO), _CMP_NLT_UQ);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), live);
}

/* Lanes i < n set (n in [0, 8]). */
static inline __m256i tail_mask256(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline float hmax256(__m256 v) {
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

static inline float hsum256(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

/* Largest element of row (cols), -inf if cols == 0 or all are -inf. */
static inline float row_max256(const float *row, int64_t cols) {
    const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
    __m256 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int64_t c = 0;
    for (; c + 32 <= cols; c += 32) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(row + c));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(row + c + 8));
        m2 = _mm256_max_ps(m2, _mm256_loadu_ps(row + c + 16));
        m3 = _mm256_max_ps(m3, _mm256_loadu_ps(row + c + 24));
    }
    for (; c + 8 <= cols; c += 8) m0 = _mm256_max_ps(m0, _mm256_loadu_ps(row + c));
    if (c < cols) {
        __m256i k = tail_mask256(cols - c);
        __m256 x = _mm256_blendv_ps(ninf, _mm256_maskload_ps(row + c, k), _mm256_castsi256_ps(k));
        m1 = _mm256_max_ps(m1, x);
    }
    return hmax256(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
}

/* row[c] = exp(row[c] - m) in place; returns the sum. */
static inline float row_exp_sum256(float *row, int64_t cols, float m) {
    const __m256 vm = _mm256_set1_ps(m);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) { /* hot loop: two independent exp chains */
        __m256 p0 = exp_nonpos256(_mm256_sub_ps(_mm256_loadu_ps(row + c), vm));
        __m256 p1 = exp_nonpos256(_mm256_sub_ps(_mm256_loadu_ps(row + c + 8), vm));
        _mm256_storeu_ps(row + c, p0);
        _mm256_storeu_ps(row + c + 8, p1);
        s0 = _mm256_add_ps(s0, p0);
        s1 = _mm256_add_ps(s1, p1);
    }
    if (c + 8 <= cols) {
        __m256 p0 = exp_nonpos256(_mm256_sub_ps(_mm256_loadu_ps(row + c), vm));
        _mm256_storeu_ps(row + c, p0);
        s0 = _mm256_add_ps(s0, p0);
        c += 8;
    }
    if (c < cols) {
        __m256i k = tail_mask256(cols - c);
        __m256 p = exp_nonpos256(_mm256_sub_ps(_mm256_maskload_ps(row + c, k), vm));
        p = _mm256_and_ps(p, _mm256_castsi256_ps(k)); /* dead lanes held exp(-m) */
        _mm256_maskstore_ps(row + c, k, p);
        s1 = _mm256_add_ps(s1, p);
    }
    return hsum256(_mm256_add_ps(s0, s1));
}

/* s (rows, ld): scaled scores, -inf where masked; m, l, corr (rows). */
static void attn_softmax_tile_avx2(float *s, int64_t ld, int64_t rows, int64_t cols, float *m,
                                   float *l, float *corr) {
    for (int64_t r = 0; r < rows; r++) {
        float *row = s + r * ld; /* (cols) */
        const float mx = row_max256(row, cols);
        const float m_old = m[r];
        const float m_new = mx > m_old ? mx : m_old;
        if (m_new == -__builtin_inff()) {
            corr[r] = 1.0f;
            int64_t c = 0;
            for (; c + 8 <= cols; c += 8) _mm256_storeu_ps(row + c, _mm256_setzero_ps());
            if (c < cols) _mm256_maskstore_ps(row + c, tail_mask256(cols - c), _mm256_setzero_ps());
            continue;
        }
        /* exp(m_old - m_new) through the same vector exp as p (0 for m_old = -inf). */
        const float cr = _mm256_cvtss_f32(exp_nonpos256(_mm256_set1_ps(m_old - m_new)));
        const float sum = row_exp_sum256(row, cols, m_new);
        m[r] = m_new;
        l[r] = l[r] * cr + sum;
        corr[r] = cr;
    }
}

void eng_kern_attn_avx2(eng_kernels *t) { t->attn_softmax_tile = attn_softmax_tile_avx2; }
#endif /* __x86_64__ */
