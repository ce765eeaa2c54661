/* tensor.c - dtype table, tensor view helpers, bulk dtype conversion, aligned allocation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "internal.h"

static const struct {
    const char *name;
    size_t size;
} dtype_table[ENG_DTYPE_COUNT] = {
    [ENG_F32] = {"f32", 4}, [ENG_F16] = {"f16", 2},     [ENG_BF16] = {"bf16", 2},
    [ENG_F8_E4M3] = {"f8_e4m3", 1}, [ENG_I64] = {"i64", 8}, [ENG_I32] = {"i32", 4},
    [ENG_U8] = {"u8", 1},   [ENG_BOOL] = {"bool", 1},
    [ENG_F64] = {"f64", 8}, [ENG_F8_E5M2] = {"f8_e5m2", 1}, [ENG_I16] = {"i16", 2},
    [ENG_I8] = {"i8", 1},   [ENG_U16] = {"u16", 2},     [ENG_U32] = {"u32", 4},
    [ENG_U64] = {"u64", 8},
};

const char *eng_dtype_name(eng_dtype dt) {
    return (dt >= 0 && dt < ENG_DTYPE_COUNT) ? dtype_table[dt].name : "unknown";
}

size_t eng_dtype_size(eng_dtype dt) {
    return (dt >= 0 && dt < ENG_DTYPE_COUNT) ? dtype_table[dt].size : 0;
}

void *eng_aligned_alloc(size_t bytes) {
    if (bytes == 0) bytes = ENG_ALIGN;
    size_t rounded = (bytes + ENG_ALIGN - 1) / ENG_ALIGN * ENG_ALIGN;
    if (rounded < bytes) return NULL; /* overflow */
    void *p = NULL;
    if (posix_memalign(&p, ENG_ALIGN, rounded) != 0) return NULL;
    return p;
}

void eng_free(void *p) { free(p); }

int64_t eng_tensor_numel(const eng_tensor *t) {
    int64_t n = 1;
    for (int32_t i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

const char *eng_shape_str(const int64_t *shape, int32_t ndim, char *buf, size_t cap) {
    size_t used = 0;
    if (cap == 0) return buf;
    buf[0] = '\0';
    used += (size_t)snprintf(buf + used, cap - used, "[");
    for (int32_t i = 0; i < ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
    return buf;
}

eng_status eng_tensor_expect(const eng_tensor *t, const char *what, int32_t ndim,
                             const int64_t *shape, eng_error *err) {
    bool ok = t->ndim == ndim;
    for (int32_t i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (ok) return ENG_OK;
    char got[128], want[128];
    return eng_err_set(err, ENG_ERR_FORMAT, "tensor '%s': expected shape %s, got %s", what,
                       eng_shape_str(shape, ndim, want, sizeof want),
                       eng_shape_str(t->shape, t->ndim, got, sizeof got));
}

void eng_f32_to_bf16(uint16_t *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = eng_f32_to_bf16_1(src[i]);
}
void eng_bf16_to_f32(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = eng_bf16_to_f32_1(src[i]);
}
void eng_f32_to_f16(uint16_t *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = eng_f32_to_f16_1(src[i]);
}
void eng_f16_to_f32(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = eng_f16_to_f32_1(src[i]);
}

eng_status eng_convert_to_f32(float *dst, const void *src, eng_dtype dt, int64_t n,
                              eng_error *err) {
    switch (dt) {
    case ENG_F32: memcpy(dst, src, (size_t)n * 4); return ENG_OK;
    case ENG_BF16: eng_bf16_to_f32(dst, (const uint16_t *)src, n); return ENG_OK;
    case ENG_F16: eng_f16_to_f32(dst, (const uint16_t *)src, n); return ENG_OK;
    case ENG_F8_E4M3: {
        const uint8_t *s = (const uint8_t *)src;
        for (int64_t i = 0; i < n; i++) dst[i] = eng_f8e4m3_to_f32_1(s[i]);
        return ENG_OK;
    }
    default:
        return eng_err_set(err, ENG_ERR_UNSUPPORTED, "cannot convert dtype %s to f32",
                           eng_dtype_name(dt));
    }
}
