/* arena.c - bump allocator for activations (see arena.h). */
#include <string.h>

#include "arena.h"

eng_status eng_arena_init(eng_arena *a, size_t cap, eng_error *err) {
    memset(a, 0, sizeof *a);
    a->base = eng_aligned_alloc(cap);
    if (!a->base)
        return eng_err_set(err, ENG_ERR_OOM, "arena: cannot allocate %zu bytes", cap);
    a->cap = cap;
    return ENG_OK;
}

void eng_arena_free(eng_arena *a) {
    if (!a) return;
    eng_free(a->base);
    memset(a, 0, sizeof *a);
}

void *eng_arena_alloc(eng_arena *a, size_t bytes, const char *what, eng_error *err) {
    size_t start = (a->used + ENG_ALIGN - 1) / ENG_ALIGN * ENG_ALIGN;
    if (start < a->used || bytes > a->cap || start > a->cap - bytes) {
        eng_err_set(err, ENG_ERR_OOM, "arena: '%s' needs %zu bytes, %zu of %zu free",
                    what ? what : "buffer", bytes, a->cap - (a->used < a->cap ? a->used : a->cap),
                    a->cap);
        return NULL;
    }
    a->used = start + bytes;
    if (a->used > a->peak) a->peak = a->used;
    return a->base + start;
}

float *eng_arena_floats(eng_arena *a, int64_t n, const char *what, eng_error *err) {
    size_t bytes;
    if (!eng_bytes_for(n, sizeof(float), &bytes)) {
        eng_err_set(err, ENG_ERR_OOM, "arena: '%s': %lld floats overflow", what ? what : "buffer",
                    (long long)n);
        return NULL;
    }
    return (float *)eng_arena_alloc(a, bytes, what, err);
}
