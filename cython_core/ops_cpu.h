/* ops_cpu.h - the CPU op drivers (arguments already validated by ops.c; the runtime lock is
 * held). Model code calls these directly. */
#ifndef ENG_OPS_CPU_H
#define ENG_OPS_CPU_H

#include "runtime.h"

/* gemm.c: y (m, n) = x (m, k) . w (n, k)^T + b (n) */
eng_status cpu_linear(eng_runtime *rt, float *y, const float *x, const void *w, eng_dtype w_dtype,
                      const float *b, int64_t m, int64_t n, int64_t k, eng_error *err);
/* attention.c: o, q (hq, sq, d); k, v (hkv, sk, d); scale > 0 */
eng_status cpu_attention(eng_runtime *rt, float *o, const float *q, const float *k, const float *v,
                         const uint8_t *key_mask, int causal, int64_t hq, int64_t hkv, int64_t sq,
                         int64_t sk, int64_t d, float scale, const eng_cancel *cancel,
                         eng_error *err);
/* conv.c: y (cout, h, w) = conv(x (cin, h, w), w (cout, cin, ks, ks)) + b */
eng_status cpu_conv2d(eng_runtime *rt, float *y, const float *x, const void *w, eng_dtype w_dtype,
                      const float *b, int64_t cin, int64_t cout, int64_t h, int64_t w_,
                      int32_t ksize, eng_error *err);

#endif /* ENG_OPS_CPU_H */
