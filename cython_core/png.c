/* png.c - the image data of a PNG (the zlib stream its IDAT chunks carry) from 8-bit pixels.
 *
 * The server's final images are PNGs of whatever the model made, encoded while the client
 * waits, so the encoder is built for speed the way the fast PNG encoders are (fpnge, fpng):
 *   - one fixed filter for every row, Up (each byte minus the byte above it; the first row
 *     minus zeros), which turns vertical smoothness and flat areas into runs of small values;
 *   - no hash-table LZ77: the only matches are repeats of the previous pixel (distance = bytes
 *     per pixel, lengths 3..258), which take flat areas and solid colours down to a few bits
 *     per run, then one dynamic Huffman code per band;
 *   - the code is fitted to a sample of the band (one SEG_BYTES segment in SAMPLE_EVERY, as
 *     fpnge fits its code to a sample of the rows; a band of one segment is counted whole):
 *     symbols are then found once, while writing, instead of once to count and once to write;
 *     every symbol keeps a code (the sampled counts are smoothed by one), so the code is
 *     complete for any content outside the sample;
 *   - a band whose Huffman coding is not expected to be smaller than its bytes (noise) is
 *     stored as is, exactly as zlib falls back to stored blocks; a band whose unsampled part
 *     codes worse than expected is rewritten stored as soon as its coded bytes pass the stored
 *     size (checked after every segment), so no band is ever larger than stored;
 *   - the rows are cut into bands of about BAND_BYTES that the runtime's pool codes in
 *     parallel, each band ending on a byte boundary (an empty stored block, as zlib's sync
 *     flush and pigz do), so that the bands concatenate into one deflate stream; each band
 *     also sums its Adler-32, and the sums are combined in order.
 * The output is a standard zlib stream (RFC 1950/1951) any inflater reads; the tests inflate
 * it with zlib and decode the whole PNG with Pillow. On photographs it is about the size of
 * zlib level 1 after the same filter; on noise it is the raw bytes plus 5 bytes per 64 KiB.
 * Everything is plain C on little- or big-endian machines. png.c holds the API and runs the
 * bands on the pool; png_band.h codes one band and is compiled once per ISA
 * (png_band_scalar.c, the specification, and on x86-64 png_band_avx2.c / png_band_avx512.c
 * with BMI2: the same C, vectorised wider by the compiler, 8-12% faster; the AVX-512 one, with
 * VBMI, also codes runs of 64 literals in registers, png_lit_vbmi.h, another 8-14%); the
 * runtime's ISA picks one, and every one writes the same bytes (tests/c/test_png.c). */

#include "png_internal.h"

size_t eng_png_zlib_bound(int64_t h, int64_t row_bytes) {
    /* rows up to 16 MiB keep every band's symbol counts far inside uint32 */
    if (h < 1 || row_bytes < 1 || row_bytes > MAX_ROW_BYTES || h > MAX_TOTAL / (1 + row_bytes))
        return 0;
    const int64_t rpb = rows_per_band(h, row_bytes);
    size_t total = 2 + 4; /* zlib header, Adler-32 */
    for (int64_t r = 0; r < h; r += rpb) {
        const int64_t rows = h - r < rpb ? h - r : rpb;
        total += band_bound(rows * (1 + row_bytes));
    }
    return total;
}

/* Adler-32 of A + B from adler32(A), adler32(B) and len(B) (zlib's adler32_combine). */
static uint32_t adler32_combine(uint32_t a1, uint32_t a2, int64_t len2) {
    const uint32_t rem = (uint32_t)(len2 % ADLER_MOD);
    uint32_t sum1 = a1 & 0xFFFF;
    uint32_t sum2 = (uint32_t)((uint64_t)rem * sum1 % ADLER_MOD);
    sum1 = (sum1 + (a2 & 0xFFFF) + ADLER_MOD - 1) % ADLER_MOD;
    sum2 = (sum2 + (a1 >> 16) + (a2 >> 16) + ADLER_MOD - rem) % ADLER_MOD;
    return sum1 | sum2 << 16;
}

/* The band coder for the runtime's ISA (BMI2 comes with every AVX2 CPU but is checked too;
 * the AVX-512 coder's literal path also needs VBMI's byte permutes: Ice Lake, Zen 4 and later,
 * the AVX2 coder otherwise). */
static eng_task_fn band_task_for(const eng_runtime *rt) {
#if defined(__x86_64__) || defined(_M_X64)
    const eng_isa isa = eng_runtime_isa(rt);
    if ((isa == ENG_ISA_AVX2 || isa == ENG_ISA_AVX512) && __builtin_cpu_supports("bmi2"))
        return isa == ENG_ISA_AVX512 && __builtin_cpu_supports("avx512vbmi")
                   ? png_band_task_avx512
                   : png_band_task_avx2;
#endif
    (void)rt;
    return png_band_task_scalar;
}

eng_status eng_png_zlib(eng_runtime *rt, const uint8_t *px, int64_t h, int64_t row_bytes,
                        int bpp, uint8_t *out, size_t out_cap, size_t *out_len, eng_error *err) {
    if (!rt || !px || !out || !out_len)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "png_zlib: runtime, pixels, out and out_len "
                                                     "are required");
    if (bpp < 1 || bpp > 4 || row_bytes < 1 || row_bytes % bpp)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "png_zlib: %lld bytes per row is not a whole number of %d-byte pixels "
                           "(1..4 bytes per pixel)", (long long)row_bytes, bpp);
    const size_t bound = eng_png_zlib_bound(h, row_bytes);
    if (!bound)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "png_zlib: %lld rows of %lld bytes is out of range", (long long)h,
                           (long long)row_bytes);
    if (out_cap < bound)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "png_zlib: out has %zu bytes, needs %zu",
                           out_cap, bound);
    const int64_t rpb = rows_per_band(h, row_bytes);
    const int64_t n_bands = (h + rpb - 1) / rpb;
    const size_t band_bytes =
        ((size_t)n_bands * sizeof(png_band) + ENG_ALIGN - 1) / ENG_ALIGN * ENG_ALIGN;
    size_t ws_bytes = band_bytes; /* the bands, then every band's filtered rows, each + PAD */
    for (int64_t r = 0; r < h; r += rpb)
        ws_bytes += (size_t)((h - r < rpb ? h - r : rpb) * (1 + row_bytes)) + PAD;
    /* the runtime's kept workspace (under its lock): no fresh pages per image */
    pthread_mutex_lock(&rt->lock);
    unsigned char *ws = eng_runtime_workspace(rt, ENG_WS_ACTIVATIONS, ws_bytes, "png_zlib", err);
    if (!ws) {
        pthread_mutex_unlock(&rt->lock);
        return ENG_ERR_OOM;
    }
    png_band *bands = (png_band *)ws;
    size_t foff = band_bytes, ooff = 2; /* each band writes at its worst-case offset in out */
    for (int64_t k = 0; k < n_bands; k++) {
        png_band *b = &bands[k];
        b->row0 = k * rpb;
        b->rows = h - b->row0 < rpb ? h - b->row0 : rpb;
        b->n = b->rows * (1 + row_bytes);
        b->f = ws + foff;
        b->out = out + ooff;
        foff += (size_t)b->n + PAD;
        ooff += band_bound(b->n);
    }
    png_job j = {.px = px, .h = h, .row_bytes = row_bytes, .bpp = bpp, .n_bands = n_bands,
                 .bands = bands};
    eng_cpu_clear_upper(); /* baseline-SSE code on this thread: see internal.h */
    eng_pool_run(rt->pool, n_bands, band_task_for(rt), &j);

    out[0] = 0x78, out[1] = 0x01; /* zlib header: deflate, 32 KiB window, fastest level */
    size_t pos = 2;
    uint32_t adler = 1;
    for (int64_t k = 0; k < n_bands; k++) { /* close the gaps: bands only move down */
        memmove(out + pos, bands[k].out, bands[k].out_len);
        pos += bands[k].out_len;
        adler = adler32_combine(adler, bands[k].adler, bands[k].n);
    }
    pthread_mutex_unlock(&rt->lock);
    for (int s = 3; s >= 0; s--) out[pos++] = (uint8_t)(adler >> (8 * s)); /* big-endian */
    *out_len = pos;
    return ENG_OK;
}
