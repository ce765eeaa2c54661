/* vexp.h - vector exp(x) for the SIMD kernel files, header-only (static inline only, so each
 * ISA file gets its own copy compiled with its own flags).
 *
 * Cephes expf: n = round(x log2 e), r = x - n ln2 (two-part ln2), degree-6 polynomial, times 2^n.
 * Max relative error about 2 ulp on [-87.3, 88.72]. x < -87.33 (below FLT_MIN) gives exactly 0
 * (so exp(-inf) = 0, which attention relies on), x > 88.72 gives +inf, NaN stays NaN. */
#ifndef ENG_VEXP_H
#define ENG_VEXP_H

#define ENG_EXP_LO (-87.33654475f) /* ln(FLT_MIN) */
#define ENG_EXP_HI (88.72283905f)  /* ln(FLT_MAX) */
#define ENG_EXP_C1 (0.693359375f)
#define ENG_EXP_C2 (-2.12194440e-4f)
#define ENG_EXP_P0 (1.9875691500e-4f)
#define ENG_EXP_P1 (1.3981999507e-3f)
#define ENG_EXP_P2 (8.3334519073e-3f)
#define ENG_EXP_P3 (4.1665795894e-2f)
#define ENG_EXP_P4 (1.6666665459e-1f)
#define ENG_EXP_P5 (5.0000001201e-1f)
#define ENG_LOG2E (1.44269504088896341f)

#if defined(__AVX512F__)
#include <immintrin.h>
static inline __m512 eng_exp512(__m512 x) {
    const __m512 lo = _mm512_set1_ps(ENG_EXP_LO), hi = _mm512_set1_ps(ENG_EXP_HI);
    __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    __mmask16 over = _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ);
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(ENG_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(ENG_EXP_C1), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(ENG_EXP_C2), r);
    __m512 p = _mm512_set1_ps(ENG_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ENG_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ENG_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ENG_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ENG_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ENG_EXP_P5));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512 y = _mm512_scalef_ps(p, n);
    y = _mm512_mask_mov_ps(y, under, _mm512_setzero_ps());
    y = _mm512_mask_mov_ps(y, over, _mm512_set1_ps(__builtin_inff()));
    /* NaN: every compare above was false and min/max dropped it; restore it. */
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    return _mm512_mask_mov_ps(y, nan, x);
}
#endif

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
static inline __m256 eng_exp256(__m256 x) {
    const __m256 lo = _mm256_set1_ps(ENG_EXP_LO), hi = _mm256_set1_ps(ENG_EXP_HI);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(ENG_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(ENG_EXP_C1), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(ENG_EXP_C2), r);
    __m256 p = _mm256_set1_ps(ENG_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ENG_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ENG_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ENG_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ENG_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ENG_EXP_P5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n for n in [-126, 128] as 2^(n>>1) * 2^(n - (n>>1)): both factors are normal. */
    __m256i ni = _mm256_cvtps_epi32(n), n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    __m256i e1 = _mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23);
    __m256i e2 = _mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e1)), _mm256_castsi256_ps(e2));
    y = _mm256_andnot_ps(under, y);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), over);
    return _mm256_blendv_ps(y, x, nan);
}
#endif

#if defined(__ARM_NEON) || defined(__aarch64__)
#include <arm_neon.h>
static inline float32x4_t eng_expq(float32x4_t x) {
    const float32x4_t lo = vdupq_n_f32(ENG_EXP_LO), hi = vdupq_n_f32(ENG_EXP_HI);
    uint32x4_t under = vcltq_f32(x, lo);
    uint32x4_t over = vcgtq_f32(x, hi);
    uint32x4_t ok = vceqq_f32(x, x); /* false for NaN */
    float32x4_t xc = vminq_f32(vmaxq_f32(x, lo), hi);
    float32x4_t n = vrndnq_f32(vmulq_n_f32(xc, ENG_LOG2E));
    float32x4_t r = vfmsq_f32(xc, n, vdupq_n_f32(ENG_EXP_C1));
    r = vfmsq_f32(r, n, vdupq_n_f32(ENG_EXP_C2));
    float32x4_t p = vdupq_n_f32(ENG_EXP_P0);
    p = vfmaq_f32(vdupq_n_f32(ENG_EXP_P1), p, r);
    p = vfmaq_f32(vdupq_n_f32(ENG_EXP_P2), p, r);
    p = vfmaq_f32(vdupq_n_f32(ENG_EXP_P3), p, r);
    p = vfmaq_f32(vdupq_n_f32(ENG_EXP_P4), p, r);
    p = vfmaq_f32(vdupq_n_f32(ENG_EXP_P5), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    /* 2^n for n in [-126, 128] as 2^(n>>1) * 2^(n - (n>>1)): both factors are normal. */
    int32x4_t ni = vcvtq_s32_f32(n), n1 = vshrq_n_s32(ni, 1), n2 = vsubq_s32(ni, n1);
    int32x4_t e1 = vshlq_n_s32(vaddq_s32(n1, vdupq_n_s32(127)), 23);
    int32x4_t e2 = vshlq_n_s32(vaddq_s32(n2, vdupq_n_s32(127)), 23);
    float32x4_t y = vmulq_f32(vmulq_f32(p, vreinterpretq_f32_s32(e1)), vreinterpretq_f32_s32(e2));
    y = vbslq_f32(under, vdupq_n_f32(0.0f), y);
    y = vbslq_f32(over, vdupq_n_f32(__builtin_inff()), y);
    return vbslq_f32(ok, y, x);
}
#endif

#endif /* ENG_VEXP_H */
