/* gemm.h - the blocked, packed, threaded GEMM driver behind linear and conv2d.
 *
 *   C (M, N) = A (M, K) . B (K, N) + bias (N)      with B given as W (N, K) (PyTorch layout)
 *
 * A is produced by a packing callback (row-major activations for linear, implicit im2col for
 * conv2d); W is packed NR columns at a time, converting f16/bf16 to f32 on the fly, so weights
 * are read in place from the mmap and never copied whole. */
#ifndef ENG_GEMM_H
#define ENG_GEMM_H

#include "runtime.h"

typedef struct gemm_a_src gemm_a_src;
/* Pack rows [m0, m0 + m_valid) x cols [k0, k0 + kc) of A into an MR-panel dst (kc, MR),
 * zero-filling rows m_valid..MR-1. */
typedef void (*gemm_pack_a_fn)(const gemm_a_src *src, const eng_kernels *kern, float *dst,
                               int64_t m0, int64_t m_valid, int64_t k0, int64_t kc);

struct gemm_a_src {
    gemm_pack_a_fn pack;
    const float *x;   /* linear: (M, K) row-major, row stride ldx; conv: input (cin, h, w) */
    int64_t ldx;
    int64_t cin, h, w; /* conv only */
    int32_t ksize;     /* conv only: 1 or 3 */
};

/* Row-major A packer (linear). */
void gemm_pack_a_rows(const gemm_a_src *src, const eng_kernels *kern, float *dst, int64_t m0,
                      int64_t m_valid, int64_t k0, int64_t kc);

/* C (M, N), row stride ldc. w: (N, K) row stride ldw elements of w_dtype. bias (N) | NULL. */
eng_status gemm_run(eng_runtime *rt, int64_t M, int64_t N, int64_t K, const gemm_a_src *a,
                    const void *w, eng_dtype w_dtype, int64_t ldw, const float *bias, float *c,
                    int64_t ldc, eng_error *err);

#endif /* ENG_GEMM_H */
