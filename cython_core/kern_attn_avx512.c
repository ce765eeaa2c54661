/* kern_attn_avx512.c - the online-softmax tile update (kernels.h attn_softmax_tile) with
 * AVX-512F: 16 lanes, masked loads/stores for the column tail. Same function as
 * kern_attn_scalar.c.
 * exp only ever sees x = s - max <= 0 (or -inf), so it is vexp.h's Cephes scheme without the
 * overflow clamp and NaN fix-up: n = round(x log2 e), r = x - n ln2 (two-part ln2) in
 * [-ln2/2, ln2/2], e^r by a degree-6 polynomial (least-squares fit on Chebyshev nodes, 0.6 ulp
 * in f32 with FMA), times 2^n by scalef; x < ln(FLT_MIN), -inf included, gives exactly 0 (so
 * no denormal p reaches the P V product). About 1 ulp on [-87.3, 0]; NaN stays NaN. */
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

/* exp(x) for x <= 0 or -inf (see the file comment). */
static inline __m512 exp_nonpos512(__m512 x) {
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(ATTN_LOG2E)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(ATTN_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(ATTN_LN2_LO), r);
    __m512 p = _mm512_set1_ps(ATTN_E_C6);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ATTN_E_C5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ATTN_E_C4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ATTN_E_C3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ATTN_E_C2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    /* -inf made r NaN: that lane is dropped here with every other x < ln(FLT_MIN) */
    const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(ATTN_EXP_LO), _CMP_NLT_UQ);
    return _mm512_maskz_scalef_ps(live, p, n);
}

/* Largest element of row (cols), -inf if cols == 0 or all are -inf. */
static inline float row_max512(const float *row, int64_t cols) {
    const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
    __m512 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int64_t c = 0;
    for (; c + 64 <= cols; c += 64) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(row + c));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(row + c + 16));
        m2 = _mm512_max_ps(m2, _mm512_loadu_ps(row + c + 32));
        m3 = _mm512_max_ps(m3, _mm512_loadu_ps(row + c + 48));
    }
    for (; c + 16 <= cols; c += 16) m0 = _mm512_max_ps(m0, _mm512_loadu_ps(row + c));
    if (c < cols) {
        __mmask16 k = (__mmask16)((1u << (cols - c)) - 1u);
        m1 = _mm512_mask_max_ps(m1, k, m1, _mm512_maskz_loadu_ps(k, row + c));
    }
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
}

/* row[c] = exp(row[c] - m) in place; returns the sum. */
static inline float row_exp_sum512(float *row, int64_t cols, float m) {
    const __m512 vm = _mm512_set1_ps(m);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 32 <= cols; c += 32) { /* hot loop: two independent exp chains */
        __m512 p0 = exp_nonpos512(_mm512_sub_ps(_mm512_loadu_ps(row + c), vm));
        __m512 p1 = exp_nonpos512(_mm512_sub_ps(_mm512_loadu_ps(row + c + 16), vm));
        _mm512_storeu_ps(row + c, p0);
        _mm512_storeu_ps(row + c + 16, p1);
        s0 = _mm512_add_ps(s0, p0);
        s1 = _mm512_add_ps(s1, p1);
    }
    if (c + 16 <= cols) {
        __m512 p0 = exp_nonpos512(_mm512_sub_ps(_mm512_loadu_ps(row + c), vm));
        _mm512_storeu_ps(row + c, p0);
        s0 = _mm512_add_ps(s0, p0);
        c += 16;
    }
    if (c < cols) {
        __mmask16 k = (__mmask16)((1u << (cols - c)) - 1u);
        __m512 p = exp_nonpos512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + c), vm));
        _mm512_mask_storeu_ps(row + c, k, p);
        s1 = _mm512_mask_add_ps(s1, k, s1, p);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* s (rows, ld): scaled scores, -inf where masked; m, l, corr (rows). */
static void attn_softmax_tile_avx512(float *s, int64_t ld, int64_t rows, int64_t cols, float *m,
                                     float *l, float *corr) {
    for (int64_t r = 0; r < rows; r++) {
        float *row = s + r * ld; /* (cols) */
        const float mx = row_max512(row, cols);
        const float m_old = m[r];
        const float m_new = mx > m_old ? mx : m_old;
        if (m_new == -__builtin_inff()) {
            corr[r] = 1.0f;
            int64_t c = 0;
            for (; c + 16 <= cols; c += 16) _mm512_storeu_ps(row + c, _mm512_setzero_ps());
            if (c < cols)
                _mm512_mask_storeu_ps(row + c, (__mmask16)((1u << (cols - c)) - 1u),
                                      _mm512_setzero_ps());
            continue;
        }
        /* exp(m_old - m_new) through the same vector exp as p (0 for m_old = -inf). */
        const float cr = _mm_cvtss_f32(
            _mm512_castps512_ps128(exp_nonpos512(_mm512_set1_ps(m_old - m_new))));
        const float sum = row_exp_sum512(row, cols, m_new);
        m[r] = m_new;
        l[r] = l[r] * cr + sum;
        corr[r] = cr;
    }
}

void eng_kern_attn_avx512(eng_kernels *t) { t->attn_softmax_tile = attn_softmax_tile_avx512; }
#endif /* __x86_64__ */
