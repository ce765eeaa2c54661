/* kern_gemm_neon.c - GEMM micro-kernel and packing for AArch64 Advanced SIMD (NEON).
 * Micro-tile MR x NR = 6 x 16: 24 q-register accumulators, 4 q of B per k, A read as one q and
 * one d register and used by lane (FMLA by element). f16 weights use the baseline FCVTL
 * conversion (no FP16-arithmetic extension needed). Same contracts as kern_gemm_scalar.c. */
#if defined(__aarch64__)
#include <arm_neon.h>
#include <string.h>

#include "dtype.h"
#include "kernels.h"

#define MR 6
#define NR 16

/* c (MR, NR) (+)= a (kc, MR)^T . b (kc rows of NR, stride ldb) */
static void gemm_ukr_neon(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
                          int64_t ldc, const float *bias, int flags) {
    float32x4_t acc[MR][4];
    for (int i = 0; i < MR; i++)
        for (int q = 0; q < 4; q++) acc[i][q] = vdupq_n_f32(0.0f);
    for (int64_t p = 0; p < kc; p++) {
        const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8),
                          b3 = vld1q_f32(b + 12);
        const float32x4_t a03 = vld1q_f32(a);
        const float32x2_t a45 = vld1_f32(a + 4);
#define ROW_Q(i, AV, L)                                 \
    acc[i][0] = vfmaq_laneq_f32(acc[i][0], b0, AV, L);   \
    acc[i][1] = vfmaq_laneq_f32(acc[i][1], b1, AV, L);   \
    acc[i][2] = vfmaq_laneq_f32(acc[i][2], b2, AV, L);   \
    acc[i][3] = vfmaq_laneq_f32(acc[i][3], b3, AV, L);
#define ROW_D(i, AV, L)                                 \
    acc[i][0] = vfmaq_lane_f32(acc[i][0], b0, AV, L);    \
    acc[i][1] = vfmaq_lane_f32(acc[i][1], b1, AV, L);    \
    acc[i][2] = vfmaq_lane_f32(acc[i][2], b2, AV, L);    \
    acc[i][3] = vfmaq_lane_f32(acc[i][3], b3, AV, L);
        ROW_Q(0, a03, 0)
        ROW_Q(1, a03, 1)
        ROW_Q(2, a03, 2)
        ROW_Q(3, a03, 3)
        ROW_D(4, a45, 0)
        ROW_D(5, a45, 1)
#undef ROW_Q
#undef ROW_D
        a += MR;
        b += ldb;
    }
    for (int i = 0; i < MR; i++) {
        float *ci = c + i * ldc;
        for (int q = 0; q < 4; q++) {
            float32x4_t v = acc[i][q];
            if (flags & ENG_UKR_ACCUM) v = vaddq_f32(v, vld1q_f32(ci + 4 * q));
            else if (flags & ENG_UKR_BIAS_N) v = vaddq_f32(v, vld1q_f32(bias + 4 * q));
            else if (flags & ENG_UKR_BIAS_M) v = vaddq_f32(v, vdupq_n_f32(bias[i]));
            vst1q_f32(ci + 4 * q, v);
        }
    }
}

static void pack_a_f32_neon(float *dst, const float *x, int64_t ldx, int64_t m_valid, int64_t kc) {
    if (m_valid < MR) memset(dst, 0, (size_t)kc * MR * sizeof(float));
    for (int64_t i = 0; i < m_valid; i++) {
        const float *xi = x + i * ldx;
        for (int64_t p = 0; p < kc; p++) dst[p * MR + i] = xi[p];
    }
}

/* dst (kc, NR) <- W rows 0..NR-1 (stride ldw): 4 k at a time per row, scattered by lane. */
static void pack_b_f32_neon(float *dst, const float *w, int64_t ldw, int64_t n_valid, int64_t kc) {
    if (n_valid < NR) memset(dst, 0, (size_t)kc * NR * sizeof(float));
    for (int64_t j = 0; j < n_valid; j++) {
        const float *wj = w + j * ldw;
        int64_t p = 0;
        for (; p + 4 <= kc; p += 4) {
            float32x4_t v = vld1q_f32(wj + p);
            vst1q_lane_f32(dst + (p + 0) * NR + j, v, 0);
            vst1q_lane_f32(dst + (p + 1) * NR + j, v, 1);
            vst1q_lane_f32(dst + (p + 2) * NR + j, v, 2);
            vst1q_lane_f32(dst + (p + 3) * NR + j, v, 3);
        }
        for (; p < kc; p++) dst[p * NR + j] = wj[p];
    }
}

static void pack_b_bf16_neon(float *dst, const uint16_t *w, int64_t ldw, int64_t n_valid, int64_t kc) {
    if (n_valid < NR) memset(dst, 0, (size_t)kc * NR * sizeof(float));
    for (int64_t j = 0; j < n_valid; j++) {
        const uint16_t *wj = w + j * ldw;
        int64_t p = 0;
        for (; p + 4 <= kc; p += 4) {
            float32x4_t v = vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(wj + p), 16));
            vst1q_lane_f32(dst + (p + 0) * NR + j, v, 0);
            vst1q_lane_f32(dst + (p + 1) * NR + j, v, 1);
            vst1q_lane_f32(dst + (p + 2) * NR + j, v, 2);
            vst1q_lane_f32(dst + (p + 3) * NR + j, v, 3);
        }
        for (; p < kc; p++) dst[p * NR + j] = eng_bf16_to_f32_1(wj[p]);
    }
}

static void pack_b_f16_neon(float *dst, const uint16_t *w, int64_t ldw, int64_t n_valid, int64_t kc) {
    if (n_valid < NR) memset(dst, 0, (size_t)kc * NR * sizeof(float));
    for (int64_t j = 0; j < n_valid; j++) {
        const uint16_t *wj = w + j * ldw;
        int64_t p = 0;
        for (; p + 4 <= kc; p += 4) {
            float32x4_t v = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(wj + p)));
            vst1q_lane_f32(dst + (p + 0) * NR + j, v, 0);
            vst1q_lane_f32(dst + (p + 1) * NR + j, v, 1);
            vst1q_lane_f32(dst + (p + 2) * NR + j, v, 2);
            vst1q_lane_f32(dst + (p + 3) * NR + j, v, 3);
        }
        for (; p < kc; p++) dst[p * NR + j] = eng_f16_to_f32_1(wj[p]);
    }
}

/* y (n) = W (n, k) . x (k): one row at a time, 2 x 4 lanes per step. */
#define DEFINE_GEMV(NAME, T, LOADW, CONV1)                                                  \
    static void NAME(float *y, const float *x, const T *w, int64_t ldw, int64_t n, int64_t k) { \
        for (int64_t j = 0; j < n; j++) {                                                   \
            const T *wj = w + j * ldw;                                                      \
            float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);                     \
            int64_t p = 0;                                                                  \
            for (; p + 8 <= k; p += 8) {                                                    \
                a0 = vfmaq_f32(a0, vld1q_f32(x + p), LOADW(wj + p));                        \
                a1 = vfmaq_f32(a1, vld1q_f32(x + p + 4), LOADW(wj + p + 4));                \
            }                                                                               \
            float s = vaddvq_f32(vaddq_f32(a0, a1));                                        \
            for (; p < k; p++) s += x[p] * CONV1(wj[p]);                                    \
            y[j] = s;                                                                       \
        }                                                                                   \
    }
static inline float32x4_t gemv_load_f32(const float *p) { return vld1q_f32(p); }
static inline float32x4_t gemv_load_bf16(const uint16_t *p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}
static inline float32x4_t gemv_load_f16(const uint16_t *p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}
static inline float conv_f32(float v) { return v; }
DEFINE_GEMV(gemv_f32_neon, float, gemv_load_f32, conv_f32)
DEFINE_GEMV(gemv_bf16_neon, uint16_t, gemv_load_bf16, eng_bf16_to_f32_1)
DEFINE_GEMV(gemv_f16_neon, uint16_t, gemv_load_f16, eng_f16_to_f32_1)

void eng_kern_gemm_neon(eng_kernels *t) {
    t->gemv_f32 = gemv_f32_neon;
    t->gemv_bf16 = gemv_bf16_neon;
    t->gemv_f16 = gemv_f16_neon;
    t->gemm_mr = MR;
    t->gemm_nr = NR;
    t->gemm_ukr = gemm_ukr_neon;
    t->pack_a_f32 = pack_a_f32_neon;
    t->pack_b_f32 = pack_b_f32_neon;
    t->pack_b_bf16 = pack_b_bf16_neon;
    t->pack_b_f16 = pack_b_f16_neon;
}
#endif /* __aarch64__ */
