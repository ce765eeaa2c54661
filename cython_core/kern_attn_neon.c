/* kern_attn_neon.c - the online-softmax tile update (kernels.h attn_softmax_tile) with
 * AArch64 Advanced SIMD: 4 lanes, 16 columns per hot-loop step, the column tail staged
 * through a padded 4-float buffer so every p goes through the same vector exp. Same function
 * as kern_attn_scalar.c. exp only ever sees x = s - max <= 0 (or -inf): the short Cephes form
 * kern_attn_avx512.c describes, with 2^n built in the exponent bits; x < ln(FLT_MIN), -inf
 * included, gives exactly 0. About 1 ulp on [-87.3, 0]; NaN stays NaN. */
#if defined(__aarch64__)
#include <arm_neon.h>

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
static inline float32x4_t exp_nonpos_neon(float32x4_t x) {
    const int32x4_t ni = vcvtnq_s32_f32(vmulq_n_f32(x, ATTN_LOG2E)); /* -inf saturates */
    const float32x4_t n = vcvtq_f32_s32(ni);
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(ATTN_LN2_HI));
    r = vfmsq_f32(r, n, vdupq_n_f32(ATTN_LN2_LO));
    float32x4_t p = vdupq_n_f32(ATTN_E_C6);
    p = vfmaq_f32(vdupq_n_f32(ATTN_E_C5), p, r);
    p = vfmaq_f32(vdupq_n_f32(ATTN_E_C4), p, r);
    p = vfmaq_f32(vdupq_n_f32(ATTN_E_C3), p, r);
    p = vfmaq_f32(vdupq_n_f32(ATTN_E_C2), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    /* 2^n for n in [-126, 0]; lanes with x < ln(FLT_MIN) (garbage exponent) are zeroed */
    const int32x4_t e = vshlq_n_s32(vaddq_s32(ni, vdupq_n_s32(127)), 23);
    const float32x4_t y = vmulq_f32(p, vreinterpretq_f32_s32(e));
    const uint32x4_t dead = vcltq_f32(x, vdupq_n_f32(ATTN_EXP_LO)); /* false for NaN */
    return vbslq_f32(dead, vdupq_n_f32(0.0f), y);
}

/* Largest element of row (cols), -inf if cols == 0 or all are -inf. */
static inline float row_max_neon(const float *row, int64_t cols) {
    const float32x4_t ninf = vdupq_n_f32(-__builtin_inff());
    float32x4_t m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
        m0 = vmaxq_f32(m0, vld1q_f32(row + c));
        m1 = vmaxq_f32(m1, vld1q_f32(row + c + 4));
        m2 = vmaxq_f32(m2, vld1q_f32(row + c + 8));
        m3 = vmaxq_f32(m3, vld1q_f32(row + c + 12));
    }
    for (; c + 4 <= cols; c += 4) m0 = vmaxq_f32(m0, vld1q_f32(row + c));
    float mx = vmaxvq_f32(vmaxq_f32(vmaxq_f32(m0, m1), vmaxq_f32(m2, m3)));
    for (; c < cols; c++) mx = row[c] > mx ? row[c] : mx;
    return mx;
}

/* row[c] = exp(row[c] - m) in place; returns the sum. */
static inline float row_exp_sum_neon(float *row, int64_t cols, float m) {
    const float32x4_t vm = vdupq_n_f32(m);
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) { /* hot loop: four independent exp chains */
        float32x4_t p0 = exp_nonpos_neon(vsubq_f32(vld1q_f32(row + c), vm));
        float32x4_t p1 = exp_nonpos_neon(vsubq_f32(vld1q_f32(row + c + 4), vm));
        float32x4_t p2 = exp_nonpos_neon(vsubq_f32(vld1q_f32(row + c + 8), vm));
        float32x4_t p3 = exp_nonpos_neon(vsubq_f32(vld1q_f32(row + c + 12), vm));
        vst1q_f32(row + c, p0);
        vst1q_f32(row + c + 4, p1);
        vst1q_f32(row + c + 8, p2);
        vst1q_f32(row + c + 12, p3);
        s0 = vaddq_f32(s0, p0);
        s1 = vaddq_f32(s1, p1);
        s2 = vaddq_f32(s2, p2);
        s3 = vaddq_f32(s3, p3);
    }
    for (; c + 4 <= cols; c += 4) {
        float32x4_t p = exp_nonpos_neon(vsubq_f32(vld1q_f32(row + c), vm));
        vst1q_f32(row + c, p);
        s0 = vaddq_f32(s0, p);
    }
    if (c < cols) {
        float buf[4] = {-__builtin_inff(), -__builtin_inff(), -__builtin_inff(), -__builtin_inff()};
        for (int64_t i = 0; c + i < cols; i++) buf[i] = row[c + i];
        /* dead lanes: exp(-inf) = 0 */
        float32x4_t p = exp_nonpos_neon(vsubq_f32(vld1q_f32(buf), vm));
        vst1q_f32(buf, p);
        for (int64_t i = 0; c + i < cols; i++) row[c + i] = buf[i];
        s1 = vaddq_f32(s1, p);
    }
    return vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
}

/* s (rows, ld): scaled scores, -inf where masked; m, l, corr (rows). */
static void attn_softmax_tile_neon(float *s, int64_t ld, int64_t rows, int64_t cols, float *m,
                                   float *l, float *corr) {
    for (int64_t r = 0; r < rows; r++) {
        float *row = s + r * ld; /* (cols) */
        const float mx = row_max_neon(row, cols);
        const float m_old = m[r];
        const float m_new = mx > m_old ? mx : m_old;
        if (m_new == -__builtin_inff()) {
            corr[r] = 1.0f;
            for (int64_t c = 0; c < cols; c++) row[c] = 0.0f;
            continue;
        }
        /* exp(m_old - m_new) through the same vector exp as p (0 for m_old = -inf). */
        const float cr = vgetq_lane_f32(exp_nonpos_neon(vdupq_n_f32(m_old - m_new)), 0);
        const float sum = row_exp_sum_neon(row, cols, m_new);
        m[r] = m_new;
        l[r] = l[r] * cr + sum;
        corr[r] = cr;
    }
}

void eng_kern_attn_neon(eng_kernels *t) { t->attn_softmax_tile = attn_softmax_tile_neon; }
#endif /* __aarch64__ */
