/* gemm.c - blocked, packed, threaded GEMM driver (BLIS loop order) behind linear and conv2d.
 *
 *   C (M, N) = A (M, K) . W (N, K)^T + bias (N)
 *
 * Loops, outermost first (one task = one m-chunk x one NC-wide n-chunk, tasks spread over the
 * pool; every buffer below is per-thread scratch):
 *   pc: K in KC steps    pack the W block (NC x KC) into NR-wide panels Bp (KC, NR) [L2]
 *   ic: M in MC steps    pack the A block (MC x KC) into MR-tall panels Ap (KC, MR) [L2]
 *   ir: MR panels        one Ap panel (KC x MR floats) stays in L1
 *   jr: NR panels        gemm_ukr: C tile (MR, NR) = / += Ap panel . Bp panel (from L2)
 * W is converted from f16/bf16 to f32 while packing, so weights are read in place. */
#include <string.h>

#include "gemm.h"
#include "ops_cpu.h"

/* Block sizes (floats), tuned on a 2-core AVX-512 Xeon (48 KB L1D, 2 MB L2 per core) with
 * benchmarks/bench_kernels.py and bench_mmdit.py: Bp (KC x NC = 1.5 MB) and Ap (MC x KC =
 * 126 KB) share L2; KC 384 rather than 256 cuts the C tile read-modify-write passes by a third
 * (about 3 % of a 1024x1024 MMDiT block).
 * Overridable at compile time for tuning on other CPUs. */
#ifndef GEMM_NC_MAX
#define GEMM_NC_MAX 1024
#endif
#ifndef GEMM_MC_TARGET
#define GEMM_MC_TARGET 84
#endif

typedef struct gemm_job {
    eng_runtime *rt;
    const eng_kernels *kern;
    const gemm_args *g;
    int64_t nc;                  /* n-chunk width (multiple of NR) */
    int64_t n_chunks, m_chunks;
    int64_t m_chunk;             /* rows per m-chunk (multiple of MR) */
    int64_t mc;                  /* rows per A block (multiple of MR) */
} gemm_job;

void gemm_pack_a_rows(const gemm_src *src, const eng_kernels *kern, float *dst, int64_t m0,
                      int64_t m_valid, int64_t k0, int64_t kc) {
    kern->pack_a_f32(dst, (const float *)src->data + m0 * src->ld + k0, src->ld, m_valid, kc);
}

void gemm_pack_b_weight(const gemm_src *src, const eng_kernels *kern, float *dst, int64_t n0,
                        int64_t n_valid, int64_t k0, int64_t kc) {
    int64_t off = n0 * src->ld + k0;
    switch (src->dtype) {
    case ENG_F32: kern->pack_b_f32(dst, (const float *)src->data + off, src->ld, n_valid, kc); break;
    case ENG_BF16: kern->pack_b_bf16(dst, (const uint16_t *)src->data + off, src->ld, n_valid, kc); break;
    default: kern->pack_b_f16(dst, (const uint16_t *)src->data + off, src->ld, n_valid, kc); break;
    }
}

/* One micro-tile at C[i0.., j0..] with mv x nv valid entries; edges go through a local tile. */
static void run_tile(const gemm_job *j, int64_t kc, const float *ap, const float *bpp,
                     int64_t i0, int64_t j0, int64_t mv, int64_t nv, int first) {
    const gemm_args *g = j->g;
    const eng_kernels *kern = j->kern;
    const int64_t MR = kern->gemm_mr, NR = kern->gemm_nr;
    float *c = g->c + i0 * g->ldc + j0;
    const float *bias = g->bias ? (g->bias_per_row ? g->bias + i0 : g->bias + j0) : NULL;
    int flags = ENG_UKR_ACCUM;
    if (first) flags = !g->bias ? 0 : g->bias_per_row ? ENG_UKR_BIAS_M : ENG_UKR_BIAS_N;
    if (mv == MR && nv == NR) {
        kern->gemm_ukr(kc, ap, bpp, NR, c, g->ldc, bias, flags);
        return;
    }
    float tile[32 * 64] __attribute__((aligned(64))); /* (MR, NR) edge tile, MR <= 32, NR <= 64 */
    float bias_pad[64] __attribute__((aligned(64))); /* (MR or NR) zero-padded bias */
    if (!first) {
        for (int64_t i = 0; i < mv; i++) memcpy(tile + i * NR, c + i * g->ldc, (size_t)nv * 4);
    } else if (bias) {
        memset(bias_pad, 0, sizeof bias_pad);
        memcpy(bias_pad, bias, (size_t)(g->bias_per_row ? mv : nv) * 4);
        bias = bias_pad;
    }
    kern->gemm_ukr(kc, ap, bpp, NR, tile, NR, bias, flags);
    for (int64_t i = 0; i < mv; i++) memcpy(c + i * g->ldc, tile + i * NR, (size_t)nv * 4);
}

static void gemm_task(void *ctx, int64_t task, int thread) {
    const gemm_job *j = (const gemm_job *)ctx;
    const gemm_args *g = j->g;
    const eng_kernels *kern = j->kern;
    const int64_t MR = kern->gemm_mr, NR = kern->gemm_nr;
    const int64_t ni = task % j->n_chunks, mi = task / j->n_chunks;
    const int64_t n0 = ni * j->nc, nw = (g->N - n0 < j->nc) ? g->N - n0 : j->nc;
    const int64_t m0 = mi * j->m_chunk;
    const int64_t m1 = (m0 + j->m_chunk < g->M) ? m0 + j->m_chunk : g->M;
    if (nw <= 0 || m0 >= m1) return;

    float *bp = (float *)eng_runtime_thread_scratch(j->rt, thread); /* (KC, nc) in NR panels */
    float *ap = bp + GEMM_KC * j->nc;                                /* (KC, mc) in MR panels */

    for (int64_t pc = 0; pc < g->K; pc += GEMM_KC) {
        const int64_t kc = (g->K - pc < GEMM_KC) ? g->K - pc : GEMM_KC;
        const int first = pc == 0;
        for (int64_t jr = 0; jr < nw; jr += NR) {
            const int64_t nv = nw - jr < NR ? nw - jr : NR;
            g->b->pack(g->b, kern, bp + (jr / NR) * kc * NR, n0 + jr, nv, pc, kc);
        }
        for (int64_t ic = m0; ic < m1; ic += j->mc) {
            const int64_t mc = (m1 - ic < j->mc) ? m1 - ic : j->mc;
            for (int64_t ir = 0; ir < mc; ir += MR) {
                int64_t mv = mc - ir < MR ? mc - ir : MR;
                g->a->pack(g->a, kern, ap + (ir / MR) * kc * MR, ic + ir, mv, pc, kc);
            }
            for (int64_t ir = 0; ir < mc; ir += MR) {
                const int64_t mv = mc - ir < MR ? mc - ir : MR;
                for (int64_t jr = 0; jr < nw; jr += NR) {
                    const int64_t nv = nw - jr < NR ? nw - jr : NR;
                    run_tile(j, kc, ap + (ir / MR) * kc * MR, bp + (jr / NR) * kc * NR, ic + ir,
                             n0 + jr, mv, nv, first);
                }
            }
        }
    }
}

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

eng_status gemm_run(eng_runtime *rt, const gemm_args *g, eng_error *err) {
    const eng_kernels *kern = &rt->kern;
    const int64_t MR = kern->gemm_mr, NR = kern->gemm_nr;
    const int64_t T = rt->n_threads, M = g->M, N = g->N;
    gemm_job j;
    memset(&j, 0, sizeof j);
    j.rt = rt;
    j.kern = kern;
    j.g = g;

    /* n-chunks: a multiple of the thread count when N allows, each at most NC_MAX wide. */
    int64_t n_chunks = ceil_div(N, GEMM_NC_MAX);
    if (n_chunks < T) n_chunks = T;
    else n_chunks = round_up(n_chunks, T);
    j.nc = round_up(ceil_div(N, n_chunks), NR);
    j.n_chunks = ceil_div(N, j.nc);
    /* m-chunks only when there are too few n-chunks to keep every thread busy. */
    j.m_chunks = 1;
    if (j.n_chunks < 2 * T) {
        int64_t want = ceil_div(2 * T, j.n_chunks);
        int64_t max_by_rows = ceil_div(M, 4 * MR);
        j.m_chunks = want < max_by_rows ? want : max_by_rows;
        if (j.m_chunks < 1) j.m_chunks = 1;
    }
    j.m_chunk = round_up(ceil_div(M, j.m_chunks), MR);
    j.m_chunks = ceil_div(M, j.m_chunk);
    j.mc = GEMM_MC_TARGET / MR * MR;
    if (j.mc < MR) j.mc = MR;

    size_t floats = (size_t)GEMM_KC * (size_t)(j.nc + j.mc);
    eng_status st = eng_runtime_reserve_scratch(rt, floats * sizeof(float), err);
    if (st != ENG_OK) return st;
    eng_pool_run(rt->pool, j.n_chunks * j.m_chunks, gemm_task, &j);
    return ENG_OK;
}

/* ---- tiny M: matrix-vector products, threaded over blocks of output columns ---------- */

#define GEMV_MAX_M 4     /* up to this many rows, skip packing (W is streamed once per row) */
#define GEMV_COLS 64     /* output columns per task */

typedef struct gemv_job {
    const eng_kernels *kern;
    float *y;            /* (m, n) */
    const float *x;      /* (m, k) */
    const void *w;       /* (n, k) */
    eng_dtype w_dtype;
    const float *b;      /* (n) | NULL */
    int64_t m, n, k;
} gemv_job;

static void gemv_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    const gemv_job *j = (const gemv_job *)ctx;
    const int64_t n0 = task * GEMV_COLS, nn = j->n - n0 < GEMV_COLS ? j->n - n0 : GEMV_COLS;
    for (int64_t i = 0; i < j->m; i++) {
        float *yi = j->y + i * j->n + n0;
        const float *xi = j->x + i * j->k;
        switch (j->w_dtype) {
        case ENG_F32: j->kern->gemv_f32(yi, xi, (const float *)j->w + n0 * j->k, j->k, nn, j->k); break;
        case ENG_BF16: j->kern->gemv_bf16(yi, xi, (const uint16_t *)j->w + n0 * j->k, j->k, nn, j->k); break;
        default: j->kern->gemv_f16(yi, xi, (const uint16_t *)j->w + n0 * j->k, j->k, nn, j->k); break;
        }
        if (j->b)
            for (int64_t c = 0; c < nn; c++) yi[c] += j->b[n0 + c];
    }
}

eng_status cpu_linear(eng_runtime *rt, float *y, const float *x, const void *w, eng_dtype w_dtype,
                      const float *b, int64_t m, int64_t n, int64_t k, eng_error *err) {
    if (m <= GEMV_MAX_M) {
        gemv_job j = {.kern = &rt->kern, .y = y, .x = x, .w = w, .w_dtype = w_dtype, .b = b,
                      .m = m, .n = n, .k = k};
        eng_pool_run(rt->pool, (n + GEMV_COLS - 1) / GEMV_COLS, gemv_task, &j);
        return ENG_OK;
    }
    gemm_src a = {.pack = gemm_pack_a_rows, .data = x, .dtype = ENG_F32, .ld = k};
    gemm_src bw = {.pack = gemm_pack_b_weight, .data = w, .dtype = w_dtype, .ld = k};
    gemm_args g = {.M = m, .N = n, .K = k, .a = &a, .b = &bw, .bias = b, .c = y, .ldc = n};
    return gemm_run(rt, &g, err);
}
