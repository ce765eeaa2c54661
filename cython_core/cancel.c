/* cancel.c - per-request cancellation token: one relaxed atomic flag, never reset. */
#include <stdatomic.h>
#include <stdlib.h>

#include "engine.h"

struct eng_cancel {
    atomic_int flag;
};

eng_cancel *eng_cancel_create(void) {
    eng_cancel *c = malloc(sizeof *c);
    if (c) atomic_init(&c->flag, 0);
    return c;
}

void eng_cancel_request(eng_cancel *c) {
    if (c) atomic_store_explicit(&c->flag, 1, memory_order_relaxed);
}

int eng_cancel_requested(const eng_cancel *c) {
    return c ? atomic_load_explicit(&((eng_cancel *)c)->flag, memory_order_relaxed) : 0;
}

void eng_cancel_free(eng_cancel *c) { free(c); }
