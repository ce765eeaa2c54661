/* rowops.c - threaded row-wise helpers (see rowops.h). Work is cut into chunks of whole rows
 * (about 64 KB of data each) so the pool overhead stays small next to the memory traffic. */
#include <string.h>

#include "rowops.h"

typedef enum row_kind {
    ROW_LAYERNORM,
    ROW_RMSNORM,
    ROW_GELU,
    ROW_SILU,
    ROW_GATED_ADD,
    ROW_ROPE_PAIRS,
    ROW_ROPE_HALF,
    ROW_TO_HEADS,
    ROW_FROM_HEADS,
} row_kind;

typedef struct row_job {
    row_kind kind;
    const eng_kernels *k;
    float *y;
    const float *x;
    const float *a, *b;  /* g/b, w, gate, cos/sin */
    int64_t rows, n;     /* n: row length (elements) */
    int64_t heads, dim;  /* rope / head transposes */
    int64_t chunk;       /* rows per task */
    float eps;
} row_job;

static void row_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    const row_job *j = (const row_job *)ctx;
    const int64_t r0 = task * j->chunk, r1 = r0 + j->chunk < j->rows ? r0 + j->chunk : j->rows;
    for (int64_t r = r0; r < r1; r++) {
        switch (j->kind) {
        case ROW_LAYERNORM: j->k->layernorm(j->y + r * j->n, j->x + r * j->n, j->a, j->b, j->n, j->eps); break;
        case ROW_RMSNORM: j->k->rmsnorm(j->y + r * j->n, j->x + r * j->n, j->a, j->n, j->eps); break;
        case ROW_GELU: j->k->gelu_tanh(j->y + r * j->n, j->y + r * j->n, j->n); break;
        case ROW_SILU: j->k->silu(j->y + r * j->n, j->y + r * j->n, j->n); break;
        case ROW_GATED_ADD: {
            float *h = j->y + r * j->n;
            const float *v = j->x + r * j->n, *g = j->a;
            for (int64_t i = 0; i < j->n; i++) h[i] += g[i] * v[i];
            break;
        }
        case ROW_ROPE_PAIRS:
        case ROW_ROPE_HALF: {
            const float *c = j->a + r * (j->dim / 2), *s = j->b + r * (j->dim / 2);
            for (int64_t h = 0; h < j->heads; h++) {
                float *v = j->y + r * j->n + h * j->dim;
                if (j->kind == ROW_ROPE_PAIRS) j->k->rope_pairs(v, c, s, j->dim / 2);
                else j->k->rope_half(v, c, s, j->dim / 2);
            }
            break;
        }
        case ROW_TO_HEADS: /* y (heads, rows, dim) <- x (rows, heads*dim) */
            for (int64_t h = 0; h < j->heads; h++)
                memcpy(j->y + (h * j->rows + r) * j->dim, j->x + r * j->n + h * j->dim,
                       (size_t)j->dim * sizeof(float));
            break;
        case ROW_FROM_HEADS: /* y (rows, heads*dim) <- x (heads, rows, dim) */
            for (int64_t h = 0; h < j->heads; h++)
                memcpy(j->y + r * j->n + h * j->dim, j->x + (h * j->rows + r) * j->dim,
                       (size_t)j->dim * sizeof(float));
            break;
        }
    }
}

static void run(eng_runtime *rt, row_job *j) {
    if (j->rows <= 0 || j->n <= 0) return;
    int64_t chunk = (16384 + j->n - 1) / j->n; /* ~64 KB of floats per task */
    if (chunk < 1) chunk = 1;
    j->chunk = chunk;
    j->k = &rt->kern;
    eng_pool_run(rt->pool, (j->rows + chunk - 1) / chunk, row_task, j);
}

void rows_layernorm(eng_runtime *rt, float *y, const float *x, int64_t rows, int64_t n,
                    const float *g, const float *b, float eps) {
    row_job j = {.kind = ROW_LAYERNORM, .y = y, .x = x, .a = g, .b = b, .rows = rows, .n = n, .eps = eps};
    run(rt, &j);
}

void rows_rmsnorm(eng_runtime *rt, float *y, const float *x, int64_t rows, int64_t n,
                  const float *w, float eps) {
    row_job j = {.kind = ROW_RMSNORM, .y = y, .x = x, .a = w, .rows = rows, .n = n, .eps = eps};
    run(rt, &j);
}

/* Elementwise ops over n values: viewed as rows of 4096. */
static void elementwise(eng_runtime *rt, row_kind kind, float *x, int64_t n) {
    const int64_t row = 4096;
    row_job j = {.kind = kind, .y = x, .rows = n / row, .n = row};
    run(rt, &j);
    int64_t done = (n / row) * row;
    if (done < n) {
        if (kind == ROW_GELU) rt->kern.gelu_tanh(x + done, x + done, n - done);
        else rt->kern.silu(x + done, x + done, n - done);
    }
}

void rows_gelu_tanh(eng_runtime *rt, float *x, int64_t n) { elementwise(rt, ROW_GELU, x, n); }
void rows_silu(eng_runtime *rt, float *x, int64_t n) { elementwise(rt, ROW_SILU, x, n); }

void rows_gated_add(eng_runtime *rt, float *h, const float *gate, const float *y, int64_t rows,
                    int64_t n) {
    row_job j = {.kind = ROW_GATED_ADD, .y = h, .x = y, .a = gate, .rows = rows, .n = n};
    run(rt, &j);
}

void rows_rope_pairs(eng_runtime *rt, float *x, int64_t rows, int64_t heads, int64_t dim,
                     const float *cos, const float *sin) {
    row_job j = {.kind = ROW_ROPE_PAIRS, .y = x, .a = cos, .b = sin, .rows = rows,
                 .n = heads * dim, .heads = heads, .dim = dim};
    run(rt, &j);
}

void rows_rope_half(eng_runtime *rt, float *x, int64_t rows, int64_t heads, int64_t dim,
                    const float *cos, const float *sin) {
    row_job j = {.kind = ROW_ROPE_HALF, .y = x, .a = cos, .b = sin, .rows = rows,
                 .n = heads * dim, .heads = heads, .dim = dim};
    run(rt, &j);
}

void rows_to_heads(eng_runtime *rt, float *dst, const float *src, int64_t rows, int64_t heads,
                   int64_t dim) {
    row_job j = {.kind = ROW_TO_HEADS, .y = dst, .x = src, .rows = rows, .n = heads * dim,
                 .heads = heads, .dim = dim};
    run(rt, &j);
}

void heads_to_rows(eng_runtime *rt, float *dst, const float *src, int64_t rows, int64_t heads,
                   int64_t dim) {
    row_job j = {.kind = ROW_FROM_HEADS, .y = dst, .x = src, .rows = rows, .n = heads * dim,
                 .heads = heads, .dim = dim};
    run(rt, &j);
}
