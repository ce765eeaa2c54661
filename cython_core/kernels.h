/* kernels.h - the kernel function table and the per-ISA tables.
 *
 * Kernels are single-threaded functions over a slice; threading lives in the op drivers
 * (gemm.c, attention.c, ops.c). kern_*_scalar.c is the specification; every SIMD entry
 * computes the same function and is tested against it (tests/c/test_kernels.c).
 * Shapes are numpy order. Pointers do not alias unless a comment says "in place". */
#ifndef ENG_KERNELS_H
#define ENG_KERNELS_H

#include <stdint.h>

#include "engine.h"

/* gemm_ukr flags */
#define ENG_UKR_ACCUM 1  /* c += a.b   (otherwise c = a.b)                               */
#define ENG_UKR_BIAS_N 2 /* c = a.b + bias[j] (bias has NR values; ignored with ACCUM)   */
#define ENG_UKR_BIAS_M 4 /* c = a.b + bias[i] (bias has MR values; ignored with ACCUM)   */

typedef struct eng_kernels {
    const char *name; /* "scalar", "avx2", ... */
    eng_isa isa;

    /* ---- GEMM (gemm.c drives these) -------------------------------------------------- */
    int gemm_mr, gemm_nr; /* micro-tile: MR rows x NR columns; NR is a multiple of 4       */
    /* c[i*ldc + j] (+)= sum_p a[p*MR + i] * b[p*ldb + j]   for i < MR, j < NR, p < kc.
     * a: (kc, MR) packed A micro-panel;  b: kc rows of NR floats, row stride ldb;
     * c: (MR, NR) tile, row stride ldc.  bias: see flags.  kc may be 0. */
    void (*gemm_ukr)(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
                     int64_t ldc, const float *bias, int flags);
    /* Pack an A micro-panel from row-major f32: dst[p*MR + i] = x[i*ldx + p] for i < m_valid,
     * 0 for m_valid <= i < MR; p < kc. */
    void (*pack_a_f32)(float *dst, const float *x, int64_t ldx, int64_t m_valid, int64_t kc);
    /* Pack a B micro-panel from a (N, K) weight slice w (points at W[n0][k0], row stride ldw
     * elements): dst[p*NR + j] = f32(w[j*ldw + p]) for j < n_valid, 0 for n_valid <= j < NR. */
    void (*pack_b_f32)(float *dst, const float *w, int64_t ldw, int64_t n_valid, int64_t kc);
    void (*pack_b_bf16)(float *dst, const uint16_t *w, int64_t ldw, int64_t n_valid,
                        int64_t kc);
    void (*pack_b_f16)(float *dst, const uint16_t *w, int64_t ldw, int64_t n_valid,
                       int64_t kc);
    /* Matrix-vector products for tiny M (no packing): y[j] = sum_p x[p] * f32(w[j*ldw + p])
     * for j < n, p < k.  y (n), x (k), w (n rows of ldw elements). */
    void (*gemv_f32)(float *y, const float *x, const float *w, int64_t ldw, int64_t n, int64_t k);
    void (*gemv_bf16)(float *y, const float *x, const uint16_t *w, int64_t ldw, int64_t n,
                      int64_t k);
    void (*gemv_f16)(float *y, const float *x, const uint16_t *w, int64_t ldw, int64_t n,
                     int64_t k);

    /* ---- row kernels (kern_elem_*.c) --------------------------------------------------- */
    /* y = x / sqrt(mean(x^2) + eps) * w   (w (n) or NULL = 1).  y may equal x (in place). */
    void (*rmsnorm)(float *y, const float *x, const float *w, int64_t n, float eps);
    /* y = (x - mean) / sqrt(var + eps) * g + b  (biased var; g, b (n) or NULL). In place ok. */
    void (*layernorm)(float *y, const float *x, const float *g, const float *b, int64_t n,
                      float eps);
    /* y = x * sigmoid(x). In place ok. */
    void (*silu)(float *y, const float *x, int64_t n);
    /* y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). In place ok. */
    void (*gelu_tanh)(float *y, const float *x, int64_t n);
    /* y = exp(x - max x) / sum. In place ok. n >= 1. */
    void (*softmax)(float *y, const float *x, int64_t n);
    /* In place, interleaved pairs (Qwen-Image MMDiT): for m < n_pairs
     *   (x[2m], x[2m+1]) <- (x[2m] c - x[2m+1] s, x[2m] s + x[2m+1] c), c = cos[m], s = sin[m] */
    void (*rope_pairs)(float *x, const float *cos, const float *sin, int64_t n_pairs);
    /* In place, half-split (Qwen2 text encoder, rotate_half): for m < half
     *   (x[m], x[m+half]) <- (x[m] c - x[m+half] s, x[m+half] c + x[m] s), c = cos[m], s = sin[m] */
    void (*rope_half)(float *x, const float *cos, const float *sin, int64_t half);
    /* Nearest 2x upsample of one plane: y (2h, 2w), x (h, w): y[r][c] = x[r/2][c/2]. */
    void (*upsample2x)(float *y, const float *x, int64_t h, int64_t w);

    /* ---- attention (kern_attn_*.c; attention.c drives it) ----------------------------- */
    /* One online-softmax update for a tile of scores, rows r < rows, columns j < cols:
     *   s (rows, ld): raw scores already scaled (masked entries are -INFINITY)
     *   m, l (rows): running max and running sum, updated in place
     *   corr (rows): out, exp(m_old - m_new) by which the caller rescales its O rows
     * On return s holds p = exp(s - m_new) (0 where s was -inf). A row whose scores and old max
     * are all -inf keeps m = -inf, l unchanged, corr = 1, p = 0. */
    void (*attn_softmax_tile)(float *s, int64_t ld, int64_t rows, int64_t cols, float *m,
                              float *l, float *corr);
} eng_kernels;

/* Per-ISA fillers: each overrides the entries its file implements (zlib-ng partial tables).
 * Defined only where compiled (x86-64: avx2/avx512; aarch64: neon). */
void eng_kernels_fill_scalar(eng_kernels *t);
void eng_kern_gemm_scalar(eng_kernels *t);
void eng_kern_elem_scalar(eng_kernels *t);
void eng_kern_attn_scalar(eng_kernels *t);
#if defined(__x86_64__) || defined(_M_X64)
void eng_kern_gemm_avx2(eng_kernels *t);
void eng_kern_elem_avx2(eng_kernels *t);
void eng_kern_attn_avx2(eng_kernels *t);
void eng_kern_gemm_avx512(eng_kernels *t);
void eng_kern_elem_avx512(eng_kernels *t);
void eng_kern_attn_avx512(eng_kernels *t);
#endif
#if defined(__aarch64__)
void eng_kern_gemm_neon(eng_kernels *t);
void eng_kern_elem_neon(eng_kernels *t);
void eng_kern_attn_neon(eng_kernels *t);
#endif

/* Builds the table for an ISA (scalar first, then the ISA's overrides).
 * ENG_ERR_UNSUPPORTED if the ISA is not compiled in or the CPU lacks it. */
eng_status eng_kernels_init(eng_kernels *t, eng_isa isa, eng_error *err);

#endif /* ENG_KERNELS_H */
