/* png_band.h - one band of the PNG image-data encoder (png.c has the design): the Up filter,
 * Adler-32, the Huffman code fitted to the band's sample, the coded or stored block. Plain C
 * included by png_band_scalar.c, png_band_avx2.c and png_band_avx512.c, each compiled with its
 * ISA's flags (the compilers vectorise the byte loops, and BMI2's shifts speed up the bit
 * writer; with AVX-512 VBMI the writer codes runs of 64 literals in registers,
 * png_lit_vbmi.h); each defines PNG_BAND_TASK, the name of its band task. No include guard:
 * one inclusion per file. */
#include "png_internal.h"

#ifndef PNG_BAND_TASK
#error "define PNG_BAND_TASK before including png_band.h"
#endif

/* deflate's length symbols 257..285: the first length of each and its extra bits */
static const uint16_t LEN_BASE[29] = {3,  4,  5,  6,  7,  8,  9,  10,  11,  13,
                                      15, 17, 19, 23, 27, 31, 35, 43,  51,  59,
                                      67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t LEN_EXTRA[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint8_t CLEN_ORDER[N_CLEN] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                           11, 4,  12, 3, 13, 2, 14, 1, 15};
static const uint8_t CLEN_EXTRA[N_CLEN] = {[16] = 2, [17] = 3, [18] = 7}; /* repeat bits */

/* ---- checksums ------------------------------------------------------------------------ */

/* Adler-32 of p[0, n) continuing from adler. Over nb blocks of 32 bytes (byte i of block j),
 * a gains the bytes' sum and b gains 32 * nb * a plus each byte weighted by the bytes from it to
 * the end: 32 * (nb - 1 - j) + (32 - i). Per lane i: col[i] sums the lane's bytes and pre[i]
 * sums col[i] as it was before each block, so sum_j (nb - 1 - j) * byte(j, i) = pre[i] and the
 * weights 32 - i apply once, to col[i], at the end: two adds a byte, in 32 independent lanes
 * that compilers vectorise (paddd on SSE2, add on NEON). */
static uint32_t adler32(uint32_t adler, const uint8_t *p, int64_t n) {
    uint64_t a = adler & 0xFFFF, b = adler >> 16;
    while (n >= 32) {
        const int64_t nb = n / 32 < ADLER_NMAX / 32 ? n / 32 : ADLER_NMAX / 32;
        uint32_t col[32] = {0}, pre[32] = {0}; /* col <= 255 * 173, pre <= 173 * col */
        for (int64_t j = 0; j < nb; j++, p += 32)
            for (int i = 0; i < 32; i++) {
                pre[i] += col[i];
                col[i] += p[i];
            }
        uint64_t s1 = 0, s2 = 0, s3 = 0;
        for (int i = 0; i < 32; i++) {
            s1 += col[i];
            s2 += (uint64_t)(32 - i) * col[i];
            s3 += pre[i];
        }
        b = (b + (uint64_t)(32 * nb) * a + 32 * s3 + s2) % ADLER_MOD;
        a = (a + s1) % ADLER_MOD;
        n -= 32 * nb;
    }
    for (; n > 0; n--) { /* fewer than 32 bytes: b stays far below 2^32 */
        a += *p++;
        b += a;
    }
    return (uint32_t)(a % ADLER_MOD | (b % ADLER_MOD) << 16);
}

/* ---- Huffman codes -------------------------------------------------------------------- */

/* Ascending sort of keys (freq << 16 | symbol) by freq: LSD radix, 8 bits a pass, only as
 * many passes as the largest freq needs (branch-free, unlike a comparison sort whose every
 * comparison of random counts is a coin flip for the branch predictor). tmp has n entries. */
static void sort_keys(uint64_t *a, uint64_t *tmp, int n) {
    uint64_t max = 0;
    for (int i = 0; i < n; i++) max |= a[i];
    uint64_t *src = a, *dst = tmp;
    for (int shift = 16; shift < 64 && max >> shift; shift += 8) {
        int count[257] = {0};
        for (int i = 0; i < n; i++) count[1 + (src[i] >> shift & 0xFF)]++;
        for (int d = 0; d < 256; d++) count[d + 1] += count[d];
        for (int i = 0; i < n; i++) dst[count[src[i] >> shift & 0xFF]++] = src[i];
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, (size_t)n * sizeof *a);
}

/* Code lengths of a minimum-redundancy code, in place (Moffat and Katajainen): w[0, n) holds
 * ascending weights and receives the lengths (w[n - 1], the heaviest, gets the shortest). */
static void min_redundancy(uint32_t *w, int n) {
    int root = 0, leaf = 2;
    w[0] += w[1];
    for (int next = 1; next < n - 1; next++) {
        if (leaf >= n || w[root] < w[leaf]) {
            w[next] = w[root];
            w[root++] = (uint32_t)next;
        } else {
            w[next] = w[leaf++];
        }
        if (leaf >= n || (root < next && w[root] < w[leaf])) {
            w[next] += w[root];
            w[root++] = (uint32_t)next;
        } else {
            w[next] += w[leaf++];
        }
    }
    w[n - 2] = 0;
    for (int next = n - 3; next >= 0; next--) w[next] = w[w[next]] + 1;
    int avail = 1, used = 0, depth = 0, next = n - 1;
    root = n - 2;
    while (avail > 0) {
        while (root >= 0 && (int)w[root] == depth) {
            used++;
            root--;
        }
        while (avail > used) {
            w[next--] = (uint32_t)depth;
            avail--;
        }
        avail = 2 * used;
        depth++;
        used = 0;
    }
}

/* The low len (1..15) bits of code in reverse order: swap halves of ever larger groups in 16
 * bits, then drop the 16 - len bits that were below the code. */
static uint32_t reverse_bits(uint32_t code, int len) {
    uint32_t r = code;
    r = (r & 0x5555u) << 1 | (r >> 1 & 0x5555u);
    r = (r & 0x3333u) << 2 | (r >> 2 & 0x3333u);
    r = (r & 0x0F0Fu) << 4 | (r >> 4 & 0x0F0Fu);
    r = (r & 0x00FFu) << 8 | (r >> 8 & 0x00FFu);
    return r >> (16 - len);
}

/* freq[0, n) -> len[0, n) (at most limit bits, 0 for unused symbols) and code[0, n) (canonical,
 * bit-reversed for the LSB-first stream). At least two symbols get a code (a lone symbol is
 * paired with a spare one), so the code is always complete. n <= N_LITLEN. */
static void huffman(const uint32_t *freq, int n, int limit, uint8_t *len, uint16_t *code) {
    uint64_t keys[N_LITLEN], tmp[N_LITLEN];
    uint32_t w[N_LITLEN];
    int used = 0;
    for (int s = 0; s < n; s++)
        if (freq[s]) keys[used++] = (uint64_t)freq[s] << 16 | (uint64_t)s;
    for (int s = 0; used < 2; s++) /* spare symbols (weight 0) until there are two */
        if (!freq[s]) keys[used++] = (uint64_t)s;
    sort_keys(keys, tmp, used);
    for (int i = 0; i < used; i++) w[i] = (uint32_t)(keys[i] >> 16);
    min_redundancy(w, used);
    int count[N_LITLEN + 1] = {0}; /* symbols per length; lengths are < used */
    for (int i = 0; i < used; i++) count[w[i]]++;
    /* limit the lengths (as miniz does): fold the long ones into `limit`, then, while the
     * Kraft sum is over 1, move one code from `limit` to split the longest shorter code */
    for (int l = limit + 1; l <= N_LITLEN; l++) {
        count[limit] += count[l];
        count[l] = 0;
    }
    uint32_t kraft = 0;
    for (int l = limit; l > 0; l--) kraft += (uint32_t)count[l] << (limit - l);
    while (kraft > 1u << limit) {
        count[limit]--;
        for (int l = limit - 1; l > 0; l--)
            if (count[l]) {
                count[l]--;
                count[l + 1] += 2;
                break;
            }
        kraft--;
    }
    memset(len, 0, (size_t)n);
    for (int l = 1, i = used; l <= limit; l++) /* the heaviest symbols get the shortest codes */
        for (int k = count[l]; k > 0; k--) len[keys[--i] & 0xFFFF] = (uint8_t)l;
    uint32_t next[MAX_BITS + 2] = {0}, bl[MAX_BITS + 1] = {0};
    for (int s = 0; s < n; s++) bl[len[s]]++;
    bl[0] = 0;
    for (int l = 1; l <= limit; l++) next[l + 1] = (next[l] + bl[l]) << 1;
    for (int s = 0; s < n; s++)
        code[s] = len[s] ? (uint16_t)reverse_bits(next[len[s]]++, len[s]) : 0;
}

/* ---- the band's symbols --------------------------------------------------------------- */

static inline uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v); /* byte i of p in bits 8i .. 8i + 7, as on little-endian */
#endif
    return v;
}

/* Length of the repeat at f[i] of the bytes d before it: 0 when under MIN_MATCH, else at most
 * MAX_MATCH and n - i. Needs i >= d and PAD readable bytes after f[n - 1]. */
static inline int64_t match_len(const uint8_t *f, int64_t i, int64_t n, int d) {
    uint64_t x = load64(f + i) ^ load64(f + i - d);
    if (x & 0xFFFFFF) return 0;
    const int64_t max = n - i < MAX_MATCH ? n - i : MAX_MATCH;
    if (max < MIN_MATCH) return 0;
    int64_t m = 0;
    while (!x && m + 8 < max) {
        m += 8;
        x = load64(f + i + m) ^ load64(f + i + m - d);
    }
    m += x ? __builtin_ctzll(x) >> 3 : 8;
    return m < max ? m : max;
}

/* length (3..258) -> index of its length symbol (symbol 257 + index) */
static void length_symbols(uint8_t sym[MAX_MATCH + 1]) {
    for (int s = 0; s < 29; s++) {
        const int end = s == 28 ? MAX_MATCH : LEN_BASE[s + 1] - 1;
        for (int l = LEN_BASE[s]; l <= end; l++) sym[l] = (uint8_t)s;
    }
}

/* The match-start map of the segment f[a, e): ms[k] = 1 where a repeat of at least
 * MIN_MATCH bytes at distance d starts at f[a + k] and ends by f[n - 1], else 0; ms[e - a,
 * e - a + 8) = 0 (the parse reads the map 8 entries at a time). A plain byte loop that
 * compilers vectorise (16 or 32 positions an instruction): the parse then skips 8 literal
 * positions with one test. */
static void match_map(const uint8_t *f, int64_t a, int64_t e, int64_t n, int d, uint8_t *ms) {
    const int64_t len = e - a;
    int64_t k0 = a < d ? d - a : 0, k1 = (e < n - 2 ? e : n - 2) - a; /* 3 bytes end by n */
    k0 = k0 < len ? k0 : len;
    k1 = k1 > k0 ? k1 : k0;
    memset(ms, 0, (size_t)k0);
    const uint8_t *p = f + a;
    for (int64_t k = k0; k < k1; k++)
        ms[k] = (uint8_t)((p[k] == p[k - d]) & (p[k + 1] == p[k + 1 - d]) &
                          (p[k + 2] == p[k + 2 - d]));
    memset(ms + k1, 0, (size_t)(len - k1) + 8);
}

/* ---- bit writer ----------------------------------------------------------------------- */

typedef struct bit_writer {
    uint8_t *p;   /* the byte that holds the pending bits */
    uint64_t acc; /* pending bits (fewer than 8 between calls) */
    int n;
} bit_writer;

/* Appends the low nb (<= 56) bits of bits. Stores 8 bytes each time (PAD bytes of slack). */
static inline void put_bits(bit_writer *w, uint64_t bits, int nb) {
    w->acc |= bits << w->n;
    w->n += nb;
    const uint64_t le = w->acc;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    const uint64_t st = __builtin_bswap64(le);
    memcpy(w->p, &st, 8);
#else
    memcpy(w->p, &le, 8);
#endif
    w->p += w->n >> 3;
    w->acc >>= w->n & ~7;
    w->n &= 7;
}

static void align_byte(bit_writer *w) {
    if (w->n) w->p++; /* the partial byte is already stored, zero-padded */
    w->acc = 0;
    w->n = 0;
}

/* ---- one band ------------------------------------------------------------------------- */

typedef struct dyn_code {
    uint8_t len[N_LITLEN], dlen[N_DIST], clen_len[N_CLEN];
    uint16_t code[N_LITLEN], dcode[N_DIST], clen_code[N_CLEN];
    uint8_t rle[N_LITLEN + N_DIST], rle_extra[N_LITLEN + N_DIST]; /* code-length symbols */
    int n_rle, hlit, hdist, hclen;
} dyn_code;

/* The code lengths of litlen then dist as code-length symbols: 16 repeats the previous length
 * 3..6 times, 17 and 18 are runs of 3..10 and 11..138 zeros. */
static void rle_lengths(dyn_code *c, uint32_t cfreq[N_CLEN]) {
    uint8_t all[N_LITLEN + N_DIST];
    const int total = c->hlit + c->hdist;
    memcpy(all, c->len, (size_t)c->hlit);
    memcpy(all + c->hlit, c->dlen, (size_t)c->hdist);
    int k = 0;
    for (int i = 0; i < total;) {
        const uint8_t v = all[i];
        int run = 1;
        while (i + run < total && all[i + run] == v) run++;
        i += run;
        if (v == 0) {
            while (run >= 11) {
                const int r = run < 138 ? run : 138;
                c->rle[k] = 18, c->rle_extra[k++] = (uint8_t)(r - 11);
                run -= r;
            }
            if (run >= 3) {
                c->rle[k] = 17, c->rle_extra[k++] = (uint8_t)(run - 3);
                run = 0;
            }
        } else {
            c->rle[k] = v, c->rle_extra[k++] = 0;
            run--;
            while (run >= 3) {
                const int r = run < 6 ? run : 6;
                c->rle[k] = 16, c->rle_extra[k++] = (uint8_t)(r - 3);
                run -= r;
            }
        }
        for (; run > 0; run--) c->rle[k] = v, c->rle_extra[k++] = 0;
    }
    c->n_rle = k;
    for (int j = 0; j < k; j++) cfreq[c->rle[j]]++;
}

/* Builds the band's codes from the symbol weights lit and matches (the distance d's weight)
 * and returns the size of the block's header in bits. */
static uint64_t build_codes(dyn_code *c, const uint32_t lit[N_LITLEN], uint32_t matches, int d) {
    uint32_t dfreq[N_DIST] = {0}, cfreq[N_CLEN] = {0};
    dfreq[d - 1] = matches; /* distance d (1..4) is distance symbol d - 1, no extra bits */
    huffman(lit, N_LITLEN, MAX_LIT_BITS, c->len, c->code);
    huffman(dfreq, N_DIST, MAX_BITS, c->dlen, c->dcode);
    c->hlit = N_LITLEN;
    while (c->hlit > 257 && !c->len[c->hlit - 1]) c->hlit--;
    c->hdist = N_DIST;
    while (c->hdist > 1 && !c->dlen[c->hdist - 1]) c->hdist--;
    rle_lengths(c, cfreq);
    huffman(cfreq, N_CLEN, MAX_CLEN_BITS, c->clen_len, c->clen_code);
    c->hclen = N_CLEN;
    while (c->hclen > 4 && !c->clen_len[CLEN_ORDER[c->hclen - 1]]) c->hclen--;
    uint64_t bits = 3 + 5 + 5 + 4 + 3 * (uint64_t)c->hclen;
    for (int s = 0; s < N_CLEN; s++) bits += (uint64_t)cfreq[s] * (c->clen_len[s] + CLEN_EXTRA[s]);
    return bits;
}

/* The bits that the symbols counted in lit and matches take in code c (end of block included
 * when it is counted). */
static uint64_t data_bits(const dyn_code *c, const uint32_t lit[N_LITLEN], uint32_t matches,
                          int d) {
    uint64_t bits = (uint64_t)matches * c->dlen[d - 1];
    for (int s = 0; s < N_LITLEN; s++)
        bits += (uint64_t)lit[s] * (c->len[s] + (s > 256 ? LEN_EXTRA[s - 257] : 0));
    return bits;
}

static void write_header(bit_writer *w, const dyn_code *c, bool last) {
    put_bits(w, (last ? 1u : 0u) | 2u << 1, 3); /* BFINAL, BTYPE 10: dynamic Huffman */
    put_bits(w, (uint64_t)(c->hlit - 257) | (uint64_t)(c->hdist - 1) << 5 |
                    (uint64_t)(c->hclen - 4) << 10, 14);
    for (int k = 0; k < c->hclen; k++) put_bits(w, c->clen_len[CLEN_ORDER[k]], 3);
    for (int k = 0; k < c->n_rle; k++) {
        const int s = c->rle[k];
        put_bits(w, c->clen_code[s] | (uint64_t)c->rle_extra[k] << c->clen_len[s],
                 c->clen_len[s] + CLEN_EXTRA[s]);
    }
}

static inline void put_match(bit_writer *w, const dyn_code *c, int64_t m, int d,
                             const uint8_t *lsym) {
    const int s = lsym[m], ls = 257 + s, ln = c->len[ls], ex = LEN_EXTRA[s];
    put_bits(w,
             c->code[ls] | (uint64_t)(m - LEN_BASE[s]) << ln |
                 (uint64_t)c->dcode[d - 1] << (ln + ex),
             ln + ex + c->dlen[d - 1]);
}

/* Four literals in one put: at most 4 * MAX_LIT_BITS = 52 bits. */
static inline void put_literals4(bit_writer *w, const dyn_code *c, const uint8_t *p) {
    const int l0 = c->len[p[0]], l1 = c->len[p[1]], l2 = c->len[p[2]];
    put_bits(w,
             c->code[p[0]] | (uint64_t)c->code[p[1]] << l0 |
                 (uint64_t)c->code[p[2]] << (l0 + l1) |
                 (uint64_t)c->code[p[3]] << (l0 + l1 + l2),
             l0 + l1 + l2 + c->len[p[3]]);
}

#ifdef PNG_LIT64 /* defined by the including file, compiled with AVX-512 BW and VBMI */
#include "png_lit_vbmi.h"
#endif

/* ---- the band's parse, for both passes ------------------------------------------------ */

/* What a pass does with the parse: count the symbols (w == NULL: into t, lit and *matches) or
 * write them with the band's code (w, c). */
typedef struct sym_sink {
    uint32_t (*t)[256]; /* [4][256] literal counts: a run of equal bytes would otherwise wait
                         * on its own increments; summed at the end */
    uint32_t *lit, *matches;
    bit_writer *w;
    const dyn_code *c;
    const uint8_t *lsym;
    int d;
#ifdef PNG_LIT64
    const lit_lut *lut; /* the writer's code as byte tables */
#endif
} sym_sink;

/* inlined into each pass, so that the sink is a constant there */
#define PNG_INLINE static inline __attribute__((always_inline))

PNG_INLINE void sink_literal(const sym_sink *s, const uint8_t *f, int64_t i) {
    if (!s->w)
        s->t[i & 3][f[i]]++;
    else
        put_bits(s->w, s->c->code[f[i]], s->c->len[f[i]]);
}

PNG_INLINE void sink_literals8(const sym_sink *s, const uint8_t *p) {
    if (!s->w) {
        s->t[0][p[0]]++, s->t[1][p[1]]++, s->t[2][p[2]]++, s->t[3][p[3]]++;
        s->t[0][p[4]]++, s->t[1][p[5]]++, s->t[2][p[6]]++, s->t[3][p[7]]++;
    } else {
        put_literals4(s->w, s->c, p);
        put_literals4(s->w, s->c, p + 4);
    }
}

PNG_INLINE void sink_match(const sym_sink *s, int64_t m) {
    if (!s->w) {
        s->lit[257 + s->lsym[m]]++;
        (*s->matches)++;
    } else {
        put_match(s->w, s->c, m, s->d, s->lsym);
    }
}

/* The symbols of the segment f[a, e) from f[i] on (i >= a: a match of the previous segment
 * may reach into this one), as literals and pixel-repeat matches in stream order; matches end
 * by f[n - 1] and may carry past f[e - 1]. Returns where the parse stopped (>= e). Needs PAD
 * readable bytes after f[n - 1]; ms has room for e - a + 8 entries. */
PNG_INLINE int64_t parse_segment(const sym_sink *s, const uint8_t *f, int64_t i, int64_t a,
                                 int64_t e, int64_t n, uint8_t *ms) {
    if (i >= e) return i;
    match_map(f, a, e, n, s->d, ms);
    while (i < e) {
        const uint64_t starts = load64(ms + (i - a)); /* byte k: a match starts at f[i + k] */
        if (!starts && i + 8 <= e) {
#ifdef PNG_LIT64
            if (s->w && i + 64 <= e && no_starts64(ms + (i - a))) {
                put_literals64(s->w, s->lut, f + i);
                i += 64;
                continue;
            }
#endif
            sink_literals8(s, f + i);
            i += 8;
            continue;
        }
        const int64_t k = starts ? i + (__builtin_ctzll(starts) >> 3) : e;
        for (const int64_t k_end = k < e ? k : e; i < k_end; i++) sink_literal(s, f, i);
        if (i < e) { /* a match starts at i */
            const int64_t m = match_len(f, i, n, s->d);
            sink_match(s, m);
            i += m;
        }
    }
    return i;
}

/* The symbol counts of the band's sample (its segments 0, SAMPLE_EVERY, 2 * SAMPLE_EVERY, ...,
 * each parsed on its own): literals and lengths in lit, matches in *matches. Returns the bytes
 * sampled (n when the band is one segment: the counts are then exact). */
static int64_t count_sample(const uint8_t *f, int64_t n, int d, const uint8_t *lsym,
                            uint32_t lit[N_LITLEN], uint32_t *matches) {
    uint32_t t[4][256] = {{0}};
    const sym_sink s = {.t = t, .lit = lit, .matches = matches, .lsym = lsym, .d = d};
    uint8_t ms[SEG_BYTES + 8];
    int64_t sampled = 0;
    for (int64_t i = 0; i < n; i += SAMPLE_EVERY * SEG_BYTES) {
        const int64_t end = n - i < SEG_BYTES ? n : i + SEG_BYTES;
        parse_segment(&s, f, i, i, end, end, ms);
        sampled += end - i;
    }
    for (int b = 0; b < 256; b++) lit[b] += t[0][b] + t[1][b] + t[2][b] + t[3][b];
    return sampled;
}

/* The band's symbols as the dynamic block's data, then end of block, a segment at a time;
 * false (and the written bits are garbage) as soon as more than `room` bytes are written. */
static bool write_symbols(bit_writer *w, const dyn_code *c, const uint8_t *f, int64_t n, int d,
                          const uint8_t *lsym, const uint8_t *out, size_t room) {
    sym_sink s = {.w = w, .c = c, .lsym = lsym, .d = d};
#ifdef PNG_LIT64
    lit_lut lut;
    lit_lut_make(&lut, c);
    s.lut = &lut;
#endif
    uint8_t ms[SEG_BYTES + 8];
    for (int64_t a = 0, i = 0; a < n; a += SEG_BYTES) {
        i = parse_segment(&s, f, i, a, n - a < SEG_BYTES ? n : a + SEG_BYTES, n, ms);
        if ((size_t)(w->p - out) > room) return false;
    }
    put_bits(w, c->code[END_BLOCK], c->len[END_BLOCK]);
    return true;
}

static uint8_t *write_stored(uint8_t *p, const uint8_t *f, int64_t n, bool last) {
    int64_t i = 0;
    do {
        const int64_t k = n - i < STORED_MAX ? n - i : STORED_MAX;
        *p++ = last && i + k == n ? 1 : 0; /* BFINAL, BTYPE 00: stored; the rest of the byte pads */
        p[0] = (uint8_t)k, p[1] = (uint8_t)(k >> 8);
        p[2] = (uint8_t)~k, p[3] = (uint8_t)(~k >> 8);
        memcpy(p + 4, f + i, (size_t)k);
        p += 4 + k;
        i += k;
    } while (i < n);
    return p;
}

static void filter_band(const png_job *j, png_band *b) {
    const int64_t rb = j->row_bytes;
    for (int64_t r = 0; r < b->rows; r++) {
        const int64_t y = b->row0 + r;
        const uint8_t *row = j->px + y * rb;
        uint8_t *o = b->f + r * (1 + rb); /* (1 + rb): the filter type, then the row */
        o[0] = FILTER_UP;
        if (y == 0) {
            memcpy(o + 1, row, (size_t)rb);
        } else {
            const uint8_t *above = row - rb;
            for (int64_t i = 0; i < rb; i++) o[1 + i] = (uint8_t)(row[i] - above[i]);
        }
    }
    memset(b->f + b->n, 0, PAD);
}

void PNG_BAND_TASK(void *ctx, int64_t task, int thread) {
    (void)thread;
    const png_job *j = ctx;
    png_band *b = &j->bands[task];
    const bool last = task == j->n_bands - 1;
    filter_band(j, b);
    b->adler = adler32(1, b->f, b->n);

    uint8_t lsym[MAX_MATCH + 1];
    uint32_t lit[N_LITLEN] = {0}, matches = 0;
    length_symbols(lsym);
    const int64_t sampled = count_sample(b->f, b->n, j->bpp, lsym, lit, &matches);
    uint32_t weight[N_LITLEN]; /* the code's weights: the counts, smoothed when sampled */
    const uint32_t smooth = sampled < b->n ? 1 : 0;
    for (int s = 0; s < N_LITLEN; s++) weight[s] = lit[s] + smooth;
    weight[END_BLOCK] = 1;
    dyn_code c;
    const uint64_t head = build_codes(&c, weight, matches + smooth, j->bpp);
    /* the sample's bits scaled to the band (exact when the sample is the band) */
    const uint64_t bits = head + c.len[END_BLOCK] +
                          data_bits(&c, lit, matches, j->bpp) * (uint64_t)b->n / (uint64_t)sampled;
    const size_t stored = stored_size(b->n);
    bit_writer w = {.p = b->out};
    if ((bits + 7) / 8 < stored) {
        write_header(&w, &c, last);
        if (write_symbols(&w, &c, b->f, b->n, j->bpp, lsym, b->out, stored)) {
            if (!last) {
                put_bits(&w, 0, 3); /* sync flush: an empty stored block ends the band on a byte */
                align_byte(&w);
                memcpy(w.p, "\x00\x00\xff\xff", 4);
                w.p += 4;
            } else {
                align_byte(&w);
            }
            b->out_len = (size_t)(w.p - b->out);
            if (b->out_len < stored + (last ? 0 : 5)) return;
        }
    }
    b->out_len = (size_t)(write_stored(b->out, b->f, b->n, last) - b->out);
}
