/* backend.h - the backend seam. Ops go through a vtable so a CUDA backend can keep weights on
 * the device (weight_prepare uploads once and returns a handle) and run the same ops.
 * The CPU backend (backend_cpu.c) is complete on its own; engine code never #ifdefs CUDA
 * outside runtime.c. Arguments are validated by ops.c before they reach a backend. */
#ifndef ENG_BACKEND_H
#define ENG_BACKEND_H

#include "internal.h"

typedef struct eng_backend_ops {
    const char *name;
    eng_backend kind;
    /* see eng_linear in engine.h; y (m, n), x (m, k), w (n, k), b (n) | NULL */
    eng_status (*linear)(eng_runtime *rt, float *y, const float *x, const void *w,
                         eng_dtype w_dtype, const float *b, int64_t m, int64_t n, int64_t k,
                         eng_error *err);
    /* see eng_attention; o, q (hq, sq, d); k, v (hkv, sk, d) */
    eng_status (*attention)(eng_runtime *rt, float *o, const float *q, const float *k,
                            const float *v, const uint8_t *key_mask, int causal, int64_t hq,
                            int64_t hkv, int64_t sq, int64_t sk, int64_t d, float scale,
                            const eng_cancel *cancel, eng_error *err);
    /* see eng_conv2d; y (cout, h, w), x (cin, h, w), w (cout, cin, ks, ks) */
    eng_status (*conv2d)(eng_runtime *rt, float *y, const float *x, const void *w,
                         eng_dtype w_dtype, const float *b, int64_t cin, int64_t cout,
                         int64_t h, int64_t w_, int32_t ksize, eng_error *err);
    /* Weight residency. CPU: the handle is the host pointer (weights stay mmapped). */
    eng_status (*weight_prepare)(eng_runtime *rt, const eng_tensor *host, void **handle,
                                 eng_error *err);
    void (*weight_release)(eng_runtime *rt, void *handle);
} eng_backend_ops;

extern const eng_backend_ops eng_backend_cpu;

#endif /* ENG_BACKEND_H */
