/* pixels.c - decoded image planes -> interleaved 8-bit pixels: the last step of every image.
 *
 * eng_to_rgb8 computes what diffusers' VaeImageProcessor.postprocess computes in float32 for
 * PIL / numpy output: v = clamp(x * 0.5 + 0.5, 0, 1), then round_half_even(v * 255) as uint8
 * (torch.round rounds half to even), with the channel axis moved last. It is bit-identical to
 * that formula (edge_server._vae_mixin.latents_to_uint8 in numpy is the reference the tests
 * compare with), which needs two things of the compiler:
 *   - no contraction of v * 255 into the rounding add below (an FMA would round the exact
 *     product once where the reference rounds it to float first): this file is compiled with
 *     -ffp-contract=off (CMakeLists.txt). x * 0.5 + 0.5 may be fused: x * 0.5 is exact.
 *   - IEEE semantics for the rounding: (y + 2^23) - 2^23 rounds y in [0, 2^23) to the nearest
 *     integer, ties to even, in the default rounding mode (no -ffast-math anywhere).
 *     -fno-trapping-math (no effect on values) lets the compiler turn the clamps into
 *     branch-free selects, so the per-channel loop vectorises.
 * NaN becomes 0 (what the reference's float -> uint8 cast gives on x86). Plain loops: each
 * channel of a span of a row is converted (vectorised), then the bytes are interleaved; rows
 * are spread over the runtime's pool. 0.12 ms at 256x256 and 1.8 ms at 1024x1024 on 2 threads,
 * where numpy (five temporaries) needed 0.5-1.3 ms and 11-16 ms.
 *
 * eng_project_rgb8 is the same conversion after a per-pixel linear map of cin channels to c
 * (the server's latent previews: 16 latent channels -> RGB by a fitted 16x3 matrix). In numpy
 * that map is a BLAS product, and OpenBLAS's threads then spin for about 0.1 s of CPU after
 * every call, taking the cores from the engine's pool; here it is a plain loop per span. */

#include "runtime.h"

#define ROUND_MAGIC 8388608.0f /* 2^23: adding it rounds [0, 2^23) to integers (ties to even) */
#define ROWS_PER_TASK 8
#define SPAN 512 /* pixels converted per channel before interleaving */

typedef struct rgb8_job {
    const float *x; /* (c, h, w), or (cin, h, w) when m is set */
    uint8_t *out;   /* (h, w, c) */
    int64_t c, h, w;
    const float *m; /* NULL, or (cin, c): channel ch of a pixel is b[ch] + sum_i x[i] m[i, ch] */
    const float *b; /* (c) */
    int64_t cin;
} rgb8_job;

static inline uint8_t to_u8(float x) {
    float v = x * 0.5f + 0.5f;
    v = v > 0.0f ? v : 0.0f; /* NaN -> 0 here */
    v = v < 1.0f ? v : 1.0f;
    float y = v * 255.0f;
    return (uint8_t)(int32_t)((y + ROUND_MAGIC) - ROUND_MAGIC);
}

/* One channel's run of n <= SPAN values -> uint8 (vectorised: contiguous in, contiguous out). */
static void span_u8(const float *restrict src, uint8_t *restrict dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = to_u8(src[i]);
}

/* Output channel ch of a run of n <= SPAN pixels: b[ch] + sum_i src[i * plane + k] m[i, ch]
 * (vectorised over k), then -> uint8. */
static void span_project_u8(const rgb8_job *j, const float *src, int64_t plane, int64_t ch,
                            uint8_t *restrict dst, int64_t n) {
    float acc[SPAN]; /* (n) */
    const float b = j->b[ch];
    for (int64_t k = 0; k < n; k++) acc[k] = b;
    for (int64_t i = 0; i < j->cin; i++) {
        const float mi = j->m[i * j->c + ch];
        const float *restrict xi = src + i * plane;
        for (int64_t k = 0; k < n; k++) acc[k] += xi[k] * mi;
    }
    span_u8(acc, dst, n);
}

static void rgb8_task(void *ctx, int64_t task, int thread) {
    const rgb8_job *j = ctx;
    const int64_t y0 = task * ROWS_PER_TASK;
    const int64_t y1 = y0 + ROWS_PER_TASK < j->h ? y0 + ROWS_PER_TASK : j->h;
    const int64_t plane = j->h * j->w, c = j->c;
    uint8_t tmp[4][SPAN]; /* (c, SPAN): the converted channels of one span of a row */
    for (int64_t y = y0; y < y1; y++)
        for (int64_t x0 = 0; x0 < j->w; x0 += SPAN) {
            const int64_t n = j->w - x0 < SPAN ? j->w - x0 : SPAN;
            const float *src = j->x + y * j->w + x0; /* channel ch at src + ch * plane */
            uint8_t *o = j->out + (y * j->w + x0) * c; /* (n, c) */
            for (int64_t ch = 0; ch < c; ch++) {
                if (j->m) span_project_u8(j, src, plane, ch, tmp[ch], n);
                else span_u8(src + ch * plane, tmp[ch], n);
            }
            if (c == 3) {
                for (int64_t i = 0; i < n; i++) {
                    o[3 * i] = tmp[0][i];
                    o[3 * i + 1] = tmp[1][i];
                    o[3 * i + 2] = tmp[2][i];
                }
            } else {
                for (int64_t i = 0; i < n; i++)
                    for (int64_t ch = 0; ch < c; ch++) o[c * i + ch] = tmp[ch][i];
            }
        }
}

/* Checks out's size and converts j's rows on rt's pool (fn names the caller in errors). */
static eng_status run_rgb8(eng_runtime *rt, const rgb8_job *j, size_t out_bytes, const char *fn,
                           eng_error *err) {
    const size_t need = (size_t)j->c * (size_t)j->h * (size_t)j->w;
    if (out_bytes < need)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "%s: out has %zu bytes, needs %zu", fn,
                           out_bytes, need);
    eng_cpu_clear_upper(); /* baseline-SSE code on this thread: see internal.h */
    eng_runtime_parallel(rt, (j->h + ROWS_PER_TASK - 1) / ROWS_PER_TASK, rgb8_task, (void *)j);
    return ENG_OK;
}

eng_status eng_to_rgb8(eng_runtime *rt, const float *x, int64_t c, int64_t h, int64_t w,
                       uint8_t *out, size_t out_bytes, eng_error *err) {
    if (!rt) return eng_err_set(err, ENG_ERR_INVALID_ARG, "to_rgb8: runtime is NULL");
    if (!x || !out) return eng_err_set(err, ENG_ERR_INVALID_ARG, "to_rgb8: x and out are required");
    if (c < 1 || c > 4 || h < 1 || w < 1 || h > 65536 || w > 65536)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "to_rgb8: shape (%lld, %lld, %lld) out of range (1..4 channels, "
                           "1..65536 per side)", (long long)c, (long long)h, (long long)w);
    const rgb8_job j = {.x = x, .out = out, .c = c, .h = h, .w = w};
    return run_rgb8(rt, &j, out_bytes, "to_rgb8", err);
}

eng_status eng_project_rgb8(eng_runtime *rt, const float *x, int64_t cin, int64_t h, int64_t w,
                            const float *m, const float *b, int64_t c, uint8_t *out,
                            size_t out_bytes, eng_error *err) {
    if (!rt) return eng_err_set(err, ENG_ERR_INVALID_ARG, "project_rgb8: runtime is NULL");
    if (!x || !m || !b || !out)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "project_rgb8: x, m, b and out are required");
    if (cin < 1 || cin > 1024 || c < 1 || c > 4 || h < 1 || w < 1 || h > 65536 || w > 65536)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "project_rgb8: x (%lld, %lld, %lld) to %lld channels out of range "
                           "(1..1024 in, 1..4 out, 1..65536 per side)", (long long)cin,
                           (long long)h, (long long)w, (long long)c);
    const rgb8_job j = {.x = x, .out = out, .c = c, .h = h, .w = w, .m = m, .b = b, .cin = cin};
    return run_rgb8(rt, &j, out_bytes, "project_rgb8", err);
}
