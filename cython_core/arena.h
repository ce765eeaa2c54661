/* arena.h - bump allocator for activations: sized once up front, no malloc in hot loops. */
#ifndef ENG_ARENA_H
#define ENG_ARENA_H

#include <stddef.h>

#include "internal.h"

typedef struct eng_arena {
    unsigned char *base; /* ENG_ALIGN-aligned block of cap bytes */
    size_t cap;
    size_t used;         /* bytes handed out */
    size_t peak;         /* high-water mark of used (memory reports) */
} eng_arena;

eng_status eng_arena_init(eng_arena *a, size_t cap, eng_error *err);
void eng_arena_free(eng_arena *a);  /* safe on a zeroed or freed arena */
/* ENG_ALIGN-aligned block, or NULL + ENG_ERR_OOM naming `what` if the arena is full. */
void *eng_arena_alloc(eng_arena *a, size_t bytes, const char *what, eng_error *err);
/* Convenience: n float32s. */
float *eng_arena_floats(eng_arena *a, int64_t n, const char *what, eng_error *err);
static inline size_t eng_arena_mark(const eng_arena *a) { return a->used; }
static inline void eng_arena_reset(eng_arena *a, size_t mark) {
    if (mark <= a->used) a->used = mark;
}

#endif /* ENG_ARENA_H */
