/* png_harness.c - the engine's PNG image-data encoder (cython_core/png.c) alone, in C: best time
 * of eng_png_zlib over a raw image for a thread count and ISA, for profiling the band coder with
 * perf (symbols, no Python around it). benchmarks/bench_png.py is the comparison with other
 * encoders; this is the tool for working on png_band.h.
 *
 *   cmake -S . -B build/prof -G Ninja -DENG_PYTHON=OFF -DCMAKE_BUILD_TYPE=Release \
 *         -DCMAKE_C_FLAGS=-g && cmake --build build/prof --target eng_core
 *   gcc -O2 -g -Icython_core benchmarks/png_harness.c build/prof/cython_core/libeng_core.a \
 *       -lpthread -lm -o /tmp/png_harness
 *   python -c "import numpy as np, edge_server; from edge_server.demo import ensure_demo_model; \
 *       m = edge_server.load_model(ensure_demo_model()); \
 *       m.generate('x', width=1024, height=1024, steps=4, seed=1).pixels[0].tofile('/tmp/img.raw')"
 *   /tmp/png_harness /tmp/img.raw 1024 1024 3 [threads] [seconds]   # ENG_ISA=scalar|avx2|...
 *   perf record /tmp/png_harness /tmp/img.raw 1024 1024 3 1 4 && perf annotate png_band_task_avx512
 *
 * Prints the best of repeated runs (10 encodes each) and the stream's size. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s IMAGE.raw WIDTH HEIGHT CHANNELS [THREADS] [SECONDS]\n", argv[0]);
        return 2;
    }
    const int64_t w = atoll(argv[2]), h = atoll(argv[3]), c = atoll(argv[4]);
    const int threads = argc > 5 ? atoi(argv[5]) : 0;
    const double secs = argc > 6 ? atof(argv[6]) : 2.0;
    const size_t n = (size_t)(w * h * c); /* (h, w, c) uint8 */
    uint8_t *px = malloc(n);
    FILE *f = fopen(argv[1], "rb");
    if (!px || !f || fread(px, 1, n, f) != n) {
        fprintf(stderr, "cannot read %zu bytes from %s\n", n, argv[1]);
        return 1;
    }
    fclose(f);
    eng_error err;
    eng_runtime *rt = NULL;
    eng_runtime_params p = eng_runtime_params_default();
    p.n_threads = threads;
    if (eng_runtime_create(&p, &rt, &err) != ENG_OK) {
        fprintf(stderr, "runtime: %s\n", err.message);
        return 1;
    }
    const size_t cap = eng_png_zlib_bound(h, w * c);
    uint8_t *out = malloc(cap);
    size_t len = 0;
    double best = 1e9;
    for (const double end = now_s() + secs; now_s() < end;) {
        const double t0 = now_s();
        for (int k = 0; k < 10; k++)
            if (eng_png_zlib(rt, px, h, w * c, (int)c, out, cap, &len, &err) != ENG_OK) {
                fprintf(stderr, "png_zlib: %s\n", err.message);
                return 1;
            }
        const double dt = (now_s() - t0) / 10;
        best = dt < best ? dt : best;
    }
    printf("%lldx%lldx%lld, %s on %d threads: best %.3f ms, %zu bytes (%.4f of raw)\n",
           (long long)w, (long long)h, (long long)c, eng_isa_name(eng_runtime_isa(rt)),
           eng_runtime_threads(rt), best * 1e3, len, (double)len / (double)n);
    eng_runtime_free(rt);
    free(out);
    free(px);
    return 0;
}
