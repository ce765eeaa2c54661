/* kern_gemm_scalar.c - GEMM micro-kernel and packing in portable C: the specification the
 * SIMD versions are tested against. MR x NR = 4 x 16. */
#include <string.h>

#include "dtype.h"
#include "kernels.h"

#define MR 4
#define NR 16

/* c (MR, NR) (+)= a (kc, MR)^T . b (kc rows of NR, stride ldb) */
static void gemm_ukr_scalar(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
                            int64_t ldc, const float *bias, int flags) {
    float acc[MR][NR];
    memset(acc, 0, sizeof acc);
    for (int64_t p = 0; p < kc; p++) {
        const float *ap = a + p * MR, *bp = b + p * ldb;
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) acc[i][j] += ap[i] * bp[j];
    }
    for (int i = 0; i < MR; i++) {
        float *ci = c + i * ldc;
        if (flags & ENG_UKR_ACCUM) {
            for (int j = 0; j < NR; j++) ci[j] += acc[i][j];
        } else if (flags & ENG_UKR_BIAS_N) {
            for (int j = 0; j < NR; j++) ci[j] = acc[i][j] + bias[j];
        } else if (flags & ENG_UKR_BIAS_M) {
            for (int j = 0; j < NR; j++) ci[j] = acc[i][j] + bias[i];
        } else {
            for (int j = 0; j < NR; j++) ci[j] = acc[i][j];
        }
    }
}

static void pack_a_f32_scalar(float *dst, const float *x, int64_t ldx, int64_t m_valid, int64_t kc) {
    for (int64_t p = 0; p < kc; p++)
        for (int64_t i = 0; i < MR; i++) dst[p * MR + i] = i < m_valid ? x[i * ldx + p] : 0.0f;
}

static void pack_b_f32_scalar(float *dst, const float *w, int64_t ldw, int64_t n_valid, int64_t kc) {
    for (int64_t p = 0; p < kc; p++)
        for (int64_t j = 0; j < NR; j++) dst[p * NR + j] = j < n_valid ? w[j * ldw + p] : 0.0f;
}

static void pack_b_bf16_scalar(float *dst, const uint16_t *w, int64_t ldw, int64_t n_valid,
                               int64_t kc) {
    for (int64_t p = 0; p < kc; p++)
        for (int64_t j = 0; j < NR; j++)
            dst[p * NR + j] = j < n_valid ? eng_bf16_to_f32_1(w[j * ldw + p]) : 0.0f;
}

static void pack_b_f16_scalar(float *dst, const uint16_t *w, int64_t ldw, int64_t n_valid,
                              int64_t kc) {
    for (int64_t p = 0; p < kc; p++)
        for (int64_t j = 0; j < NR; j++)
            dst[p * NR + j] = j < n_valid ? eng_f16_to_f32_1(w[j * ldw + p]) : 0.0f;
}

/* y (n) = W (n, k) . x (k); f32 accumulation in index order */
#define DEFINE_GEMV(NAME, T, CONV)                                                          \
    static void NAME(float *y, const float *x, const T *w, int64_t ldw, int64_t n, int64_t k) { \
        for (int64_t j = 0; j < n; j++) {                                                   \
            const T *wj = w + j * ldw;                                                      \
            float acc = 0.0f;                                                               \
            for (int64_t p = 0; p < k; p++) acc += x[p] * CONV(wj[p]);                      \
            y[j] = acc;                                                                     \
        }                                                                                   \
    }
static inline float conv_f32(float v) { return v; }
DEFINE_GEMV(gemv_f32_scalar, float, conv_f32)
DEFINE_GEMV(gemv_bf16_scalar, uint16_t, eng_bf16_to_f32_1)
DEFINE_GEMV(gemv_f16_scalar, uint16_t, eng_f16_to_f32_1)

void eng_kern_gemm_scalar(eng_kernels *t) {
    t->gemv_f32 = gemv_f32_scalar;
    t->gemv_bf16 = gemv_bf16_scalar;
    t->gemv_f16 = gemv_f16_scalar;
    t->gemm_mr = MR;
    t->gemm_nr = NR;
    t->gemm_ukr = gemm_ukr_scalar;
    t->pack_a_f32 = pack_a_f32_scalar;
    t->pack_b_f32 = pack_b_f32_scalar;
    t->pack_b_bf16 = pack_b_bf16_scalar;
    t->pack_b_f16 = pack_b_f16_scalar;
}
