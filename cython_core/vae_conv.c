/* vae_conv.c - the convolution driver and the channel-wise ops of the VAE decoder (vae.h).
 *
 * Convolution as an implicit GEMM on CHW data, on the runtime's micro-kernel (kernels.h):
 *
 *   Y (cout, P) = Wp (cout, K) . im2col(X) (K, P) + b,   K = cin*ks*ks,  P = ho*wo pixels
 *
 * A = the weight, packed ONCE at load into the micro-kernel's MR-row panels (vae_conv_pack), so
 *     a decode never repacks or converts weights.
 * B = im2col(X), packed per (K block, NR pixels) panel straight from the CHW planes: for each k
 *     a row of NR consecutive output pixels reads a contiguous run of one input row (io->up:
 *     of a nearest-2x upsampled row that is never materialised; the reference for vae_upconv,
 *     which the decoder uses instead). The output window may sit at an offset inside the input
 *     window (tiled decoding drops one pixel per side and conv where a tile is not at the image
 *     border; see vae_tile.c).
 * The upsamplers' convs (vae_upconv) run as four 2x2 convs on the source, one per output
 * phase, into a spare buffer that one pass interleaves into the output: 4/9 of the work.
 * Loops (BLIS order, one task = one n-chunk of pixels x one range of A panels):
 *   pc: K in KC steps (KC a multiple of ks*ks)  pack B (KC x nc) into NR-wide panels    [L2]
 *     p: A panels (prepacked, KC x MR)          stays in L1
 *       jr: B panels                            gemm_ukr: C tile (MR, NR) (+)= Ap . Bp
 * The first K block stores bias + product (or adds it to y when accumulating a residual); later
 * blocks accumulate. Every output pixel sums its K terms in the same order wherever it lies, so
 * a tiled decode reproduces the untiled one bit for bit. */
#include <math.h>
#include <string.h>

#include "vae.h"

#define VAE_KC3 252        /* K block for 3x3 kernels: 28 whole input channels                */
#define VAE_KC1 256        /* K block for 1x1 and 2x2 kernels                                 */
#define VAE_NC_MAX 1024    /* pixels per n-chunk: the packed B block (KC x NC) is 1 MB, in L2  */
#define VAE_MAX_NR 64
#define VAE_MAX_MR 32

typedef struct conv_job conv_job;
typedef void (*pack_fn)(const conv_job *j, float *dst, int64_t n0, int64_t nv, int64_t k0,
                        int64_t kc);

struct conv_job {
    eng_runtime *rt;
    const eng_kernels *kern;
    const vae_conv *c;
    const vae_conv_io *io;
    pack_fn pack;
    int64_t N;               /* output pixels ho*wo                                          */
    int64_t hv, wv;          /* (virtual) input size                                        */
    int64_t kc_blk;          /* K block                                                     */
    int64_t nc, n_chunks;    /* n-chunk width (multiple of NR) and count                    */
    int64_t m_chunk, m_chunks; /* A panels per task and count                               */
};

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

/* ---- weights ------------------------------------------------------------------------- */

int64_t vae_conv_packed_floats(int32_t cin, int32_t cout, int32_t ks, int32_t mr) {
    const int64_t panels = ceil_div(cout, mr), K = (int64_t)cin * ks * ks;
    return panels * K * mr + panels * mr;
}

void vae_conv_pack(vae_conv *c, int32_t cin, int32_t cout, int32_t ks, int32_t mr,
                   const float *w, const float *bias, float *dst) {
    const int64_t K = (int64_t)cin * ks * ks, panels = ceil_div(cout, mr);
    c->cin = cin;
    c->cout = cout;
    c->ks = ks;
    c->mr = mr;
    c->K = K;
    c->n_panels = panels;
    float *a = dst, *b = dst + panels * K * mr;
    for (int64_t p = 0; p < panels; p++) {
        float *ap = a + p * K * mr; /* (K, mr) */
        for (int64_t i = 0; i < mr; i++) {
            const int64_t o = p * mr + i;
            if (o < cout) {
                const float *wo = w + o * K;
                for (int64_t k = 0; k < K; k++) ap[k * mr + i] = wo[k];
            } else {
                for (int64_t k = 0; k < K; k++) ap[k * mr + i] = 0.0f;
            }
        }
    }
    for (int64_t o = 0; o < panels * mr; o++) b[o] = o < cout && bias ? bias[o] : 0.0f;
    c->a = a;
    c->bias = b;
}

/* ---- B packing: im2col panels from CHW ------------------------------------------------- */

typedef struct pix_run {
    int64_t j0, len;   /* panel columns [j0, j0 + len) */
    int64_t vy, vx;    /* virtual input position of column j0 for tap (0, 0) */
} pix_run;

/* One NR panel: dst (kc, NR), columns = output pixels n0 .. n0 + nv - 1, rows = k0 .. k0+kc-1.
 * The generic packer: any NR and any panel (runs of pixels in several rows, padding anywhere).
 * It serves the scalar and NEON tables and the panels the x86 vector packers below leave to it,
 * into which it is inlined. */
static inline __attribute__((always_inline)) void pack_panel(const conv_job *j,
                                                             float *restrict dst, int64_t n0,
                                                             int64_t nv, int64_t k0, int64_t kc,
                                                             const int64_t NR) {
    const vae_conv_io *io = j->io;
    const int64_t wo = io->wo, wi = io->wi, hv = j->hv, wv = j->wv;
    const int64_t ks = j->c->ks, kk = ks * ks, pad = (ks - 1) / 2;
    const int64_t plane = io->hi * wi;
    const int up = io->up;
    pix_run runs[VAE_MAX_NR];
    int n_runs = 0;
    for (int64_t t = 0; t < nv;) {
        const int64_t n = n0 + t, Y = n / wo, X = n % wo;
        const int64_t len = min64(wo - X, nv - t);
        runs[n_runs++] = (pix_run){t, len, Y + io->oy - pad, X + io->ox - pad};
        t += len;
    }
    int64_t ci = k0 / kk, r = k0 % kk, ky = r / ks, kx = r % ks;
    for (int64_t p = 0; p < kc; p++) {
        float *restrict d = dst + p * NR;
        const float *xp = io->x + ci * plane;
        for (int q = 0; q < n_runs; q++) {
            const pix_run *ru = &runs[q];
            float *restrict dq = d + ru->j0;
            const int64_t len = ru->len, vy = ru->vy + ky, vx0 = ru->vx + kx;
            if (vy < 0 || vy >= hv) {
                for (int64_t t = 0; t < len; t++) dq[t] = 0.0f;
                continue;
            }
            const float *restrict row = xp + (up ? vy >> 1 : vy) * wi;
            if (len == NR && vx0 >= 0 && vx0 + NR <= wv) {
                /* hot path: a whole panel inside one row, no padding */
                if (!up) {
                    const float *restrict s = row + vx0;
                    for (int64_t t = 0; t < NR; t++) dq[t] = s[t];
                } else {
                    for (int64_t t = 0; t < NR; t++) dq[t] = row[(vx0 + t) >> 1];
                }
                continue;
            }
            int64_t t0 = vx0 < 0 ? -vx0 : 0, t1 = min64(len, wv - vx0);
            if (t1 < t0) t1 = t0;
            for (int64_t t = 0; t < t0; t++) dq[t] = 0.0f;
            if (!up)
                for (int64_t t = t0; t < t1; t++) dq[t] = row[vx0 + t];
            else
                for (int64_t t = t0; t < t1; t++) dq[t] = row[(vx0 + t) >> 1];
            for (int64_t t = t1; t < len; t++) dq[t] = 0.0f;
        }
        for (int64_t t = nv; t < NR; t++) d[t] = 0.0f;
        if (++kx == ks) {
            kx = 0;
            if (++ky == ks) {
                ky = 0;
                ci++;
            }
        }
    }
}

static void pack_generic(const conv_job *j, float *dst, int64_t n0, int64_t nv, int64_t k0,
                         int64_t kc) {
    pack_panel(j, dst, n0, nv, k0, kc, j->kern->gemm_nr);
}

#if defined(__x86_64__) && defined(__GNUC__)
/* Vector packers for the common panel: NR output pixels of one row, no virtual upsample (the
 * decoder's upsampling convs run as vae_upconv phases). Each k row is two masked vector loads
 * (lanes outside the input read as zero and are never touched) and two stores; the masks
 * depend only on kx, so they are built once per panel. Other panels (rows narrower than NR,
 * the panel that wraps to the next row) take the generic path. */
#include <immintrin.h>

#define VAE_T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
#define VAE_T256 __attribute__((target("avx2,fma")))

/* bits [lo, hi) of n lanes */
static inline uint32_t lane_bits(int64_t lo, int64_t hi, int64_t n) {
    if (lo < 0) lo = 0;
    if (hi > n) hi = n;
    if (hi <= lo) return 0;
    return (uint32_t)((((uint64_t)1 << (hi - lo)) - 1) << lo);
}

VAE_T512 static void pack_avx512(const conv_job *j, float *dst, int64_t n0, int64_t nv,
                                 int64_t k0, int64_t kc) {
    const vae_conv_io *io = j->io;
    const int64_t wo = io->wo, Y = n0 / wo, X0 = n0 % wo;
    if (io->up || nv != 32 || X0 + 32 > wo) {
        pack_panel(j, dst, n0, nv, k0, kc, 32);
        return;
    }
    const int64_t ks = j->c->ks, kk = ks * ks, pad = (ks - 1) / 2, wi = io->wi;
    const int64_t hv = j->hv, plane = io->hi * wi;
    const int64_t vy0 = Y + io->oy - pad, vx0 = X0 + io->ox - pad;
    __mmask16 m0[3], m1[3]; /* lane t of kx reads x[vx0 + kx + t] when inside [0, wi) */
    for (int64_t kx = 0; kx < ks; kx++) {
        const int64_t vx = vx0 + kx;
        m0[kx] = (__mmask16)lane_bits(-vx, wi - vx, 16);
        m1[kx] = (__mmask16)lane_bits(-vx - 16, wi - vx - 16, 16);
    }
    int64_t ci = k0 / kk, r = k0 % kk, ky = r / ks, kx = r % ks;
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t p = 0; p < kc; p++) {
        float *d = dst + p * 32;
        const int64_t vy = vy0 + ky;
        __m512 v0 = zero, v1 = zero;
        if (vy >= 0 && vy < hv) {
            const float *src = io->x + ci * plane + vy * wi + vx0 + kx;
            v0 = _mm512_maskz_loadu_ps(m0[kx], src);
            v1 = _mm512_maskz_loadu_ps(m1[kx], src + 16);
        }
        _mm512_storeu_ps(d, v0);
        _mm512_storeu_ps(d + 16, v1);
        if (++kx == ks) {
            kx = 0;
            if (++ky == ks) {
                ky = 0;
                ci++;
            }
        }
    }
}

VAE_T256 static inline __m256 load_masked8(const float *p, uint32_t bits) {
    const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i sel = _mm256_and_si256(_mm256_set1_epi32((int)bits), lane);
    return _mm256_maskload_ps(p, _mm256_cmpeq_epi32(sel, lane));
}

VAE_T256 static void pack_avx2(const conv_job *j, float *dst, int64_t n0, int64_t nv, int64_t k0,
                               int64_t kc) {
    const vae_conv_io *io = j->io;
    const int64_t wo = io->wo, Y = n0 / wo, X0 = n0 % wo;
    if (io->up || nv != 16 || X0 + 16 > wo) {
        pack_panel(j, dst, n0, nv, k0, kc, 16);
        return;
    }
    const int64_t ks = j->c->ks, kk = ks * ks, pad = (ks - 1) / 2, wi = io->wi;
    const int64_t hv = j->hv, plane = io->hi * wi;
    const int64_t vy0 = Y + io->oy - pad, vx0 = X0 + io->ox - pad;
    uint32_t m0[3], m1[3];
    for (int64_t kx = 0; kx < ks; kx++) {
        const int64_t vx = vx0 + kx;
        m0[kx] = lane_bits(-vx, wi - vx, 8);
        m1[kx] = lane_bits(-vx - 8, wi - vx - 8, 8);
    }
    int64_t ci = k0 / kk, r = k0 % kk, ky = r / ks, kx = r % ks;
    const __m256 zero = _mm256_setzero_ps();
    for (int64_t p = 0; p < kc; p++) {
        float *d = dst + p * 16;
        const int64_t vy = vy0 + ky;
        __m256 v0 = zero, v1 = zero;
        if (vy >= 0 && vy < hv) {
            const float *src = io->x + ci * plane + vy * wi + vx0 + kx;
            v0 = load_masked8(src, m0[kx]);
            v1 = load_masked8(src + 8, m1[kx]);
        }
        _mm256_storeu_ps(d, v0);
        _mm256_storeu_ps(d + 8, v1);
        if (++kx == ks) {
            kx = 0;
            if (++ky == ks) {
                ky = 0;
                ci++;
            }
        }
    }
}
#endif

static pack_fn choose_pack(const eng_runtime *rt) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (rt->isa == ENG_ISA_AVX512 && rt->kern.gemm_nr == 32) return pack_avx512;
    if (rt->isa == ENG_ISA_AVX2 && rt->kern.gemm_nr == 16) return pack_avx2;
#endif
    return pack_generic;
}

/* ---- the GEMM loop ------------------------------------------------------------------- */

/* One micro-tile: rows [row0, row0 + mv) of y, pixels [col0, col0 + nv). */
static void run_tile(const conv_job *j, int64_t kc, const float *ap, const float *bp,
                     int64_t row0, int64_t col0, int64_t mv, int64_t nv, int first) {
    const eng_kernels *kern = j->kern;
    const int64_t MR = kern->gemm_mr, NR = kern->gemm_nr, N = j->N;
    if (j->io->pad_planes) mv = MR;
    float *c = j->io->y + row0 * N + col0;
    const float *bias = j->c->bias + row0; /* padded: MR values always readable */
    const int acc = j->io->accumulate;
    if (mv == MR && nv == NR) {
        if (!first) {
            kern->gemm_ukr(kc, ap, bp, NR, c, N, NULL, ENG_UKR_ACCUM);
            return;
        }
        if (!acc) {
            kern->gemm_ukr(kc, ap, bp, NR, c, N, bias, ENG_UKR_BIAS_M);
            return;
        }
    }
    float tile[VAE_MAX_MR * VAE_MAX_NR] __attribute__((aligned(64))); /* (MR, NR) */
    if (first) {
        kern->gemm_ukr(kc, ap, bp, NR, tile, NR, bias, ENG_UKR_BIAS_M);
        for (int64_t i = 0; i < mv; i++) {
            float *ci = c + i * N;
            const float *ti = tile + i * NR;
            if (acc)
                for (int64_t t = 0; t < nv; t++) ci[t] += ti[t];
            else
                memcpy(ci, ti, (size_t)nv * sizeof(float));
        }
        return;
    }
    memset(tile, 0, (size_t)(MR * NR) * sizeof(float));
    for (int64_t i = 0; i < mv; i++) memcpy(tile + i * NR, c + i * N, (size_t)nv * sizeof(float));
    kern->gemm_ukr(kc, ap, bp, NR, tile, NR, NULL, ENG_UKR_ACCUM);
    for (int64_t i = 0; i < mv; i++) memcpy(c + i * N, tile + i * NR, (size_t)nv * sizeof(float));
}

static void conv_task(void *ctx, int64_t task, int thread) {
    const conv_job *j = (const conv_job *)ctx;
    const vae_conv *c = j->c;
    const int64_t MR = j->kern->gemm_mr, NR = j->kern->gemm_nr, K = c->K;
    const int64_t ni = task % j->n_chunks, mi = task / j->n_chunks;
    const int64_t n0 = ni * j->nc, nw = min64(j->nc, j->N - n0);
    const int64_t p0 = mi * j->m_chunk, p1 = min64(p0 + j->m_chunk, c->n_panels);
    if (nw <= 0 || p0 >= p1) return;
    float *bp = (float *)eng_runtime_thread_scratch(j->rt, thread); /* (kc, nc) in NR panels */
    for (int64_t pc = 0; pc < K; pc += j->kc_blk) {
        const int64_t kc = min64(j->kc_blk, K - pc);
        for (int64_t jr = 0; jr < nw; jr += NR)
            j->pack(j, bp + (jr / NR) * kc * NR, n0 + jr, min64(NR, nw - jr), pc, kc);
        for (int64_t p = p0; p < p1; p++) {
            const float *ap = c->a + p * K * MR + pc * MR;
            const int64_t mv = min64(MR, c->cout - p * MR);
            for (int64_t jr = 0; jr < nw; jr += NR)
                run_tile(j, kc, ap, bp + (jr / NR) * kc * NR, p * MR, n0 + jr, mv,
                         min64(NR, nw - jr), pc == 0);
        }
    }
}

size_t vae_conv_scratch_bytes(const eng_runtime *rt) {
    (void)rt;
    return (size_t)VAE_KC1 * VAE_NC_MAX * sizeof(float);
}

eng_status vae_conv_run(eng_runtime *rt, const vae_conv *c, const vae_conv_io *io,
                        eng_error *err) {
    const eng_kernels *kern = &rt->kern;
    const int64_t MR = kern->gemm_mr, NR = kern->gemm_nr, T = rt->n_threads;
    if (c->mr != MR || NR > VAE_MAX_NR || MR > VAE_MAX_MR)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "VAE conv: weights packed for MR=%d, runtime has MR=%lld NR=%lld",
                           c->mr, (long long)MR, (long long)NR);
    conv_job j;
    memset(&j, 0, sizeof j);
    j.rt = rt;
    j.kern = kern;
    j.c = c;
    j.io = io;
    j.pack = choose_pack(rt);
    j.N = io->ho * io->wo;
    j.hv = io->up ? 2 * io->hi : io->hi;
    j.wv = io->up ? 2 * io->wi : io->wi;
    j.kc_blk = c->ks == 3 ? VAE_KC3 : VAE_KC1;
    if (j.N <= 0) return ENG_OK;

    /* n-chunks: a multiple of the thread count, each at most NC_MAX pixels; A panels are split
     * only when there are too few n-chunks to keep every thread busy (small latents). */
    int64_t n_chunks = ceil_div(j.N, VAE_NC_MAX);
    n_chunks = n_chunks < T ? T : round_up(n_chunks, T);
    j.nc = round_up(ceil_div(j.N, n_chunks), NR);
    j.n_chunks = ceil_div(j.N, j.nc);
    j.m_chunks = 1;
    if (j.n_chunks < 2 * T) {
        j.m_chunks = ceil_div(2 * T, j.n_chunks);
        if (j.m_chunks > c->n_panels) j.m_chunks = c->n_panels;
    }
    j.m_chunk = ceil_div(c->n_panels, j.m_chunks);
    j.m_chunks = ceil_div(c->n_panels, j.m_chunk);

    eng_status st = eng_runtime_reserve_scratch(rt, vae_conv_scratch_bytes(rt), err);
    if (st != ENG_OK) return st;
    eng_pool_run(rt->pool, j.n_chunks * j.m_chunks, conv_task, &j);
    return ENG_OK;
}

/* ---- upsampling conv by output phases (vae.h vae_upconv) ------------------------------- */

int64_t vae_upconv_packed_floats(int32_t cin, int32_t cout, int32_t mr) {
    return 4 * vae_conv_packed_floats(cin, cout, 2, mr);
}

void vae_upconv_pack(vae_upconv *u, int32_t cin, int32_t cout, int32_t mr, const float *w,
                     const float *bias, float *scratch, float *dst) {
    /* taps k of the 3x3 kernel that phase a's tap t collects: [a][t] = {first, last} */
    static const int span[2][2][2] = {{{0, 0}, {1, 2}}, {{0, 1}, {2, 2}}};
    const int64_t n = (int64_t)cout * cin, per_phase = vae_conv_packed_floats(cin, cout, 2, mr);
    u->cin = cin;
    u->cout = cout;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            for (int64_t oc = 0; oc < n; oc++) /* scratch (cout, cin, 2, 2) */
                for (int ty = 0; ty < 2; ty++)
                    for (int tx = 0; tx < 2; tx++) {
                        double sum = 0.0;
                        for (int ky = span[a][ty][0]; ky <= span[a][ty][1]; ky++)
                            for (int kx = span[b][tx][0]; kx <= span[b][tx][1]; kx++)
                                sum += (double)w[oc * 9 + ky * 3 + kx];
                        scratch[oc * 4 + ty * 2 + tx] = (float)sum;
                    }
            vae_conv_pack(&u->phase[2 * a + b], cin, cout, 2, mr, scratch, bias,
                          dst + (2 * a + b) * per_phase);
        }
}

typedef struct inter_job {
    float *y;                /* (cout, ho, wo) */
    const float *blk[2][2];  /* [a][b]: (cout, na[a], nb[b]) */
    int64_t na[2], nb[2], y0[2], x0[2]; /* phase grid sizes; first output row / column */
    int64_t ho, wo, oy, ox;
} inter_job;

static void interleave_task(void *ctx, int64_t c, int thread) {
    (void)thread;
    const inter_job *j = (const inter_job *)ctx;
    for (int64_t Y = 0; Y < j->ho; Y++) {
        const int a = (int)((Y + j->oy) & 1);
        const int64_t i = (Y - j->y0[a]) >> 1;
        const float *p0 = j->blk[a][0] + (c * j->na[a] + i) * j->nb[0];
        const float *p1 = j->blk[a][1] + (c * j->na[a] + i) * j->nb[1];
        float *dst = j->y + (c * j->ho + Y) * j->wo;
        for (int64_t X = 0; X < j->wo; X++)
            dst[X] = ((X + j->ox) & 1) ? p1[(X - j->x0[1]) >> 1] : p0[(X - j->x0[0]) >> 1];
    }
}

eng_status vae_upconv_run(eng_runtime *rt, const vae_upconv *u, const vae_conv_io *io,
                          float *tmp, eng_error *err) {
    if (!io->up || io->accumulate || io->oy < 0 || io->ox < 0)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "VAE upconv: needs up = 1, no accumulate");
    inter_job j = {.y = io->y, .ho = io->ho, .wo = io->wo, .oy = io->oy, .ox = io->ox};
    int64_t u0[2], v0[2];
    for (int a = 0; a < 2; a++) {
        /* output rows Y with (Y + oy) % 2 == a: Y = y0 + 2i, source row u0 + i */
        j.y0[a] = (a - io->oy) & 1;
        j.na[a] = j.y0[a] < io->ho ? (io->ho - j.y0[a] + 1) / 2 : 0;
        u0[a] = (j.y0[a] + io->oy) >> 1;
        j.x0[a] = (a - io->ox) & 1;
        j.nb[a] = j.x0[a] < io->wo ? (io->wo - j.x0[a] + 1) / 2 : 0;
        v0[a] = (j.x0[a] + io->ox) >> 1;
    }
    /* phases one after the other in tmp: a phase's padding planes spill into the next one's
     * block before it is written, and the last spill stays inside round_up(cout, mr) planes */
    float *blk = tmp;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            j.blk[a][b] = blk;
            if (j.na[a] == 0 || j.nb[b] == 0) continue;
            /* grid pixel (i, k) reads source (u0 + i - 1 + a + ty, v0 + k - 1 + b + tx) */
            vae_conv_io p = {.x = io->x, .hi = io->hi, .wi = io->wi, .up = 0, .y = blk,
                             .ho = j.na[a], .wo = j.nb[b], .oy = u0[a] - 1 + a,
                             .ox = v0[b] - 1 + b, .accumulate = 0, .pad_planes = 1};
            eng_status st = vae_conv_run(rt, &u->phase[2 * a + b], &p, err);
            if (st != ENG_OK) return st;
            blk += (int64_t)u->cout * j.na[a] * j.nb[b];
        }
    eng_pool_run(rt->pool, u->cout, interleave_task, &j);
    return ENG_OK;
}

/* ---- channel RMS norm (+ SiLU) over CHW ------------------------------------------------- */

#define NORM_CHUNK 256 /* pixels per task: C planes x 1 KB stay in L2 between the two passes */

typedef struct norm_job {
    const eng_kernels *kern;
    float *y;
    const float *x;
    const float *gamma;
    int64_t C, P;
    float sc;  /* sqrt(C) as the fp32 scalar torch multiplies by */
    int silu;
} norm_job;

static void norm_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    const norm_job *j = (const norm_job *)ctx;
    const int64_t p0 = task * NORM_CHUNK, n = min64(NORM_CHUNK, j->P - p0);
    float nrm[NORM_CHUNK];
    for (int64_t t = 0; t < n; t++) nrm[t] = 0.0f;
    for (int64_t c = 0; c < j->C; c++) { /* sum of squares, channel planes in order */
        const float *xc = j->x + c * j->P + p0;
        for (int64_t t = 0; t < n; t++) nrm[t] += xc[t] * xc[t];
    }
    for (int64_t t = 0; t < n; t++) {
        const float s = sqrtf(nrm[t]);
        nrm[t] = s > VAE_NORM_EPS ? s : VAE_NORM_EPS;
    }
    for (int64_t c = 0; c < j->C; c++) {
        const float *xc = j->x + c * j->P + p0;
        float *yc = j->y + c * j->P + p0;
        const float g = j->gamma[c], sc = j->sc;
        for (int64_t t = 0; t < n; t++) yc[t] = xc[t] / nrm[t] * sc * g;
        if (j->silu) j->kern->silu(yc, yc, n);
    }
}

void vae_channel_norm(eng_runtime *rt, float *y, const float *x, int64_t C, int64_t P,
                      const float *gamma, int silu) {
    if (C <= 0 || P <= 0) return;
    norm_job j = {.kern = &rt->kern, .y = y, .x = x, .gamma = gamma, .C = C, .P = P,
                  .sc = (float)sqrt((double)C), .silu = silu};
    eng_pool_run(rt->pool, ceil_div(P, NORM_CHUNK), norm_task, &j);
}

/* ---- layout helpers -------------------------------------------------------------------- */

#define TR_BLOCK 64 /* pixels per task of the transposes */

typedef struct tr_job {
    float *dst;
    const float *src;
    int64_t C, P;
} tr_job;

static void chw_to_hwc_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    const tr_job *j = (const tr_job *)ctx;
    const int64_t p0 = task * TR_BLOCK, p1 = min64(p0 + TR_BLOCK, j->P);
    for (int64_t c0 = 0; c0 < j->C; c0 += 16) {
        const int64_t c1 = min64(c0 + 16, j->C);
        for (int64_t p = p0; p < p1; p++)
            for (int64_t c = c0; c < c1; c++) j->dst[p * j->C + c] = j->src[c * j->P + p];
    }
}

static void hwc_add_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    const tr_job *j = (const tr_job *)ctx;
    const int64_t p0 = task * TR_BLOCK, p1 = min64(p0 + TR_BLOCK, j->P);
    for (int64_t c0 = 0; c0 < j->C; c0 += 16) {
        const int64_t c1 = min64(c0 + 16, j->C);
        for (int64_t c = c0; c < c1; c++)
            for (int64_t p = p0; p < p1; p++) j->dst[c * j->P + p] += j->src[p * j->C + c];
    }
}

void vae_chw_to_hwc(eng_runtime *rt, float *dst, const float *src, int64_t C, int64_t P) {
    tr_job j = {.dst = dst, .src = src, .C = C, .P = P};
    eng_pool_run(rt->pool, ceil_div(P, TR_BLOCK), chw_to_hwc_task, &j);
}

void vae_hwc_add_to_chw(eng_runtime *rt, float *dst, const float *src, int64_t C, int64_t P) {
    tr_job j = {.dst = dst, .src = src, .C = C, .P = P};
    eng_pool_run(rt->pool, ceil_div(P, TR_BLOCK), hwc_add_task, &j);
}

typedef struct crop_job {
    float *dst;
    const float *src;
    int64_t hi, wi, ho, wo, oy, ox;
} crop_job;

static void crop_task(void *ctx, int64_t c, int thread) {
    (void)thread;
    const crop_job *j = (const crop_job *)ctx;
    for (int64_t y = 0; y < j->ho; y++)
        memcpy(j->dst + (c * j->ho + y) * j->wo, j->src + (c * j->hi + y + j->oy) * j->wi + j->ox,
               (size_t)j->wo * sizeof(float));
}

void vae_crop(eng_runtime *rt, float *dst, const float *src, int64_t C, int64_t hi, int64_t wi,
              int64_t ho, int64_t wo, int64_t oy, int64_t ox) {
    crop_job j = {.dst = dst, .src = src, .hi = hi, .wi = wi, .ho = ho, .wo = wo, .oy = oy,
                  .ox = ox};
    eng_pool_run(rt->pool, C, crop_task, &j);
}
