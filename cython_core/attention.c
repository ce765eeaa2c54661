/* PLACEHOLDER: flash attention driver (being written). */
#include "ops_cpu.h"
eng_status cpu_attention(eng_runtime *rt, float *o, const float *q, const float *k, const float *v,
                         const uint8_t *key_mask, int causal, int64_t hq, int64_t hkv, int64_t sq,
                         int64_t sk, int64_t d, float scale, const eng_cancel *cancel,
                         eng_error *err) {
    return eng_err_set(err, ENG_ERR_UNSUPPORTED, "attention: not implemented yet");
}
