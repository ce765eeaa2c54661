/* gemm.h - the blocked, packed, threaded GEMM driver behind linear and conv2d.
 *
 *   C (M, N) = A (M, K) . B (K, N) + bias (N)      with B given as W (N, K) (PyTorch layout)
 *
 * Both operands are produced by packing callbacks: linear packs A from row-major activations
 * and B from the weight W (N, K), converting f16/bf16 to f32 on the fly, so weights are read
 * in place from the mmap and never copied whole; conv2d packs A from the weight and B by
 * implicit im2col. */
#ifndef ENG_GEMM_H
#define ENG_GEMM_H

#include "runtime.h"

/* Depth of one packed block (K step); packers never see kc > GEMM_KC. */
#ifndef GEMM_KC
#define GEMM_KC 384
#endif

typedef struct gemm_src gemm_src;

/* Pack rows [m0, m0 + m_valid) x cols [k0, k0 + kc) of A into one MR panel dst (kc, MR),
 * zero-filling rows m_valid..MR-1. */
typedef void (*gemm_pack_a_fn)(const gemm_src *src, const eng_kernels *kern, float *dst,
                               int64_t m0, int64_t m_valid, int64_t k0, int64_t kc);
/* Pack cols [n0, n0 + n_valid) x rows [k0, k0 + kc) of B into one NR panel dst (kc, NR),
 * zero-filling cols n_valid..NR-1. */
typedef void (*gemm_pack_b_fn)(const gemm_src *src, const eng_kernels *kern, float *dst,
                               int64_t n0, int64_t n_valid, int64_t k0, int64_t kc);

/* Where an operand comes from. `pack` is a gemm_pack_a_fn for A, a gemm_pack_b_fn for B. */
struct gemm_src {
    void (*pack)(const gemm_src *src, const eng_kernels *kern, float *dst, int64_t i0,
                 int64_t n_valid, int64_t k0, int64_t kc);
    const void *data;  /* rows of ld elements of dtype (matrix) or the conv input (cin, h, w) */
    eng_dtype dtype;
    int64_t ld;
    int64_t h, w;      /* conv im2col source only */
    int32_t ksize;
};

/* A from a row-major f32 matrix (M, K), row stride ld. */
void gemm_pack_a_rows(const gemm_src *src, const eng_kernels *kern, float *dst, int64_t m0,
                      int64_t m_valid, int64_t k0, int64_t kc);
/* B from a weight matrix W (N, K) (PyTorch layout), dtype f32/f16/bf16, row stride ld. */
void gemm_pack_b_weight(const gemm_src *src, const eng_kernels *kern, float *dst, int64_t n0,
                        int64_t n_valid, int64_t k0, int64_t kc);

/* bias is per output column (N values) unless bias_per_row (M values). */
typedef struct gemm_args {
    int64_t M, N, K;
    const gemm_src *a, *b;
    const float *bias;
    int bias_per_row;
    float *c;          /* (M, N), row stride ldc */
    int64_t ldc;
} gemm_args;

eng_status gemm_run(eng_runtime *rt, const gemm_args *g, eng_error *err);

#endif /* ENG_GEMM_H */
