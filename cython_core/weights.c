/* PLACEHOLDER: eng_weights API (being written). */
#include "internal.h"
eng_status eng_weights_open(const char *path, eng_weights **out, eng_error *err) {
    *out = NULL;
    return eng_err_set(err, ENG_ERR_UNSUPPORTED, "weights: not implemented yet");
}
void eng_weights_free(eng_weights *w) { (void)w; }
int64_t eng_weights_count(const eng_weights *w) { return 0; }
eng_status eng_weights_info(const eng_weights *w, int64_t index, eng_tensor_info *out, eng_error *err) {
    return eng_err_set(err, ENG_ERR_UNSUPPORTED, "weights: not implemented yet");
}
eng_status eng_weights_find(const eng_weights *w, const char *name, eng_tensor_info *out, eng_error *err) {
    return eng_err_set(err, ENG_ERR_UNSUPPORTED, "weights: not implemented yet");
}
eng_status eng_weights_read_f32(const eng_weights *w, const char *name, float *out, size_t out_bytes, eng_error *err) {
    return eng_err_set(err, ENG_ERR_UNSUPPORTED, "weights: not implemented yet");
}
