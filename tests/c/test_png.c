/* test_png.c - the PNG image-data encoder (png.c) under the sanitizers: every kind of content
 * and shape, one and two threads, every ISA's band coder. Here: memory safety, the size bound,
 * the zlib framing, the Adler-32 trailer against a plain reference over the Up-filtered rows,
 * the same bytes on any thread count and ISA as the scalar coder, and the argument errors.
 * That the stream inflates to those rows is tested in Python against zlib
 * (tests/test_png_zlib.py). */

#include "test_util.h"

/* The Up-filtered rows' Adler-32, byte by byte (the definition). */
static uint32_t ref_adler(const uint8_t *px, int64_t h, int64_t rb) {
    uint32_t a = 1, b = 0;
    for (int64_t y = 0; y < h; y++)
        for (int64_t i = -1; i < rb; i++) {
            uint8_t v = 2; /* the row's filter type, then each byte minus the one above */
            if (i >= 0) v = (uint8_t)(px[y * rb + i] - (y ? px[(y - 1) * rb + i] : 0));
            a = (a + v) % 65521;
            b = (b + a) % 65521;
        }
    return a | b << 16;
}

static void fill(test_rng *r, uint8_t *px, int64_t n, int kind) {
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case 0: px[i] = (uint8_t)test_next(r); break;                 /* noise: stored     */
        case 1: px[i] = 77; break;                                     /* flat: long runs   */
        case 2: px[i] = (uint8_t)(i / 7 % 4 * 60); break;              /* runs of 7         */
        case 3: px[i] = (uint8_t)(i % 251 + (test_next(r) & 3)); break; /* smooth-ish     */
        case 4: px[i] = (uint8_t)(test_next(r) & 31); break; /* coded, long literal runs */
        default: /* literal runs of every length between flat spans (matches) */
            px[i] = (i / 97 + i / 61) % 3 == 0 ? 77 : (uint8_t)(test_next(r) & 31);
            break;
        }
    }
}

/* The runtimes every case runs on: the scalar band coder on 1 and 2 threads (the
 * specification), then each other supported ISA's on 2 threads; all must write the same bytes. */
#define MAX_RT 6
static int make_runtimes(eng_runtime **rt) {
    static const eng_isa isas[] = {ENG_ISA_SCALAR, ENG_ISA_SCALAR, ENG_ISA_AVX2, ENG_ISA_AVX512,
                                   ENG_ISA_NEON};
    eng_error err;
    int n = 0;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (!eng_isa_supported(isas[i])) continue;
        eng_runtime_params p = eng_runtime_params_default();
        p.isa = isas[i];
        p.n_threads = i == 0 ? 1 : 2;
        CHECK(eng_runtime_create(&p, &rt[n], &err) == ENG_OK, "%s", err.message);
        n++;
    }
    return n;
}

static void free_runtimes(eng_runtime **rt, int n) {
    for (int i = 0; i < n; i++) eng_runtime_free(rt[i]);
}

static void test_encode(void) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {1, 1, 3}, {2, 3, 4}, {7, 5, 3}, {3, 9, 2},
                                        {256, 256, 3}, {90, 1000, 4}, {1, 70000, 1},
                                        {3000, 1, 1}, {129, 257, 3}};
    eng_runtime *rt[MAX_RT];
    const int n_rt = make_runtimes(rt);
    eng_runtime *rt1 = rt[0];
    eng_error err;
    test_rng r = {0x1234};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int kind = 0; kind < 6; kind++) {
            const int64_t h = shapes[s][0], w = shapes[s][1], c = shapes[s][2], rb = w * c;
            uint8_t *px = malloc((size_t)(h * rb)); /* (h, w, c) */
            fill(&r, px, h * rb, kind);
            const size_t bound = eng_png_zlib_bound(h, rb);
            uint8_t *o1 = malloc(bound), *o2 = malloc(bound);
            size_t n1 = 0, n2 = 0;
            eng_err_clear(&err);
            CHECK(eng_png_zlib(rt1, px, h, rb, (int)c, o1, bound, &n1, &err) == ENG_OK, "%s",
                  err.message);
            for (int k = 1; k < n_rt; k++) {
                CHECK(eng_png_zlib(rt[k], px, h, rb, (int)c, o2, bound, &n2, &err) == ENG_OK,
                      "%s", err.message);
                CHECK(n1 == n2 && !memcmp(o1, o2, n1), "%lldx%lldx%lld kind %d: %s on %d "
                      "threads changes bytes", (long long)h, (long long)w, (long long)c, kind,
                      eng_isa_name(eng_runtime_isa(rt[k])), eng_runtime_threads(rt[k]));
            }
            CHECK(n1 >= 6 && n1 <= bound && o1[0] == 0x78 && o1[1] == 0x01, "framing");
            const uint32_t want = ref_adler(px, h, rb);
            const uint32_t got = (uint32_t)o1[n1 - 4] << 24 | (uint32_t)o1[n1 - 3] << 16 |
                                 (uint32_t)o1[n1 - 2] << 8 | o1[n1 - 1];
            CHECK(got == want, "%lldx%lldx%lld kind %d: adler %08x, want %08x", (long long)h,
                  (long long)w, (long long)c, kind, got, want);
            if (kind == 1 && rb >= 64) /* runs: a few bits per 258 bytes */
                CHECK(n1 < (size_t)(h * rb) / 20 + 64, "flat image: %zu bytes", n1);
            if (kind == 4 && h * rb >= 4096) /* 6 bits of entropy a byte: coded, not stored */
                CHECK(n1 < (size_t)(h * rb) * 7 / 8, "5-bit noise: %zu of %lld bytes", n1,
                      (long long)(h * rb));
            free(px);
            free(o1);
            free(o2);
        }
    uint8_t px[12] = {0}, out[256];
    size_t n = 0;
    CHECK(eng_png_zlib(rt1, px, 2, 6, 4, out, sizeof out, &n, &err) == ENG_ERR_INVALID_ARG,
          "row not a whole number of pixels");
    CHECK(eng_png_zlib(rt1, px, 2, 6, 5, out, sizeof out, &n, &err) == ENG_ERR_INVALID_ARG,
          "bpp 5");
    CHECK(eng_png_zlib(rt1, px, 0, 6, 3, out, sizeof out, &n, &err) == ENG_ERR_INVALID_ARG,
          "h 0");
    CHECK(eng_png_zlib(rt1, px, 2, 6, 3, out, 10, &n, &err) == ENG_ERR_INVALID_ARG, "small out");
    CHECK(eng_png_zlib(NULL, px, 2, 6, 3, out, sizeof out, &n, &err) == ENG_ERR_INVALID_ARG,
          "NULL runtime");
    CHECK(eng_png_zlib_bound(1, (int64_t)1 << 25) == 0 &&
              eng_png_zlib_bound((int64_t)1 << 40, 3) == 0,
          "absurd sizes have no bound");
    free_runtimes(rt, n_rt);
}

/* The Huffman code is fitted to a sample of each band (every 4th 4096-byte segment of its
 * filtered rows: one row here, with grey rows of 4095 pixels), so the rest may not look like
 * the sample. The rows are made from the filtered bytes v they should have. Kind 0: v is
 * 0..127 in the sampled rows and 0..255 in the others, so bytes 128..255 get the longest codes
 * and the coded band outgrows its stored size: it must be rewritten stored, inside the bound
 * (one band when h = 16: ASan sees any write past it). Kind 1: noise in the sample and zeros
 * elsewhere (stored from the estimate). Kind 2: the sample has no long repeats and the rest is
 * runs of every length (the smoothed code must code lengths the sample never saw). */
static void test_sample_mismatch(void) {
    eng_runtime *rt[MAX_RT];
    const int n_rt = make_runtimes(rt);
    eng_runtime *rt1 = rt[0];
    eng_error err;
    test_rng r = {0x5678};
    const int64_t w = 4095;
    for (int64_t h = 16; h <= 64; h += 48)
        for (int kind = 0; kind < 3; kind++) {
            uint8_t *px = malloc((size_t)(h * w)); /* (h, w) grey */
            for (int64_t y = 0; y < h; y++) {
                const bool sampled = y % 4 == 0;
                const int64_t run = 1 + y * 7 % 300;
                for (int64_t x = 0; x < w; x++) {
                    const uint8_t noise = (uint8_t)test_next(&r);
                    uint8_t v = 0; /* the filtered byte */
                    if (kind == 0) v = sampled ? noise & 127 : noise;
                    if (kind == 1) v = sampled ? noise : 0;
                    if (kind == 2) v = sampled ? noise & 15 : (uint8_t)(x / run * 37);
                    px[y * w + x] = (uint8_t)((y ? px[(y - 1) * w + x] : 0) + v);
                }
            }
            const int64_t raw = h * (w + 1);
            const size_t bound = eng_png_zlib_bound(h, w);
            uint8_t *o1 = malloc(bound), *o2 = malloc(bound);
            size_t n1 = 0, n2 = 0;
            CHECK(eng_png_zlib(rt1, px, h, w, 1, o1, bound, &n1, &err) == ENG_OK, "%s",
                  err.message);
            for (int k = 1; k < n_rt; k++) {
                CHECK(eng_png_zlib(rt[k], px, h, w, 1, o2, bound, &n2, &err) == ENG_OK, "%s",
                      err.message);
                CHECK(n1 == n2 && !memcmp(o1, o2, n1), "h %lld kind %d: %s on %d threads "
                      "changes bytes", (long long)h, kind, eng_isa_name(eng_runtime_isa(rt[k])),
                      eng_runtime_threads(rt[k]));
            }
            const uint32_t want = ref_adler(px, h, w);
            const uint32_t got = (uint32_t)o1[n1 - 4] << 24 | (uint32_t)o1[n1 - 3] << 16 |
                                 (uint32_t)o1[n1 - 2] << 8 | o1[n1 - 1];
            CHECK(got == want, "h %lld kind %d: adler", (long long)h, kind);
            if (kind < 2)
                CHECK((int64_t)n1 >= raw && n1 <= bound, "h %lld kind %d: %zu bytes, stored is "
                      "%lld", (long long)h, kind, n1, (long long)raw);
            else
                CHECK((int64_t)n1 < raw / 2, "h %lld runs: %zu bytes of %lld", (long long)h, n1,
                      (long long)raw);
            free(px);
            free(o1);
            free(o2);
        }
    free_runtimes(rt, n_rt);
}

int main(void) {
    RUN(test_encode);
    RUN(test_sample_mismatch);
    return test_finish("test_png");
}
