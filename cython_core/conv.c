/* PLACEHOLDER: conv2d driver (being written). */
#include "ops_cpu.h"
eng_status cpu_conv2d(eng_runtime *rt, float *y, const float *x, const void *w, eng_dtype w_dtype,
                      const float *b, int64_t cin, int64_t cout, int64_t h, int64_t w_,
                      int32_t ksize, eng_error *err) {
    return eng_err_set(err, ENG_ERR_UNSUPPORTED, "conv2d: not implemented yet");
}
