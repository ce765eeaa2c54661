/* internal.h - shared internal types and helpers of the engine (never included by Cython).
 * Error reporting, checked size arithmetic, the tensor view. */
#ifndef ENG_INTERNAL_H
#define ENG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

#if defined(__GNUC__)
#define ENG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define ENG_LIKELY(x) __builtin_expect(!!(x), 1)
#define ENG_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define ENG_PRINTF(a, b)
#define ENG_LIKELY(x) (x)
#define ENG_UNLIKELY(x) (x)
#endif

/* Alignment of every buffer the engine allocates (one cache line, one AVX-512 vector). */
#define ENG_ALIGN 64

/* Sets err (if non-NULL and not already holding an error) and returns st. The first error
 * wins, so a low-level message is not overwritten by a caller's generic one. */
eng_status eng_err_set(eng_error *err, eng_status st, const char *fmt, ...) ENG_PRINTF(3, 4);
/* Prepends context to an existing message: "loading transformer: <old message>". */
eng_status eng_err_prefix(eng_error *err, const char *fmt, ...) ENG_PRINTF(2, 3);
void eng_err_clear(eng_error *err);

/* Checked arithmetic for sizes that come from files or callers: false on overflow. */
static inline bool eng_mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline bool eng_add_overflow_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out);
}
/* n elements of `elem` bytes, false if it overflows size_t or n < 0. */
static inline bool eng_bytes_for(int64_t n, size_t elem, size_t *out) {
    if (n < 0) return false;
    return !__builtin_mul_overflow((size_t)n, elem, out);
}

/* x86-64 with AVX: vzeroupper. Libraries that leave the upper halves of the vector registers
 * dirty (ISA-L's AVX-512 deflate/CRC: the final PNG is encoded on the engine thread) make every
 * later legacy-SSE instruction on that thread pay a merge penalty; the scalar double math of
 * eng_randn ran 8x slower. Called where an engine entry point starts with scalar code.
 * Elsewhere a no-op. */
void eng_cpu_clear_upper(void);

/* Aligned allocation (ENG_ALIGN); free with eng_free. NULL on failure or overflow. */
void *eng_aligned_alloc(size_t bytes);
void eng_free(void *p);

/* A non-owning tensor view; numpy shape order. It is not a graph node. */
typedef struct eng_tensor {
    eng_dtype dtype;
    int32_t ndim;
    int64_t shape[ENG_MAX_DIMS];  /* outermost first */
    const void *data;             /* borrowed: mmap or arena */
} eng_tensor;

int64_t eng_tensor_numel(const eng_tensor *t);
/* Writes "[3072, 64]" into buf. */
const char *eng_shape_str(const int64_t *shape, int32_t ndim, char *buf, size_t cap);
/* ENG_ERR_FORMAT unless t has exactly the given rank and dims (what = tensor name). */
eng_status eng_tensor_expect(const eng_tensor *t, const char *what, int32_t ndim,
                             const int64_t *shape, eng_error *err);

/* Converts n elements of a float dtype (f32/f16/bf16/f8_e4m3) to float32. */
eng_status eng_convert_to_f32(float *dst, const void *src, eng_dtype dt, int64_t n,
                              eng_error *err);

#endif /* ENG_INTERNAL_H */
