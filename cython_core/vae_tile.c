/* vae_tile.c - the VAE decoder forward pass (AutoencoderKLQwenImage._decode for one frame),
 * tiled decoding and the activation-memory formula.
 *
 * Forward, as diffusers runs it for one frame (feat_cache empty, so every CausalConv3d is a 2-D
 * conv with its last temporal tap and upsample3d skips time_conv):
 *   z = latents / (1 / latents_std) + latents_mean            (the pipeline's un-normalisation)
 *   x = conv_in(post_quant_conv(z))
 *   x = mid.resnets[0](x); x = mid.attentions[0](x); x = mid.resnets[1](x)
 *   for each up block: x = resnets(x) ...; x = conv(nearest_2x(x))  (all but the last block)
 *   rgb = clamp(conv_out(silu(norm_out(x))), -1, 1)
 * with resnet(x) = conv2(silu(norm2(conv1(silu(norm1(x)))))) + shortcut(x) and the channel RMS
 * norm n(x) = x / max(||x||, 1e-12) * sqrt(C) * gamma per pixel.
 *
 * Tiling. The mid block (the only global op: attention over all latent pixels) always runs on
 * the whole latent: at latent resolution it is small (dims[0] x h x w floats). Only the up path
 * is tiled. It is purely local: every op is per pixel except the 3x3 convs, so an output pixel
 * depends on latent pixels within `halo` of it (vae.c compute_halo: 13 for the real config).
 * A tile is a core rectangle of the latent grid; its window is the core grown by the overlap's
 * half (>= halo) per side, clipped to the image. Each 3x3 conv computes its output only on the
 * window shrunk by one pixel on every side that is not an image border (where zero padding is
 * the true padding), so every value computed is exact, and after the last conv the window
 * still covers the core (x scale). The core is copied out: neighbouring tiles meet without a
 * seam and a tiled decode equals the untiled one (the conv sums each pixel's terms in the same
 * order wherever it sits, so in practice bit for bit). This is stricter than diffusers'
 * tiled_decode, which decodes tiles with the attention restricted to the tile and blends them
 * linearly in the overlap; here there is nothing left to blend.
 *   options: tile    = window side in latent pixels (like diffusers' tile_sample_min / 8);
 *            overlap = how far neighbouring windows overlap, latent pixels (>= 2 * halo: a
 *                      smaller request is raised to it; default 2 * halo);
 *            tiling  = -1: tile only when the untiled decode exceeds memory_budget (default
 *                      1.5e9 bytes), then with the largest window that fits; 1: always (window
 *                      VAE_FORCED_TILE latent pixels unless `tile` says otherwise, shrunk to
 *                      fit the budget); 0: never.
 *
 * Activation memory (bytes; f32 = 4 bytes, C0 = dims[0], Z = z_dim, S = h*w latent pixels,
 * MR = the micro-kernel's panel height, ru(C) = C rounded up to a multiple of MR):
 *   arena   = 4 * (Z*S + C0*S + 3*R)                        + alignment
 *     Z*S   the un-normalised latent; C0*S the mid-block output every tile reads;
 *     R     one of three rotating work regions:
 *           R = max(max(2*C0, ru(C0), ru(Z)) * S,             mid block / attention buffers
 *                   max over up-path stages of ru(Cmax) * area) per tile
 *           where area is the stage's window (pixels at its resolution) and Cmax the widest
 *           tensor one region holds at that stage (max(cin, cout) in a resnet, C then C/2 around
 *           an upsampler, dims[-1] then out_channels in the head); ru() because a conv writes
 *           whole MR-row panels of output planes (vae_conv_io.pad_planes);
 *   attn    = 4 * round_up(S, NR) * C0                       packed K of the mid attention
 *   scratch = threads * 2 MiB                                 im2col / GEMM / attention packing
 *   total   = arena + attn + scratch                         (vae_plan.total_bytes)
 * Untiled, the largest stage is the last level at full resolution: R = ru(dims[-1]) * 64 S. For
 * the real config at 1024x1024 (S = 128^2, dims[-1] = 96, MR = 14 with AVX-512) that is
 * 3 * 98 * 1024^2 * 4 B = 1.23e9 B of regions and 1.29e9 B in total: within the 1.5 GB default
 * budget, so 1024x1024 decodes untiled by default. Forced tiling uses 2 x 2 windows of 96 latent
 * pixels (0.38e9 B); the floor for that size, set by the whole-latent mid block, is 0.2e9 B.
 * 1328x1328 (2.1e9 B untiled) tiles automatically (2 x 2, 0.63e9 B). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "ops_cpu.h"
#include "vae.h"

#define VAE_DEFAULT_BUDGET ((size_t)1500000000)
#define VAE_FORCED_TILE 96      /* latent pixels: window side when tiling is forced */
#define VAE_MAX_POINTS 128      /* measure points of the memory walk                */

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

/* ---- windows ------------------------------------------------------------------------- */

typedef struct win {
    int64_t y0, y1, x0, x1; /* [y0, y1) x [x0, x1), image coordinates at the current resolution */
} win;

static int64_t win_h(win w) { return w.y1 - w.y0; }
static int64_t win_w(win w) { return w.x1 - w.x0; }
static int64_t win_area(win w) { return win_h(w) * win_w(w); }
static int win_eq(win a, win b) {
    return a.y0 == b.y0 && a.y1 == b.y1 && a.x0 == b.x0 && a.x1 == b.x1;
}

/* One 3x3 conv: drop a pixel on every side that is not an image border. */
static win shrink(win w, int64_t H, int64_t W) {
    if (w.y0 > 0) w.y0++;
    if (w.y1 < H) w.y1--;
    if (w.x0 > 0) w.x0++;
    if (w.x1 < W) w.x1--;
    return w;
}

/* Tile i of n along an axis of len latent pixels: core [b_i, b_i+1), window core +- he. */
static void tile_axis(int64_t len, int64_t n, int64_t he, int64_t i, int64_t *c0, int64_t *c1,
                      int64_t *w0, int64_t *w1) {
    *c0 = i * len / n;
    *c1 = (i + 1) * len / n;
    *w0 = max64(0, *c0 - he);
    *w1 = min64(len, *c1 + he);
}

/* ---- memory walk (mirrors the forward below) -------------------------------------------- */

static void axis_shrink(int64_t *a0, int64_t *a1, int64_t n) {
    if (*a0 > 0) (*a0)++;
    if (*a1 < n) (*a1)--;
}

/* Lengths of one axis of a tile window at every measure point of the up path, with the
 * channel count held in one region there. Returns the number of points. */
static int walk_axis(const vae_model *m, int64_t a0, int64_t a1, int64_t n, int64_t *lens,
                     int64_t *chans) {
    const vae_config *c = &m->cfg;
    int k = 0;
    for (int32_t i = 0; i < c->n_levels; i++) {
        const vae_up_block *u = &m->up[i];
        for (int32_t r = 0; r < u->n_res; r++) {
            lens[k] = a1 - a0;
            chans[k++] = max64(u->res[r].cin, u->res[r].cout);
            axis_shrink(&a0, &a1, n);
            axis_shrink(&a0, &a1, n);
        }
        if (u->has_up) {
            lens[k] = a1 - a0;
            chans[k++] = u->up.cin;
            a0 *= 2, a1 *= 2, n *= 2;
            axis_shrink(&a0, &a1, n);
            lens[k] = a1 - a0;
            chans[k++] = u->up.cout;
        }
    }
    lens[k] = a1 - a0;
    chans[k++] = m->conv_out.cin;
    axis_shrink(&a0, &a1, n);
    lens[k] = a1 - a0;
    chans[k++] = m->conv_out.cout;
    return k;
}

/* Floats of one work region for an ny x nx tiling with half-overlap he (ny = nx = 1, he = 0:
 * untiled). Per measure point the need is C * len_y * len_x, and its maximum over tiles is C
 * times the per-axis maxima, so the axes are walked separately. */
static int64_t round_up64(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

static int64_t region_floats(const vae_model *m, int64_t h, int64_t w, int64_t ny, int64_t nx,
                             int64_t he) {
    int64_t ly[VAE_MAX_POINTS], lx[VAE_MAX_POINTS], t[VAE_MAX_POINTS], ch[VAE_MAX_POINTS];
    int n_pts = 0;
    memset(ly, 0, sizeof ly);
    memset(lx, 0, sizeof lx);
    for (int axis = 0; axis < 2; axis++) {
        const int64_t len = axis ? w : h, n = axis ? nx : ny;
        int64_t *acc = axis ? lx : ly;
        for (int64_t i = 0; i < n; i++) {
            int64_t c0, c1, w0, w1;
            tile_axis(len, n, he, i, &c0, &c1, &w0, &w1);
            n_pts = walk_axis(m, w0, w1, len, t, ch);
            for (int k = 0; k < n_pts; k++) acc[k] = max64(acc[k], t[k]);
        }
    }
    /* conv outputs take whole A panels of planes (vae_conv_io.pad_planes) */
    const int64_t S = h * w, C0 = m->cfg.dims[0], mr = m->mr;
    /* mid block: attention uses two regions of 2 x (C0, S); conv outputs there: Z, C0 planes */
    int64_t need = max64(2 * C0, max64(round_up64(C0, mr), round_up64(m->cfg.z_dim, mr))) * S;
    for (int k = 0; k < n_pts; k++) need = max64(need, round_up64(ch[k], mr) * ly[k] * lx[k]);
    return round16(need);
}

static void plan_bytes(const vae_model *m, const eng_runtime *rt, int64_t h, int64_t w,
                       vae_plan *p) {
    const int64_t S = h * w, C0 = m->cfg.dims[0], NR = rt->kern.gemm_nr;
    const int64_t he = p->tiled ? p->overlap / 2 : 0;
    p->region_floats = region_floats(m, h, w, p->ny, p->nx, he);
    p->arena_bytes = (size_t)(round16(m->cfg.z_dim * S) + round16(C0 * S) + 3 * p->region_floats) *
                         sizeof(float) + 8 * ENG_ALIGN;
    p->attn_bytes = (size_t)((S + NR - 1) / NR * NR * C0) * sizeof(float);
    /* the runtime's per-thread scratch: im2col blocks of vae_conv (1 MiB), GEMM and attention
     * packing for the mid block (< 2 MiB) */
    size_t per_thread = vae_conv_scratch_bytes(rt);
    if (per_thread < ((size_t)2 << 20)) per_thread = (size_t)2 << 20;
    p->scratch_bytes = (size_t)rt->n_threads * per_thread;
    p->total_bytes = p->arena_bytes + p->attn_bytes + p->scratch_bytes;
}

static int64_t tiles_along(int64_t len, int64_t tile, int64_t overlap) {
    if (len <= tile) return 1;
    return (len + (tile - overlap) - 1) / (tile - overlap);
}

static void plan_tiled(const vae_model *m, const eng_runtime *rt, int64_t h, int64_t w,
                       int64_t tile, int64_t overlap, vae_plan *p) {
    p->tiled = 1;
    p->tile = (int32_t)tile;
    p->overlap = (int32_t)overlap;
    p->ny = (int32_t)tiles_along(h, tile, overlap);
    p->nx = (int32_t)tiles_along(w, tile, overlap);
    plan_bytes(m, rt, h, w, p);
}

eng_status vae_make_plan(const vae_model *m, const eng_runtime *rt, int64_t h, int64_t w,
                         const eng_vae_options *opt, vae_plan *out, eng_error *err) {
    const size_t budget = opt->memory_budget ? opt->memory_budget : VAE_DEFAULT_BUDGET;
    const int64_t halo = m->halo;
    const int64_t overlap = max64(opt->overlap, 2 * halo);
    vae_plan p;
    memset(&p, 0, sizeof p);
    p.halo = (int32_t)halo;
    p.ny = p.nx = 1;
    p.tile = (int32_t)max64(h, w);
    plan_bytes(m, rt, h, w, &p);
    if (opt->tiling == 0 || (opt->tiling < 0 && p.total_bytes <= budget)) {
        *out = p;
        return ENG_OK;
    }
    if (opt->tile) {
        if (opt->tile <= overlap)
            return eng_err_set(err, ENG_ERR_INVALID_ARG,
                               "VAE: tile %d must exceed the overlap %lld (latent pixels; the "
                               "overlap is at least 2 x halo = %lld)",
                               opt->tile, (long long)overlap, (long long)(2 * halo));
        plan_tiled(m, rt, h, w, opt->tile, overlap, &p);
        *out = p;
        return ENG_OK;
    }
    /* The largest window that fits the budget (forced tiling: at most VAE_FORCED_TILE). The
     * bytes grow with the window (up to rounding in the tile counts), so binary search, then
     * keep whatever fits. */
    int64_t hi = max64(h, w), lo = overlap + 1;
    if (opt->tiling > 0) hi = min64(hi, VAE_FORCED_TILE);
    if (hi < lo) hi = lo;
    plan_tiled(m, rt, h, w, lo, overlap, &p);
    if (p.total_bytes > budget)
        return eng_err_set(err, ENG_ERR_OOM,
                           "VAE: memory_budget %zu bytes is below the %zu bytes the smallest tile "
                           "(%lld latent pixels, overlap %lld) of a %lldx%lld latent needs",
                           budget, p.total_bytes, (long long)lo, (long long)overlap, (long long)h,
                           (long long)w);
    while (lo < hi) { /* invariant: lo fits */
        const int64_t mid = lo + (hi - lo + 1) / 2;
        plan_tiled(m, rt, h, w, mid, overlap, &p);
        if (p.total_bytes <= budget) lo = mid;
        else hi = mid - 1;
    }
    plan_tiled(m, rt, h, w, lo, overlap, &p);
    *out = p;
    return ENG_OK;
}

/* ---- forward ------------------------------------------------------------------------- */

typedef struct dec {
    eng_runtime *rt;
    const vae_model *m;
    const eng_cancel *cancel;
    eng_error *err;
    float *reg[3];        /* three work regions of region_floats each                    */
    int cur;              /* the region holding x                                        */
    int64_t C;            /* channels of x                                               */
    win w;                /* x's window at the current resolution                        */
    int64_t H, W;         /* image size at the current resolution                        */
    int64_t tile, n_tiles;
} dec;

/* ENG_ERR_CANCELLED naming the stage about to run, when the request's token fired. */
static eng_status poll(dec *d, const char *fmt, ...) ENG_PRINTF(2, 3);
static eng_status poll(dec *d, const char *fmt, ...) {
    if (!eng_cancel_requested(d->cancel)) return ENG_OK;
    char stage[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(stage, sizeof stage, fmt, ap);
    va_end(ap);
    return eng_err_set(d->err, ENG_ERR_CANCELLED,
                       "VAE decode cancelled before %s (tile %lld of %lld)", stage,
                       (long long)(d->tile + 1), (long long)d->n_tiles);
}

/* y on window wo <- conv(x on window wi), x read through a 2x upsample when up. */
static eng_status conv(dec *d, const vae_conv *c, const float *x, win wi, int up, float *y,
                       win wo, int accumulate) {
    const int64_t f = up ? 2 : 1;
    vae_conv_io io = {.x = x, .hi = win_h(wi), .wi = win_w(wi), .up = up, .y = y,
                      .ho = win_h(wo), .wo = win_w(wo), .oy = wo.y0 - f * wi.y0,
                      .ox = wo.x0 - f * wi.x0, .accumulate = accumulate, .pad_planes = 1};
    return vae_conv_run(d->rt, c, &io, d->err);
}

static eng_status resblock(dec *d, const vae_resblock *rb) {
    eng_status st;
    const int a = d->cur, b = (a + 1) % 3, c = (a + 2) % 3;
    float *X = d->reg[a], *T = d->reg[b], *U = d->reg[c];
    const win w0 = d->w, w1 = shrink(w0, d->H, d->W), w2 = shrink(w1, d->H, d->W);
    vae_channel_norm(d->rt, T, X, rb->cin, win_area(w0), rb->g1, 1);
    if ((st = conv(d, &rb->conv1, T, w0, 0, U, w1, 0))) return st;
    vae_channel_norm(d->rt, U, U, rb->cout, win_area(w1), rb->g2, 1);
    int out = a; /* residual h lands in `out`, conv2 accumulates onto it */
    if (rb->shortcut.cout) {
        if ((st = conv(d, &rb->shortcut, X, w0, 0, T, w2, 0))) return st;
        out = b;
    } else if (!win_eq(w0, w2)) {
        vae_crop(d->rt, T, X, rb->cin, win_h(w0), win_w(w0), win_h(w2), win_w(w2), w2.y0 - w0.y0,
                 w2.x0 - w0.x0);
        out = b;
    }
    if ((st = conv(d, &rb->conv2, U, w1, 0, d->reg[out], w2, 1))) return st;
    d->cur = out;
    d->C = rb->cout;
    d->w = w2;
    return ENG_OK;
}

/* Single-head attention over the window's pixels (the whole latent), x += proj(attn(norm(x))).
 * Region use (n = C*P floats): A = [T | -] then [q | k] then [proj | -]; B = [Tt | v], then
 * [o | v]. */
static eng_status attention(dec *d, const vae_attn *at) {
    eng_status st;
    const int64_t C = at->c, P = win_area(d->w), n = C * P;
    float *X = d->reg[d->cur], *A = d->reg[(d->cur + 1) % 3], *B = d->reg[(d->cur + 2) % 3];
    float *T = A, *Tt = B, *q = A, *k = A + n, *v = B + n, *o = B, *pj = A;
    const float scale = (float)(1.0 / sqrt((double)C));
    vae_channel_norm(d->rt, T, X, C, P, at->g, 0);
    vae_chw_to_hwc(d->rt, Tt, T, C, P); /* (P, C) tokens */
    const float *wq = at->w_qkv, *wk = wq + C * C, *wv = wk + C * C; /* (C, C) each */
    const float *bq = at->b_qkv, *bk = bq + C, *bv = bk + C;
    if ((st = cpu_linear(d->rt, q, Tt, wq, ENG_F32, bq, P, C, C, d->err)) ||
        (st = cpu_linear(d->rt, k, Tt, wk, ENG_F32, bk, P, C, C, d->err)) ||
        (st = cpu_linear(d->rt, v, Tt, wv, ENG_F32, bv, P, C, C, d->err)) ||
        (st = cpu_attention(d->rt, o, q, k, v, NULL, 0, 1, 1, P, P, C, scale, d->cancel, d->err)) ||
        (st = cpu_linear(d->rt, pj, o, at->w_proj, ENG_F32, at->b_proj, P, C, C, d->err)))
        return st;
    vae_hwc_add_to_chw(d->rt, X, pj, C, P);
    return ENG_OK;
}

/* x (C, window) -> conv3x3(nearest_2x(x)) (C/2, window at twice the resolution, shrunk by
 * one pixel); the third region takes the phase outputs (vae_upconv_run). */
static eng_status upsample(dec *d, const vae_upconv *c) {
    const int out = (d->cur + 1) % 3, spare = (d->cur + 2) % 3;
    const win wi = d->w;
    d->H *= 2, d->W *= 2;
    const win v = {2 * wi.y0, 2 * wi.y1, 2 * wi.x0, 2 * wi.x1};
    const win wo = shrink(v, d->H, d->W);
    vae_conv_io io = {.x = d->reg[d->cur], .hi = win_h(wi), .wi = win_w(wi), .up = 1,
                      .y = d->reg[out], .ho = win_h(wo), .wo = win_w(wo), .oy = wo.y0 - v.y0,
                      .ox = wo.x0 - v.x0, .accumulate = 0, .pad_planes = 1};
    eng_status st = vae_upconv_run(d->rt, c, &io, d->reg[spare], d->err);
    if (st != ENG_OK) return st;
    d->cur = out;
    d->C = c->cout;
    d->w = wo;
    return ENG_OK;
}

/* norm_out -> SiLU -> conv_out; the core (output pixels [cy0, cy1) x [cx0, cx1)) is clamped to
 * [-1, 1] (NaN passes through, as torch.clamp) into rgb (out_channels, H, W). */
static eng_status head(dec *d, float *rgb, int64_t cy0, int64_t cy1, int64_t cx0, int64_t cx1) {
    const vae_model *m = d->m;
    const int a = d->cur;
    float *X = d->reg[a], *T = d->reg[(a + 1) % 3], *U = d->reg[(a + 2) % 3];
    const win wf = shrink(d->w, d->H, d->W);
    if (wf.y0 > cy0 || wf.y1 < cy1 || wf.x0 > cx0 || wf.x1 < cx1)
        return eng_err_set(d->err, ENG_ERR_INVALID_ARG,
                           "VAE: internal error: the tile window misses its core");
    vae_channel_norm(d->rt, T, X, d->C, win_area(d->w), m->g_out, 1);
    eng_status st = conv(d, &m->conv_out, T, d->w, 0, U, wf, 0);
    if (st != ENG_OK) return st;
    const int64_t ww = win_w(wf), plane = win_area(wf);
    for (int64_t ch = 0; ch < m->conv_out.cout; ch++)
        for (int64_t y = cy0; y < cy1; y++) {
            const float *src = U + ch * plane + (y - wf.y0) * ww + (cx0 - wf.x0);
            float *dst = rgb + (ch * d->H + y) * d->W + cx0;
            for (int64_t x = 0; x < cx1 - cx0; x++) {
                const float v = src[x];
                dst[x] = v < -1.0f ? -1.0f : v > 1.0f ? 1.0f : v;
            }
        }
    return ENG_OK;
}

eng_status vae_decode(eng_runtime *rt, const vae_model *m, const float *latents, int64_t h,
                      int64_t w, float *rgb, const vae_plan *plan, const eng_cancel *cancel,
                      eng_error *err) {
    const vae_config *c = &m->cfg;
    const int64_t S = h * w, Z = c->z_dim, C0 = c->dims[0], R = plan->region_floats;
    unsigned char *ws = eng_runtime_workspace(rt, ENG_WS_ACTIVATIONS, plan->arena_bytes, "VAE", err);
    if (!ws) return ENG_ERR_OOM;
    eng_arena ar = {.base = ws, .cap = plan->arena_bytes};  /* the runtime's kept workspace */
    eng_status st = ENG_OK;
    dec d = {.rt = rt, .m = m, .cancel = cancel, .err = err,
             .n_tiles = (int64_t)plan->ny * plan->nx};
    float *z = eng_arena_floats(&ar, round16(Z * S), "VAE latent", err);
    float *keep = eng_arena_floats(&ar, round16(C0 * S), "VAE mid-block output", err);
    for (int i = 0; i < 3; i++) d.reg[i] = eng_arena_floats(&ar, R, "VAE work region", err);
    if (!z || !keep || !d.reg[0] || !d.reg[1] || !d.reg[2]) {
        st = ENG_ERR_OOM;
        goto done;
    }

    /* mid phase, whole latent: un-normalise exactly as the pipeline (fp32: 1/std, then divide) */
    for (int64_t ch = 0; ch < Z; ch++) {
        const float inv = 1.0f / c->latents_std[ch], mean = c->latents_mean[ch];
        for (int64_t p = 0; p < S; p++) z[ch * S + p] = latents[ch * S + p] / inv + mean;
    }
    const win whole = {0, h, 0, w};
    d.H = h, d.W = w, d.w = whole;
    if ((st = poll(&d, "conv_in")) ||
        (st = conv(&d, &m->post_quant, z, whole, 0, d.reg[0], whole, 0)) ||
        (st = conv(&d, &m->conv_in, d.reg[0], whole, 0, d.reg[1], whole, 0)))
        goto done;
    d.cur = 1;
    d.C = C0;
    if ((st = poll(&d, "mid_block.resnets.0")) || (st = resblock(&d, &m->mid_res[0])) ||
        (st = poll(&d, "mid_block.attentions.0")) || (st = attention(&d, &m->attn)) ||
        (st = poll(&d, "mid_block.resnets.1")) || (st = resblock(&d, &m->mid_res[1])))
        goto done;
    memcpy(keep, d.reg[d.cur], (size_t)(C0 * S) * sizeof(float));

    /* up path, tile by tile */
    const int64_t he = plan->tiled ? plan->overlap / 2 : 0, s = c->scale;
    for (int64_t ty = 0; ty < plan->ny; ty++)
        for (int64_t tx = 0; tx < plan->nx; tx++) {
            d.tile = ty * plan->nx + tx;
            int64_t cy0, cy1, cx0, cx1;
            win wt;
            tile_axis(h, plan->ny, he, ty, &cy0, &cy1, &wt.y0, &wt.y1);
            tile_axis(w, plan->nx, he, tx, &cx0, &cx1, &wt.x0, &wt.x1);
            if ((st = poll(&d, "the tile"))) goto done;
            vae_crop(rt, d.reg[0], keep, C0, h, w, win_h(wt), win_w(wt), wt.y0, wt.x0);
            d.cur = 0, d.C = C0, d.w = wt, d.H = h, d.W = w;
            for (int32_t i = 0; i < c->n_levels; i++) {
                const vae_up_block *u = &m->up[i];
                for (int32_t r = 0; r < u->n_res; r++)
                    if ((st = poll(&d, "up_blocks.%d.resnets.%d", i, r)) ||
                        (st = resblock(&d, &u->res[r])))
                        goto done;
                if (u->has_up && ((st = poll(&d, "up_blocks.%d.upsamplers.0", i)) ||
                                  (st = upsample(&d, &u->up))))
                    goto done;
            }
            if ((st = poll(&d, "norm_out / conv_out")) ||
                (st = head(&d, rgb, cy0 * s, cy1 * s, cx0 * s, cx1 * s)))
                goto done;
        }
done:
    return st;
}
