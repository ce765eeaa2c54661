/* PLACEHOLDER */
#include "gemm.h"
#include "ops_cpu.h"
eng_status cpu_linear(eng_runtime *rt, float *y, const float *x, const void *w, eng_dtype w_dtype,
                      const float *b, int64_t m, int64_t n, int64_t k, eng_error *err) {
    return eng_err_set(err, ENG_ERR_UNSUPPORTED, "linear: not implemented yet");
}
