/* png_internal.h - what png.c (the API: sizes, bands, the pool) and png_band.h (one band's
 * coding, compiled once per ISA) share: the constants, the band and job records, the sizes. */
#ifndef ENG_PNG_INTERNAL_H
#define ENG_PNG_INTERNAL_H

#include <string.h>

#include "runtime.h"

#define BAND_BYTES (64 * 1024) /* filtered bytes per band: one pool task, one deflate block */
#define STORED_MAX 65535       /* bytes per stored block */
#define MIN_MATCH 3
#define MAX_MATCH 258
#define N_LITLEN 286 /* 0..255 literals, 256 end of block, 257..285 lengths */
#define END_BLOCK 256
#define N_DIST 30
#define N_CLEN 19 /* the code-length alphabet */
#define MAX_BITS 15
#define MAX_LIT_BITS 13 /* literal/length codes: four literals (52 bits) go in one put */
#define MAX_CLEN_BITS 7
#define PAD 8 /* bytes readable after the filtered rows (8-byte loads) and writable after a
               * band's output (the bit writer stores 8 bytes at a time) */
#define SEG_BYTES 4096 /* bytes the writer codes between size checks; the unit of the sample */
#define SAMPLE_EVERY 4 /* of the band's segments, the 1st, the (1 + SAMPLE_EVERY)th, ... */
/* the most a dynamic header takes: 3 + 14 bits, 3 per code-length code, and every litlen and
 * dist length as a code-length code of up to 7 bits plus up to 7 extra bits */
#define HEADER_MAX ((17 + 3 * N_CLEN + (N_LITLEN + N_DIST) * (MAX_CLEN_BITS + 7) + 7) / 8)
/* what a coded band may write past its stored size before the writer's next size check:
 * the header, one segment at MAX_BITS a byte, the match that ends past the segment, end of
 * block and sync flush */
#define OVERSHOOT (HEADER_MAX + SEG_BYTES * MAX_BITS / 8 + 16)
#define ADLER_MOD 65521u
#define ADLER_NMAX 5552 /* bytes summed before the sums must be reduced (zlib's NMAX) */
#define FILTER_UP 2
#define MAX_ROW_BYTES ((int64_t)1 << 24)
#define MAX_TOTAL ((int64_t)1 << 40) /* filtered bytes of one image */

typedef struct png_band {
    int64_t row0, rows; /* the image rows of this band */
    uint8_t *f;         /* (rows, 1 + row_bytes) filtered rows, then PAD readable bytes */
    int64_t n;          /* filtered bytes: rows * (1 + row_bytes) */
    uint8_t *out;       /* this band's deflate bytes: at most band_bound(n) */
    size_t out_len;
    uint32_t adler; /* Adler-32 of f[0, n) */
} png_band;

typedef struct png_job {
    const uint8_t *px; /* (h, row_bytes) image rows */
    int64_t h, row_bytes;
    int bpp; /* bytes per pixel: the Up filter's partner byte is row_bytes back, the only match
              * distance is bpp */
    int64_t n_bands;
    png_band *bands;
} png_job;

/* ---- sizes ---------------------------------------------------------------------------- */

static inline int64_t rows_per_band(int64_t h, int64_t row_bytes) {
    const int64_t total = h * (1 + row_bytes);
    const int64_t n_bands = (total + BAND_BYTES - 1) / BAND_BYTES;
    return (h + n_bands - 1) / n_bands;
}

static inline size_t stored_blocks(int64_t n) {
    return n ? (size_t)((n + STORED_MAX - 1) / STORED_MAX) : 1;
}

/* The stored form of a band of n filtered bytes. */
static inline size_t stored_size(int64_t n) { return (size_t)n + 5 * stored_blocks(n); }

/* The room a band of n filtered bytes writes in: its stored form (a Huffman-coded band is only
 * kept when it is smaller), what the coder may overshoot that before it finds out, and the
 * bit writer's slack. */
static inline size_t band_bound(int64_t n) { return stored_size(n) + OVERSHOOT + PAD; }

/* One band: filter, Adler-32, code (pool task `task` of a png_job). The same C (png_band.h)
 * compiled for each ISA: png_band_scalar.c is the specification, the others must write the
 * same bytes (tests/c/test_png.c compares them). */
void png_band_task_scalar(void *ctx, int64_t task, int thread);
#if defined(__x86_64__) || defined(_M_X64)
void png_band_task_avx2(void *ctx, int64_t task, int thread);   /* + BMI2 */
void png_band_task_avx512(void *ctx, int64_t task, int thread); /* + BMI2 */
#endif

#endif
