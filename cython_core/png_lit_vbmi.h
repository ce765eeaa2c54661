/* png_lit_vbmi.h - 64 literals at a time with AVX-512 VBMI, for png_band.h's writer (included
 * by it, after the bit writer and dyn_code, where the including file defines PNG_LIT64:
 * png_band_avx512.c; no include guard: one inclusion per file).
 *
 * The scalar writer spends about 9 instructions a byte on literals (two table loads, shifts
 * and adds, then a put of four codes). Here the codes and lengths of 64 bytes are looked up
 * with byte permutes (vpermi2b: 256-entry tables as four registers each), the codes of
 * neighbours are merged in registers (16-bit codes -> 2 in 32-bit lanes -> 4 in 64-bit lanes,
 * at most 4 * MAX_LIT_BITS = 52 bits), and the 16 groups of four are put in stream order: the
 * same bits as put_literals4 writes, with 16 puts and no table loads (the scalar path: 16 puts
 * and 128 table loads). The writer takes this path for 64 literals in a row, which is most of
 * an image (bench_png.py's photograph-like one: 88% of the aligned 64-byte blocks have no
 * match start; the demo model's: over 99%). */

#include <immintrin.h>

/* A band's literal code as byte tables: low and high byte of each literal's code, its length. */
typedef struct lit_lut {
    __m512i lo[4], hi[4], len[4]; /* (256,) each, as four 64-entry registers */
} lit_lut;

static void lit_lut_make(lit_lut *t, const dyn_code *c) {
    _Alignas(64) uint8_t lo[256], hi[256], len[256];
    for (int s = 0; s < 256; s++) {
        lo[s] = (uint8_t)c->code[s];
        hi[s] = (uint8_t)(c->code[s] >> 8);
        len[s] = c->len[s];
    }
    for (int k = 0; k < 4; k++) {
        t->lo[k] = _mm512_load_si512(lo + 64 * k);
        t->hi[k] = _mm512_load_si512(hi + 64 * k);
        t->len[k] = _mm512_load_si512(len + 64 * k);
    }
}

/* t[x] for each byte x of v: entries 0..127 from t[0..1], 128..255 from t[2..3], picked by
 * the byte's top bit. */
static inline __m512i lut256(const __m512i t[4], __m512i v) {
    const __m512i a = _mm512_permutex2var_epi8(t[0], v, t[1]);
    const __m512i b = _mm512_permutex2var_epi8(t[2], v, t[3]);
    return _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), a, b);
}

/* Neighbouring codes merged pairwise into lanes of twice the width (16-bit lanes into 32-bit
 * ones, then 32 into 64), the earlier (low) lane's code first: code = lo | hi << len(lo),
 * len = len(lo) + len(hi). */
static inline void merge_pairs32(__m512i *code, __m512i *len) {
    const __m512i m = _mm512_set1_epi32(0xFFFF);
    const __m512i l0 = _mm512_and_si512(*len, m);
    *code = _mm512_or_si512(_mm512_and_si512(*code, m),
                            _mm512_sllv_epi32(_mm512_srli_epi32(*code, 16), l0));
    *len = _mm512_add_epi32(l0, _mm512_srli_epi32(*len, 16));
}

static inline void merge_pairs64(__m512i *code, __m512i *len) {
    const __m512i m = _mm512_set1_epi64(0xFFFFFFFF);
    const __m512i l0 = _mm512_and_si512(*len, m);
    *code = _mm512_or_si512(_mm512_and_si512(*code, m),
                            _mm512_sllv_epi64(_mm512_srli_epi64(*code, 32), l0));
    *len = _mm512_add_epi64(l0, _mm512_srli_epi64(*len, 32));
}

/* The codes of the 64 literals p[0, 64), in order. */
static inline void put_literals64(bit_writer *w, const lit_lut *t, const uint8_t *p) {
    const __m512i v = _mm512_loadu_si512(p);
    const __m512i lo = lut256(t->lo, v), hi = lut256(t->hi, v), ln = lut256(t->len, v);
    const __m512i zero = _mm512_setzero_si512();
    /* unpack works within 128-bit lanes: 16-bit lane 8q + j of half 0 is byte 16q + j, of
     * half 1 byte 16q + 8 + j (q < 4, j < 8) */
    __m512i code[2] = {_mm512_unpacklo_epi8(lo, hi), _mm512_unpackhi_epi8(lo, hi)};
    __m512i len[2] = {_mm512_unpacklo_epi8(ln, zero), _mm512_unpackhi_epi8(ln, zero)};
    _Alignas(64) uint64_t bits[2][8], nb[2][8]; /* 64-bit lane k of half h: 4 bytes from
                                                  * 16 (k / 2) + 8 h + 4 (k % 2) */
    for (int h = 0; h < 2; h++) {
        merge_pairs32(&code[h], &len[h]);
        merge_pairs64(&code[h], &len[h]);
        _mm512_store_si512(bits[h], code[h]);
        _mm512_store_si512(nb[h], len[h]);
    }
    for (int q = 0; q < 4; q++) /* bytes 16q .. 16q + 15 */
        for (int h = 0; h < 2; h++) {
            put_bits(w, bits[h][2 * q], (int)nb[h][2 * q]);
            put_bits(w, bits[h][2 * q + 1], (int)nb[h][2 * q + 1]);
        }
}

/* No match starts among the 64 map entries ms[0, 64). */
static inline bool no_starts64(const uint8_t *ms) {
    const __m512i m = _mm512_loadu_si512(ms);
    return !_mm512_test_epi8_mask(m, m);
}
