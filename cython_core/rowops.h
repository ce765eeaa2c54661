/* rowops.h - threaded row-wise helpers shared by the model forward passes (mmdit.c, vae.c,
 * textenc.c): each splits rows over the runtime's pool and calls the kernel table's single-row
 * kernels. Shapes are numpy order; "rows x n" buffers are row-major. */
#ifndef ENG_ROWOPS_H
#define ENG_ROWOPS_H

#include "runtime.h"

/* y (rows, n) = layernorm(x (rows, n)) * g (n) + b (n); g, b may be NULL. y may equal x. */
void rows_layernorm(eng_runtime *rt, float *y, const float *x, int64_t rows, int64_t n,
                    const float *g, const float *b, float eps);
/* y (rows, n) = rmsnorm(x (rows, n)) * w (n); w may be NULL. y may equal x. */
void rows_rmsnorm(eng_runtime *rt, float *y, const float *x, int64_t rows, int64_t n,
                  const float *w, float eps);
/* In place over n values. */
void rows_gelu_tanh(eng_runtime *rt, float *x, int64_t n);
void rows_silu(eng_runtime *rt, float *x, int64_t n);
/* h (rows, n) += gate (n) * y (rows, n) */
void rows_gated_add(eng_runtime *rt, float *h, const float *gate, const float *y, int64_t rows,
                    int64_t n);
/* In place on x (rows, heads * dim): interleaved-pair RoPE per head with cos/sin
 * (rows, dim / 2) shared by all heads of a row. */
void rows_rope_pairs(eng_runtime *rt, float *x, int64_t rows, int64_t heads, int64_t dim,
                     const float *cos, const float *sin);
/* Same with the half-split (rotate_half) layout. */
void rows_rope_half(eng_runtime *rt, float *x, int64_t rows, int64_t heads, int64_t dim,
                    const float *cos, const float *sin);
/* dst (heads, rows, dim) <- src (rows, heads * dim), and back. */
void rows_to_heads(eng_runtime *rt, float *dst, const float *src, int64_t rows, int64_t heads,
                   int64_t dim);
void heads_to_rows(eng_runtime *rt, float *dst, const float *src, int64_t rows, int64_t heads,
                   int64_t dim);

#endif /* ENG_ROWOPS_H */
