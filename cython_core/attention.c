/* attention.c - flash-style tiled attention on the CPU (cpu_attention, ops_cpu.h).
 *
 * Reference: Dao et al., "FlashAttention" (2022), Algorithm 1 (forward pass, online softmax):
 * scores are produced one (Br queries x Bc keys) tile at a time and never materialised as
 * (sq, sk). Both products run on the runtime's GEMM micro-kernel (kernels.h gemm_ukr) so the
 * op gets faster with the ISA table and works for any MR x NR it reports:
 *   S (Br, Bc)  = (scale Q) K^T : a = Q packed in MR-row panels (pack_a_f32, kc = d),
 *                                 b = K packed once per call in NR-key panels (pack_b_f32:
 *                                 K rows (sk, d) are exactly the (N, K) weight layout)
 *   O (Br, d)  += P V           : a = P packed in MR-row panels (kc = visible keys of the block),
 *                                 b = V rows (ldb = d), or V copied zero-padded to a multiple
 *                                 of NR columns when d % NR != 0
 * and the softmax update between them is the table's attn_softmax_tile.
 *
 * Threading: one parallel-for packs K (and V when padded) per (kv head, key block); a second
 * runs tasks (q head, block of Br query rows). Each task keeps its Q panels, O accumulator,
 * score tile, packed P and the running max / sum in the runtime's per-thread scratch, sized
 * to stay in L2 (about 300 KB at d = 128). KV heads are processed in groups so the packed K/V
 * buffer stays near ATTN_PACK_CAP bytes whatever the sequence length. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "ops_cpu.h"

/* Tiles (d = 128, AVX-512 14 x 32 micro-kernel: Br = 98, Bc = 256). Per key block the S
 * product keeps one K panel (d x NR, 16 KB) in L1 while the Q panels (MR x d, 7 KB each)
 * stream past it, and the P V product keeps one P panel (Bc x MR, 14 KB) in L1 while the V
 * block (Bc x d, 128 KB) streams from L2. A task's own data - Q panels and O accumulator
 * (48 KB each), score tile and packed P (100 KB each) - is ~300 KB, so it and the K/V block
 * fit the 2 MB L2. Timing Br in 56..196 and Bc in 128..512 moved the result by < 3 %. */
#define ATTN_BR_ELEMS 12288    /* Br * d target (Q panels and O accumulator ~48 KB each)   */
#define ATTN_BR_MAX 128        /* query rows per task, upper bound                         */
#define ATTN_BC 256            /* keys per block (rounded up to NR)                        */
#define ATTN_LDS_PAD 16        /* floats added to the score-tile row stride (no 4K aliasing) */
#define ATTN_PACK_CAP (16u << 20) /* bytes of packed K/V held at once (>= one kv head)     */
#define ATTN_MIN_TASKS 4       /* per thread: shrink Br until there are this many tasks    */

/* Key-block visibility under key_mask. */
enum { KB_NONE = 0, KB_SOME = 1, KB_ALL = 2 };

typedef struct attn_ctx {
    const eng_kernels *kern;
    eng_runtime *rt;
    const eng_cancel *cancel;
    atomic_int cancelled;

    float *o;                  /* (hq, sq, d)  */
    const float *q;            /* (hq, sq, d)  */
    const float *k, *v;        /* (hkv, sk, d) */
    int causal;
    int64_t hq, hkv, sq, sk, d, group; /* group = hq / hkv */
    float scale;

    int64_t mr, nr;            /* micro-tile of the table's gemm_ukr                         */
    int64_t br;                /* query rows per task (multiple of mr)                       */
    int64_t bc;                /* keys per block (multiple of nr)                            */
    int64_t lds;               /* row stride of the score tile (bc + pad)                    */
    int64_t d_pad;             /* d rounded up to nr: O accumulator row stride               */
    int64_t n_qb, n_kb;        /* query blocks per head, key blocks per kv head              */
    int64_t n_kp;              /* K panels per kv head: ceil(sk / nr)                        */
    int64_t ldv;               /* row stride of the V rows fed to gemm_ukr (d or d_pad)      */

    /* shared, written by the pack pass, read by the tasks */
    int64_t kv0, n_kv;         /* kv heads [kv0, kv0 + n_kv) are packed                      */
    float *kpack;              /* (n_kv, n_kp, d, nr): K^T panels                            */
    float *vpad;               /* (n_kv, sk, d_pad) zero-padded V, or NULL (V read in place) */
    const float *mask_bias;    /* (n_kb * bc): 0 where key_mask allows, -inf where not; or NULL */
    const uint8_t *kb_vis;     /* (n_kb): KB_NONE / KB_SOME / KB_ALL                          */

    /* per-thread scratch layout, float offsets (each 64-byte aligned) */
    size_t off_q;              /* (br / mr, d, mr)  scaled Q panels                          */
    size_t off_o;              /* (br, d_pad)       O accumulator                            */
    size_t off_s;              /* (br, lds)         score tile, then p                       */
    size_t off_p;              /* (br / mr, bc, mr) packed P panels                          */
    size_t off_m, off_l, off_c;/* (br) each         running max, running sum, correction     */
    size_t scratch_floats;     /* total per thread                                           */
} attn_ctx;

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }
static size_t align16(size_t n) { return (n + 15u) & ~(size_t)15u; } /* floats -> 64 bytes */

static bool cancel_seen(attn_ctx *c) {
    if (atomic_load_explicit(&c->cancelled, memory_order_relaxed)) return true;
    if (eng_cancel_requested(c->cancel)) {
        atomic_store_explicit(&c->cancelled, 1, memory_order_relaxed);
        return true;
    }
    return false;
}

/* Pack pass, task = (kv head of the group, key block): K^T panels and, when d % nr != 0,
 * the zero-padded V rows of that block. Key blocks nobody reads (all masked) are skipped. */
static void attn_pack_task(void *vctx, int64_t task, int thread) {
    attn_ctx *c = vctx;
    (void)thread;
    if (cancel_seen(c)) return;
    const int64_t kvl = task / c->n_kb, kb = task % c->n_kb;
    if (c->kb_vis && c->kb_vis[kb] == KB_NONE) return;
    const int64_t kvh = c->kv0 + kvl, d = c->d, nr = c->nr;
    const int64_t key0 = kb * c->bc;
    const int64_t key1 = key0 + c->bc < c->sk ? key0 + c->bc : c->sk;
    const float *kh = c->k + kvh * c->sk * d;          /* (sk, d) */
    float *kp = c->kpack + kvl * c->n_kp * d * nr;     /* (n_kp, d, nr) */
    for (int64_t j = key0; j < key1; j += nr) {
        const int64_t nv = key1 - j < nr ? key1 - j : nr;
        c->kern->pack_b_f32(kp + (j / nr) * d * nr, kh + j * d, d, nv, d);
    }
    if (c->vpad) {
        const float *vh = c->v + kvh * c->sk * d;      /* (sk, d) */
        float *vp = c->vpad + kvl * c->sk * c->d_pad;  /* (sk, d_pad) */
        for (int64_t j = key0; j < key1; j++) {
            memcpy(vp + j * c->d_pad, vh + j * d, (size_t)d * sizeof(float));
            memset(vp + j * c->d_pad + d, 0, (size_t)(c->d_pad - d) * sizeof(float));
        }
    }
}

/* Sets the scores of keys the mask or causality hides to -inf.
 * s (rows, lds) for queries [q0, q0 + rows) x keys [key0, key0 + cols). */
static void attn_mask_tile(const attn_ctx *c, float *s, int64_t rows, int64_t cols, int64_t q0,
                           int64_t key0, int64_t kb) {
    if (c->mask_bias && c->kb_vis[kb] == KB_SOME) {
        const float *bias = c->mask_bias + key0; /* (cols) */
        for (int64_t r = 0; r < rows; r++) {
            float *row = s + r * c->lds;
            for (int64_t j = 0; j < cols; j++) row[j] += bias[j];
        }
    }
    if (c->causal && key0 + cols - 1 > q0) { /* the diagonal crosses this tile */
        for (int64_t r = 0; r < rows; r++) {
            float *row = s + r * c->lds;
            int64_t first = q0 + r - key0 + 1; /* first hidden column of this row */
            for (int64_t j = first < 0 ? 0 : first; j < cols; j++) row[j] = -INFINITY;
        }
    }
}

/* Attention task = (q head of the group, query block). */
static void attn_task(void *vctx, int64_t task, int thread) {
    attn_ctx *c = vctx;
    if (cancel_seen(c)) return;
    const eng_kernels *kt = c->kern;
    const int64_t mr = c->mr, nr = c->nr, d = c->d, d_pad = c->d_pad, lds = c->lds, bc = c->bc;
    const int64_t hl = task / c->n_qb;
    int64_t qb = task % c->n_qb;
    if (c->causal) qb = c->n_qb - 1 - qb; /* longest rows first: better balance at the end */
    const int64_t h = c->kv0 * c->group + hl; /* q head */
    const int64_t kvl = hl / c->group;        /* kv head within the packed group */
    const int64_t q0 = qb * c->br;
    const int64_t rows = c->sq - q0 < c->br ? c->sq - q0 : c->br;
    const int64_t n_ip = ceil_div(rows, mr);  /* MR-row panels in use */

    float *scr = eng_runtime_thread_scratch(c->rt, thread);
    float *qp = scr + c->off_q;   /* (n_ip, d, mr)   */
    float *acc = scr + c->off_o;  /* (n_ip * mr, d_pad) */
    float *s = scr + c->off_s;    /* (n_ip * mr, lds) */
    float *pp = scr + c->off_p;   /* (n_ip, bc, mr)  */
    float *m = scr + c->off_m;    /* (rows) */
    float *l = scr + c->off_l;    /* (rows) */
    float *corr = scr + c->off_c; /* (rows) */

    /* Q block, pre-multiplied by scale, in MR-row panels. */
    const float *qh = c->q + (h * c->sq + q0) * d; /* (rows, d) */
    for (int64_t ip = 0; ip < n_ip; ip++) {
        const int64_t mv = rows - ip * mr < mr ? rows - ip * mr : mr;
        kt->pack_a_f32(qp + ip * d * mr, qh + ip * mr * d, d, mv, d);
    }
    const float scale = c->scale;
    for (int64_t i = 0; i < n_ip * d * mr; i++) qp[i] *= scale;
    memset(acc, 0, (size_t)(n_ip * mr * d_pad) * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }

    const float *kp = c->kpack + kvl * c->n_kp * d * nr; /* (n_kp, d, nr) */
    const float *vh = c->vpad ? c->vpad + kvl * c->sk * d_pad
                              : c->v + (c->kv0 + kvl) * c->sk * d; /* (sk, ldv) */
    const int64_t kend = c->causal && q0 + rows < c->sk ? q0 + rows : c->sk;
    for (int64_t key0 = 0, kb = 0; key0 < kend; key0 += bc, kb++) {
        if (c->kb_vis && c->kb_vis[kb] == KB_NONE) continue;
        const int64_t cols = kend - key0 < bc ? kend - key0 : bc;
        const int64_t n_jp = ceil_div(cols, nr);

        /* hot loop 1: S = (scale Q) K^T; the K panel (d, nr) stays in L1 across Q panels */
        for (int64_t jp = 0; jp < n_jp; jp++) {
            const float *kpj = kp + (key0 / nr + jp) * d * nr;
            for (int64_t ip = 0; ip < n_ip; ip++)
                kt->gemm_ukr(d, qp + ip * d * mr, kpj, nr, s + ip * mr * lds + jp * nr, lds,
                             NULL, 0);
        }
        attn_mask_tile(c, s, rows, cols, q0, key0, kb);
        kt->attn_softmax_tile(s, lds, rows, cols, m, l, corr);

        for (int64_t r = 0; r < rows; r++) {
            const float cr = corr[r];
            if (cr != 1.0f) {
                float *ar = acc + r * d_pad;
                for (int64_t j = 0; j < d_pad; j++) ar[j] *= cr;
            }
        }
        for (int64_t ip = 0; ip < n_ip; ip++) {
            const int64_t mv = rows - ip * mr < mr ? rows - ip * mr : mr;
            kt->pack_a_f32(pp + ip * bc * mr, s + ip * mr * lds, lds, mv, cols);
        }
        /* hot loop 2: O += P V over the block's visible keys; the P panel stays in L1 */
        const float *vb = vh + key0 * c->ldv; /* (cols, ldv) */
        for (int64_t ip = 0; ip < n_ip; ip++)
            for (int64_t jc = 0; jc < d_pad; jc += nr)
                kt->gemm_ukr(cols, pp + ip * bc * mr, vb + jc, c->ldv, acc + ip * mr * d_pad + jc,
                             d_pad, NULL, ENG_UKR_ACCUM);
    }

    /* O = acc / l; a row that saw no key (l = 0) gets zeros. */
    float *oh = c->o + (h * c->sq + q0) * d; /* (rows, d) */
    for (int64_t r = 0; r < rows; r++) {
        const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        const float *ar = acc + r * d_pad;
        float *orow = oh + r * d;
        for (int64_t j = 0; j < d; j++) orow[j] = ar[j] * inv;
    }
}

/* Chooses Br (query rows per task) and Bc (keys per block). Br * d ~ ATTN_BR_ELEMS keeps the
 * Q panels and the O accumulator of a task at ~48 KB each; Br is then evened out over the
 * query blocks and halved while there are too few tasks for the threads. */
static void attn_choose_tiles(attn_ctx *c, int n_threads) {
    const int64_t mr = c->mr, nr = c->nr;
    int64_t br = ATTN_BR_ELEMS / c->d;
    br = br > ATTN_BR_MAX ? ATTN_BR_MAX : br;
    br = round_up(br < mr ? mr : br, mr);
    if (br > round_up(c->sq, mr)) br = round_up(c->sq, mr);
    for (;;) {
        const int64_t n_qb = ceil_div(c->sq, br);
        br = round_up(ceil_div(c->sq, n_qb), mr); /* even the blocks out */
        if (br <= mr || c->hq * ceil_div(c->sq, br) >= (int64_t)ATTN_MIN_TASKS * n_threads) break;
        br = round_up(br / 2, mr);
    }
    c->br = br;
    c->n_qb = ceil_div(c->sq, br);
    c->bc = round_up(c->sk < ATTN_BC ? c->sk : ATTN_BC, nr);
    c->n_kb = ceil_div(c->sk, c->bc);
    c->lds = c->bc + ATTN_LDS_PAD;
    c->d_pad = round_up(c->d, nr);
    c->n_kp = ceil_div(c->sk, nr);
    c->ldv = c->d % nr ? c->d_pad : c->d;

    size_t off = 0;
    c->off_q = off, off += align16((size_t)(br * c->d));
    c->off_o = off, off += align16((size_t)(br * c->d_pad));
    c->off_s = off, off += align16((size_t)(br * c->lds));
    c->off_p = off, off += align16((size_t)(br * c->bc));
    c->off_m = off, off += align16((size_t)br);
    c->off_l = off, off += align16((size_t)br);
    c->off_c = off, off += align16((size_t)br);
    c->scratch_floats = off;
}

eng_status cpu_attention(eng_runtime *rt, float *o, const float *q, const float *k, const float *v,
                         const uint8_t *key_mask, int causal, int64_t hq, int64_t hkv, int64_t sq,
                         int64_t sk, int64_t d, float scale, const eng_cancel *cancel,
                         eng_error *err) {
    if (eng_cancel_requested(cancel))
        return eng_err_set(err, ENG_ERR_CANCELLED, "attention: cancelled before it started");

    attn_ctx c;
    memset(&c, 0, sizeof c);
    c.kern = &rt->kern;
    c.rt = rt;
    c.cancel = cancel;
    atomic_init(&c.cancelled, 0);
    c.o = o;
    c.q = q;
    c.k = k;
    c.v = v;
    c.causal = causal != 0;
    c.hq = hq;
    c.hkv = hkv;
    c.sq = sq;
    c.sk = sk;
    c.d = d;
    c.group = hq / hkv;
    c.scale = scale;
    c.mr = rt->kern.gemm_mr;
    c.nr = rt->kern.gemm_nr;
    attn_choose_tiles(&c, rt->n_threads);

    /* Buffer (the runtime's kept attention workspace): [packed K | padded V] for a group of kv
     * heads, then the mask tables. */
    size_t kp_head, vp_head, head_bytes;
    if (__builtin_mul_overflow((size_t)c.n_kp, (size_t)(c.nr * d), &kp_head) ||
        __builtin_mul_overflow((size_t)sk, (size_t)(c.ldv == d ? 0 : c.d_pad), &vp_head) ||
        __builtin_mul_overflow(kp_head + vp_head, sizeof(float), &head_bytes))
        return eng_err_set(err, ENG_ERR_OOM,
                           "attention: packed K/V size overflows (sk=%lld d=%lld)", (long long)sk,
                           (long long)d);
    int64_t n_kv = (int64_t)(ATTN_PACK_CAP / head_bytes);
    n_kv = n_kv < 1 ? 1 : n_kv > hkv ? hkv : n_kv;
    const size_t mask_floats = key_mask ? align16((size_t)(c.n_kb * c.bc)) : 0;
    const size_t vis_bytes = key_mask ? (size_t)c.n_kb : 0;
    const size_t buf_bytes = (size_t)n_kv * head_bytes + mask_floats * sizeof(float) + vis_bytes;
    float *buf = eng_runtime_workspace(rt, ENG_WS_ATTENTION, buf_bytes, "attention (packed K/V)", err);
    if (!buf) return ENG_ERR_OOM;
    c.kpack = buf;
    c.vpad = vp_head ? buf + (size_t)n_kv * kp_head : NULL;
    if (key_mask) {
        float *bias = buf + (size_t)n_kv * (kp_head + vp_head); /* (n_kb * bc) */
        uint8_t *vis = (uint8_t *)(bias + mask_floats);         /* (n_kb) */
        for (int64_t kb = 0; kb < c.n_kb; kb++) {
            const int64_t key1 = (kb + 1) * c.bc < sk ? (kb + 1) * c.bc : sk;
            int64_t n_vis = 0;
            for (int64_t j = kb * c.bc; j < key1; j++) {
                bias[j] = key_mask[j] ? 0.0f : -INFINITY;
                n_vis += key_mask[j] != 0;
            }
            vis[kb] = n_vis == 0 ? KB_NONE : n_vis == key1 - kb * c.bc ? KB_ALL : KB_SOME;
        }
        c.mask_bias = bias;
        c.kb_vis = vis;
    }

    eng_status st = eng_runtime_reserve_scratch(rt, c.scratch_floats * sizeof(float), err);
    if (st != ENG_OK) return st;
    for (int64_t kv0 = 0; kv0 < hkv && !cancel_seen(&c); kv0 += n_kv) {
        c.kv0 = kv0;
        c.n_kv = hkv - kv0 < n_kv ? hkv - kv0 : n_kv;
        eng_pool_run(rt->pool, c.n_kv * c.n_kb, attn_pack_task, &c);
        eng_pool_run(rt->pool, c.n_kv * c.group * c.n_qb, attn_task, &c);
    }
    if (atomic_load_explicit(&c.cancelled, memory_order_relaxed))
        return eng_err_set(err, ENG_ERR_CANCELLED,
                           "attention: cancelled (hq=%lld sq=%lld sk=%lld); o is incomplete",
                           (long long)hq, (long long)sq, (long long)sk);
    return ENG_OK;
}
