/* ops.c - public op entry points (engine.h): argument validation with clear messages, the
 * runtime lock, then the backend. */
#include <math.h>
#include <pthread.h>

#include "runtime.h"

static eng_status check_rt(const eng_runtime *rt, const char *op, eng_error *err) {
    if (!rt) return eng_err_set(err, ENG_ERR_INVALID_ARG, "%s: runtime is NULL", op);
    return ENG_OK;
}

static eng_status check_out(size_t have, int64_t n_floats, const char *op, const char *what,
                            eng_error *err) {
    size_t need;
    if (!eng_bytes_for(n_floats, sizeof(float), &need))
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "%s: %s size overflows", op, what);
    if (have < need)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "%s: %s buffer has %zu bytes, needs %zu", op,
                           what, have, need);
    return ENG_OK;
}

static bool weight_dtype_ok(eng_dtype dt) {
    return dt == ENG_F32 || dt == ENG_F16 || dt == ENG_BF16;
}

/* Largest dimension product we accept: keeps every index computation in int64 safe. */
#define ENG_MAX_ELEMS ((int64_t)1 << 40)

static bool prod_ok(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0) return false;
    if (__builtin_mul_overflow(a, b, out)) return false;
    return *out <= ENG_MAX_ELEMS;
}

eng_status eng_linear(eng_runtime *rt, float *y, size_t y_bytes, const float *x, const void *w,
                      eng_dtype w_dtype, const float *b, int64_t m, int64_t n, int64_t k,
                      eng_error *err) {
    eng_status st;
    int64_t mn, mk, nk;
    if ((st = check_rt(rt, "linear", err))) return st;
    if (m < 1 || n < 1 || k < 1)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "linear: m=%lld n=%lld k=%lld must all be >= 1",
                           (long long)m, (long long)n, (long long)k);
    if (!prod_ok(m, n, &mn) || !prod_ok(m, k, &mk) || !prod_ok(n, k, &nk))
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "linear: m=%lld n=%lld k=%lld is too large",
                           (long long)m, (long long)n, (long long)k);
    if (!y || !x || !w) return eng_err_set(err, ENG_ERR_INVALID_ARG, "linear: y, x and w must be non-NULL");
    if (!weight_dtype_ok(w_dtype))
        return eng_err_set(err, ENG_ERR_UNSUPPORTED, "linear: weight dtype %s (expected f32, f16 or bf16)",
                           eng_dtype_name(w_dtype));
    if ((st = check_out(y_bytes, mn, "linear", "y", err))) return st;
    pthread_mutex_lock(&rt->lock);
    st = rt->ops->linear(rt, y, x, w, w_dtype, b, m, n, k, err);
    pthread_mutex_unlock(&rt->lock);
    return st;
}

eng_status eng_attention(eng_runtime *rt, float *o, size_t o_bytes, const float *q,
                         const float *k, const float *v, const uint8_t *key_mask, int causal,
                         int64_t hq, int64_t hkv, int64_t sq, int64_t sk, int64_t d, float scale,
                         const eng_cancel *cancel, eng_error *err) {
    eng_status st;
    int64_t hs, hsd, kvs, kvsd;
    if ((st = check_rt(rt, "attention", err))) return st;
    if (hq < 1 || hkv < 1 || sq < 1 || sk < 1 || d < 1)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "attention: hq=%lld hkv=%lld sq=%lld sk=%lld d=%lld must all be >= 1",
                           (long long)hq, (long long)hkv, (long long)sq, (long long)sk, (long long)d);
    if (hq % hkv != 0)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "attention: %lld query heads is not a multiple of %lld kv heads (GQA)",
                           (long long)hq, (long long)hkv);
    if (d > 1024)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "attention: head dim %lld > 1024", (long long)d);
    if (!prod_ok(hq, sq, &hs) || !prod_ok(hs, d, &hsd) || !prod_ok(hkv, sk, &kvs) ||
        !prod_ok(kvs, d, &kvsd))
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "attention: sizes too large");
    if (!o || !q || !k || !v)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "attention: o, q, k and v must be non-NULL");
    if (!(scale == scale) || isinf(scale))
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "attention: scale must be finite");
    if ((st = check_out(o_bytes, hsd, "attention", "o", err))) return st;
    if (scale <= 0.0f) scale = 1.0f / sqrtf((float)d);
    pthread_mutex_lock(&rt->lock);
    st = rt->ops->attention(rt, o, q, k, v, key_mask, causal, hq, hkv, sq, sk, d, scale, cancel, err);
    pthread_mutex_unlock(&rt->lock);
    return st;
}

eng_status eng_conv2d(eng_runtime *rt, float *y, size_t y_bytes, const float *x, const void *w,
                      eng_dtype w_dtype, const float *b, int64_t cin, int64_t cout, int64_t h,
                      int64_t w_, int32_t ksize, eng_error *err) {
    eng_status st;
    int64_t hw, outn, kk;
    if ((st = check_rt(rt, "conv2d", err))) return st;
    if (ksize != 1 && ksize != 3)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "conv2d: kernel size %d (expected 1 or 3)", ksize);
    if (cin < 1 || cout < 1 || h < 1 || w_ < 1)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "conv2d: cin=%lld cout=%lld h=%lld w=%lld must all be >= 1",
                           (long long)cin, (long long)cout, (long long)h, (long long)w_);
    if (!prod_ok(h, w_, &hw) || !prod_ok(hw, cout, &outn) || !prod_ok(cin, (int64_t)ksize * ksize, &kk) ||
        !prod_ok(hw, cin, &kk))
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "conv2d: sizes too large");
    if (!y || !x || !w) return eng_err_set(err, ENG_ERR_INVALID_ARG, "conv2d: y, x and w must be non-NULL");
    if (!weight_dtype_ok(w_dtype))
        return eng_err_set(err, ENG_ERR_UNSUPPORTED, "conv2d: weight dtype %s (expected f32, f16 or bf16)",
                           eng_dtype_name(w_dtype));
    if ((st = check_out(y_bytes, outn, "conv2d", "y", err))) return st;
    pthread_mutex_lock(&rt->lock);
    st = rt->ops->conv2d(rt, y, x, w, w_dtype, b, cin, cout, h, w_, ksize, err);
    pthread_mutex_unlock(&rt->lock);
    return st;
}
