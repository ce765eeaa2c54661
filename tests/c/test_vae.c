/* test_vae.c - the VAE decoder's convolution driver and channel ops (vae_conv.c) against naive
 * double-precision references, on every ISA this CPU runs and several thread counts: random
 * shapes with channel counts off the micro-tile sizes, K above one K block, pixel counts above
 * one n-chunk and rows that are not a multiple of NR, 1x1 and 3x3 kernels, output windows at
 * an offset inside the input (tiled decoding), the virtual 2x upsample, and accumulation. */
#include <pthread.h>
#include <unistd.h>

#include "runtime.h"
#include "test_util.h"
#include "vae.h"


typedef struct conv_case {
    int cin, cout, ks, up;
    int hi, wi, ho, wo, oy, ox;
    int accumulate;
} conv_case;

/* y (cout, ho, wo) (+)= b + sum w (cout, cin, ks, ks) * v, v = x or its nearest 2x upsample */
static void conv_ref(const conv_case *c, const float *x, const float *w, const float *b,
                     const float *y0, double *y) {
    const int pad = (c->ks - 1) / 2, hv = c->up ? 2 * c->hi : c->hi, wv = c->up ? 2 * c->wi : c->wi;
    for (int o = 0; o < c->cout; o++)
        for (int Y = 0; Y < c->ho; Y++)
            for (int X = 0; X < c->wo; X++) {
                double s = b[o] + (c->accumulate ? y0[((int64_t)o * c->ho + Y) * c->wo + X] : 0.0);
                for (int ci = 0; ci < c->cin; ci++)
                    for (int ky = 0; ky < c->ks; ky++)
                        for (int kx = 0; kx < c->ks; kx++) {
                            const int vy = Y + c->oy + ky - pad, vx = X + c->ox + kx - pad;
                            if (vy < 0 || vy >= hv || vx < 0 || vx >= wv) continue;
                            const int sy = c->up ? vy / 2 : vy, sx = c->up ? vx / 2 : vx;
                            s += (double)w[((o * c->cin + ci) * c->ks + ky) * c->ks + kx] *
                                 x[((int64_t)ci * c->hi + sy) * c->wi + sx];
                        }
                y[((int64_t)o * c->ho + Y) * c->wo + X] = s;
            }
}

static void run_conv_case(eng_runtime *rt, const conv_case *c, test_rng *r, const char *label) {
    const int64_t nx = (int64_t)c->cin * c->hi * c->wi, ny = (int64_t)c->cout * c->ho * c->wo;
    const int64_t nw = (int64_t)c->cout * c->cin * c->ks * c->ks;
    float *x = test_alloc((size_t)nx * 4), *w = test_alloc((size_t)nw * 4);
    float *b = test_alloc((size_t)c->cout * 4), *y = test_alloc((size_t)ny * 4);
    float *y0 = test_alloc((size_t)ny * 4);
    double *ref = test_alloc((size_t)ny * 8);
    float *refs = test_alloc((size_t)ny * 4);
    test_fill(r, x, nx, 1.0f);
    test_fill(r, w, nw, 0.2f);
    test_fill(r, b, c->cout, 0.5f);
    test_fill(r, y0, ny, 1.0f);
    memcpy(y, y0, (size_t)ny * 4);
    const int mr = rt->kern.gemm_mr;
    float *packed = test_alloc((size_t)vae_conv_packed_floats(c->cin, c->cout, c->ks, mr) * 4);
    vae_conv conv;
    vae_conv_pack(&conv, c->cin, c->cout, c->ks, mr, w, b, packed);
    vae_conv_io io = {.x = x, .hi = c->hi, .wi = c->wi, .up = c->up, .y = y, .ho = c->ho,
                      .wo = c->wo, .oy = c->oy, .ox = c->ox, .accumulate = c->accumulate};
    eng_error err;
    eng_err_clear(&err);
    pthread_mutex_lock(&rt->lock);
    eng_status st = vae_conv_run(rt, &conv, &io, &err);
    pthread_mutex_unlock(&rt->lock);
    CHECK(st == ENG_OK, "%s: %s", label, err.message);
    conv_ref(c, x, w, b, y0, ref);
    for (int64_t i = 0; i < ny; i++) refs[i] = (float)ref[i];
    const double e = test_rel_err(y, refs, ny);
    CHECK(e < 2e-5,
          "%s isa=%s threads=%d cin=%d cout=%d ks=%d up=%d in=%dx%d out=%dx%d off=(%d,%d) "
          "acc=%d: rel err %.3g",
          label, rt->kern.name, rt->n_threads, c->cin, c->cout, c->ks, c->up, c->hi, c->wi, c->ho,
          c->wo, c->oy, c->ox, c->accumulate, e);
    eng_free(x), eng_free(w), eng_free(b), eng_free(y), eng_free(y0), eng_free(ref);
    eng_free(refs), eng_free(packed);
}

static void test_conv_random(void) {
    eng_isa isas[4];
    const int n_isa = test_simd_isas(isas);
    for (int ii = -1; ii < n_isa; ii++)
        for (int threads = 1; threads <= 3; threads += 2) {
            eng_runtime *rt = test_runtime(ii < 0 ? ENG_ISA_SCALAR : isas[ii], threads);
            test_rng r = {0x5eed0000ull + (uint64_t)(ii + 2) * 77 + (uint64_t)threads};
            for (int t = 0; t < 24; t++) {
                conv_case c;
                memset(&c, 0, sizeof c);
                c.ks = test_int(&r, 0, 3) ? 3 : 1;
                c.cin = (int)test_int(&r, 1, 40);
                c.cout = (int)test_int(&r, 1, 37);
                c.up = test_int(&r, 0, 2) == 0;
                c.hi = (int)test_int(&r, 1, 13);
                c.wi = (int)test_int(&r, 1, 45);
                const int hv = c.up ? 2 * c.hi : c.hi, wv = c.up ? 2 * c.wi : c.wi;
                c.oy = (int)test_int(&r, 0, hv > 2 ? 2 : hv - 1);
                c.ox = (int)test_int(&r, 0, wv > 2 ? 2 : wv - 1);
                c.ho = hv - c.oy - (int)test_int(&r, 0, 2);
                c.wo = wv - c.ox - (int)test_int(&r, 0, 2);
                if (c.ho < 1) c.ho = 1;
                if (c.wo < 1) c.wo = 1;
                c.accumulate = (int)test_int(&r, 0, 1);
                run_conv_case(rt, &c, &r, "random");
            }
            eng_runtime_free(rt);
        }
}

/* The upsamplers' conv by output phases (vae_upconv_run) against the 3x3 reference on the
 * virtual 2x upsample, with odd and even window offsets. */
static void run_upconv_case(eng_runtime *rt, const conv_case *c, test_rng *r) {
    const int64_t nx = (int64_t)c->cin * c->hi * c->wi, ny = (int64_t)c->cout * c->ho * c->wo;
    const int64_t nw = (int64_t)c->cout * c->cin * 9;
    const int mr = rt->kern.gemm_mr;
    const int64_t ntmp = (int64_t)((c->cout + mr - 1) / mr * mr) * c->ho * c->wo;
    float *x = test_alloc((size_t)nx * 4), *w = test_alloc((size_t)nw * 4);
    float *b = test_alloc((size_t)c->cout * 4), *y = test_alloc((size_t)ny * 4);
    float *tmp = test_alloc((size_t)ntmp * 4), *refs = test_alloc((size_t)ny * 4);
    float *scratch = test_alloc((size_t)c->cout * c->cin * 4 * 4);
    double *ref = test_alloc((size_t)ny * 8);
    test_fill(r, x, nx, 1.0f);
    test_fill(r, w, nw, 0.2f);
    test_fill(r, b, c->cout, 0.5f);
    float *packed = test_alloc((size_t)vae_upconv_packed_floats(c->cin, c->cout, mr) * 4);
    vae_upconv u;
    vae_upconv_pack(&u, c->cin, c->cout, mr, w, b, scratch, packed);
    vae_conv_io io = {.x = x, .hi = c->hi, .wi = c->wi, .up = 1, .y = y, .ho = c->ho,
                      .wo = c->wo, .oy = c->oy, .ox = c->ox, .pad_planes = 1};
    /* y gets pad planes too: give it the room */
    eng_free(y);
    y = test_alloc((size_t)ntmp * 4);
    io.y = y;
    eng_error err;
    eng_err_clear(&err);
    pthread_mutex_lock(&rt->lock);
    eng_status st = vae_upconv_run(rt, &u, &io, tmp, &err);
    pthread_mutex_unlock(&rt->lock);
    CHECK(st == ENG_OK, "upconv: %s", err.message);
    conv_ref(c, x, w, b, NULL, ref);
    for (int64_t i = 0; i < ny; i++) refs[i] = (float)ref[i];
    const double e = test_rel_err(y, refs, ny);
    CHECK(e < 2e-5, "upconv isa=%s threads=%d cin=%d cout=%d in=%dx%d out=%dx%d off=(%d,%d): "
          "rel err %.3g", rt->kern.name, rt->n_threads, c->cin, c->cout, c->hi, c->wi, c->ho,
          c->wo, c->oy, c->ox, e);
    eng_free(x), eng_free(w), eng_free(b), eng_free(y), eng_free(tmp), eng_free(refs);
    eng_free(scratch), eng_free(ref), eng_free(packed);
}

static void test_upconv(void) {
    eng_isa isas[4];
    const int n_isa = test_simd_isas(isas);
    for (int ii = -1; ii < n_isa; ii++)
        for (int threads = 1; threads <= 2; threads++) {
            eng_runtime *rt = test_runtime(ii < 0 ? ENG_ISA_SCALAR : isas[ii], threads);
            test_rng r = {0x0c0ffeeull + (uint64_t)(ii + 2) * 31 + (uint64_t)threads};
            for (int t = 0; t < 20; t++) {
                conv_case c;
                memset(&c, 0, sizeof c);
                c.ks = 3;
                c.up = 1;
                c.cin = (int)test_int(&r, 1, 40);
                c.cout = (int)test_int(&r, 1, 37);
                c.hi = (int)test_int(&r, 1, 12);
                c.wi = (int)test_int(&r, 1, 40);
                c.oy = (int)test_int(&r, 0, 2 * c.hi > 2 ? 2 : 2 * c.hi - 1);
                c.ox = (int)test_int(&r, 0, 2 * c.wi > 2 ? 2 : 2 * c.wi - 1);
                c.ho = 2 * c.hi - c.oy - (int)test_int(&r, 0, 2);
                c.wo = 2 * c.wi - c.ox - (int)test_int(&r, 0, 2);
                if (c.ho < 1) c.ho = 1;
                if (c.wo < 1) c.wo = 1;
                run_upconv_case(rt, &c, &r);
            }
            const conv_case big = {40, 70, 3, 1, 17, 40, 32, 78, 1, 1, 0}; /* rows > NR, K > KC */
            run_upconv_case(rt, &big, &r);
            eng_runtime_free(rt);
        }
}

/* Shapes that cross the driver's blocking: K > one K block, > one n-chunk of pixels, a row
 * width that is a multiple of NR (the hot path), a single pixel. */
static void test_conv_blocking(void) {
    const conv_case cases[] = {
        {40, 20, 3, 0, 40, 64, 40, 64, 0, 0, 0},  /* K = 360 > 252, 2560 pixels, rows of 64 */
        {300, 16, 1, 0, 9, 7, 9, 7, 0, 0, 1},     /* 1x1, K = 300 > 256, accumulate */
        {16, 70, 3, 1, 17, 32, 32, 62, 1, 1, 0},  /* upsample, windows shrunk on every side */
        {5, 3, 3, 0, 1, 1, 1, 1, 0, 0, 0},        /* one pixel */
        {24, 31, 3, 0, 2, 96, 2, 96, 0, 0, 1},    /* rows of 3 x NR, few pixels per thread */
    };
    eng_isa isas[4];
    const int n_isa = test_simd_isas(isas);
    for (int ii = -1; ii < n_isa; ii++) {
        eng_runtime *rt = test_runtime(ii < 0 ? ENG_ISA_SCALAR : isas[ii], 2);
        test_rng r = {0xb10c4ull + (uint64_t)ii};
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            run_conv_case(rt, &cases[i], &r, "blocking");
        eng_runtime_free(rt);
    }
}

static void test_channel_norm(void) {
    eng_isa isas[4];
    const int n_isa = test_simd_isas(isas);
    for (int ii = -1; ii < n_isa; ii++) {
        eng_runtime *rt = test_runtime(ii < 0 ? ENG_ISA_SCALAR : isas[ii], 2);
        test_rng r = {0x40e3ull + (uint64_t)ii};
        const int64_t shapes[][2] = {{1, 1}, {3, 700}, {96, 257}, {384, 64}};
        for (size_t s = 0; s < 4; s++)
            for (int silu = 0; silu <= 1; silu++) {
                const int64_t C = shapes[s][0], P = shapes[s][1];
                float *x = test_alloc((size_t)(C * P) * 4), *y = test_alloc((size_t)(C * P) * 4);
                float *g = test_alloc((size_t)C * 4), *ref = test_alloc((size_t)(C * P) * 4);
                test_fill(&r, x, C * P, 2.0f);
                test_fill(&r, g, C, 1.0f);
                if (s == 1)
                    for (int64_t c = 0; c < C; c++) x[c * P + 5] = 0.0f; /* zero pixel: eps */
                for (int64_t p = 0; p < P; p++) {
                    double ss = 0;
                    for (int64_t c = 0; c < C; c++) ss += (double)x[c * P + p] * x[c * P + p];
                    double n = sqrt(ss) > 1e-12 ? sqrt(ss) : 1e-12;
                    for (int64_t c = 0; c < C; c++) {
                        double v = x[c * P + p] / n * sqrt((double)C) * g[c];
                        if (silu) v = v / (1.0 + exp(-v));
                        ref[c * P + p] = (float)v;
                    }
                }
                pthread_mutex_lock(&rt->lock);
                vae_channel_norm(rt, y, x, C, P, g, silu);
                pthread_mutex_unlock(&rt->lock);
                const double e = test_max_abs(y, ref, C * P);
                CHECK(e < 1e-5 * sqrt((double)C) * 4, "isa=%s C=%lld P=%lld silu=%d: max err %.3g",
                      rt->kern.name, (long long)C, (long long)P, silu, e);
                eng_free(x), eng_free(y), eng_free(g), eng_free(ref);
            }
        eng_runtime_free(rt);
    }
}

/* ---- the whole decoder through the public API on a tiny random VAE written here -------- */

typedef struct st_writer {
    char names[160][96];
    int64_t shapes[160][5];
    int ndims[160];
    int n;
} st_writer;

static void st_add(st_writer *s, const char *name, int nd, int64_t a, int64_t b, int64_t c,
                   int64_t d, int64_t e) {
    snprintf(s->names[s->n], sizeof s->names[0], "%s", name);
    const int64_t v[5] = {a, b, c, d, e};
    memcpy(s->shapes[s->n], v, sizeof v);
    s->ndims[s->n++] = nd;
}

static void st_conv(st_writer *s, const char *p, int64_t o, int64_t i, int k3d, int ks) {
    char n[96];
    snprintf(n, sizeof n, "%s.weight", p);
    if (k3d) st_add(s, n, 5, o, i, ks, ks, ks);
    else st_add(s, n, 4, o, i, ks, ks, 0);
    snprintf(n, sizeof n, "%s.bias", p);
    st_add(s, n, 1, o, 0, 0, 0, 0);
}

static void st_res(st_writer *s, const char *p, int64_t i, int64_t o) {
    char n[96];
    snprintf(n, sizeof n, "%s.norm1.gamma", p);
    st_add(s, n, 4, i, 1, 1, 1, 0);
    snprintf(n, sizeof n, "%s.conv1", p);
    st_conv(s, n, o, i, 1, 3);
    snprintf(n, sizeof n, "%s.norm2.gamma", p);
    st_add(s, n, 4, o, 1, 1, 1, 0);
    snprintf(n, sizeof n, "%s.conv2", p);
    st_conv(s, n, o, o, 1, 3);
    if (i != o) {
        snprintf(n, sizeof n, "%s.conv_shortcut", p);
        st_conv(s, n, o, i, 1, 1);
    }
}

/* dir/vae/: base_dim 4, z_dim 4, dim_mult [1, 2], num_res_blocks 1 (widths [8, 8, 4]). */
static int write_tiny_vae(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "mkdir -p '%s/vae'", dir);
    if (system(path) != 0) return 0;
    st_writer *s = calloc(1, sizeof *s);
    st_conv(s, "post_quant_conv", 4, 4, 1, 1);
    st_conv(s, "decoder.conv_in", 8, 4, 1, 3);
    st_res(s, "decoder.mid_block.resnets.0", 8, 8);
    st_add(s, "decoder.mid_block.attentions.0.norm.gamma", 3, 8, 1, 1, 0, 0);
    st_conv(s, "decoder.mid_block.attentions.0.to_qkv", 24, 8, 0, 1);
    st_conv(s, "decoder.mid_block.attentions.0.proj", 8, 8, 0, 1);
    st_res(s, "decoder.mid_block.resnets.1", 8, 8);
    st_res(s, "decoder.up_blocks.0.resnets.0", 8, 8);
    st_res(s, "decoder.up_blocks.0.resnets.1", 8, 8);
    st_conv(s, "decoder.up_blocks.0.upsamplers.0.resample.1", 4, 8, 0, 3);
    st_res(s, "decoder.up_blocks.1.resnets.0", 4, 4);
    st_res(s, "decoder.up_blocks.1.resnets.1", 4, 4);
    st_add(s, "decoder.norm_out.gamma", 4, 4, 1, 1, 1, 0);
    st_conv(s, "decoder.conv_out", 3, 4, 1, 3);
    /* header */
    char *hdr = calloc(1, 65536);
    size_t hl = 0, off = 0;
    hl += (size_t)snprintf(hdr + hl, 65536 - hl, "{");
    for (int t = 0; t < s->n; t++) {
        int64_t numel = 1;
        hl += (size_t)snprintf(hdr + hl, 65536 - hl, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[",
                               t ? "," : "", s->names[t]);
        for (int d = 0; d < s->ndims[t]; d++) {
            numel *= s->shapes[t][d];
            hl += (size_t)snprintf(hdr + hl, 65536 - hl, "%s%lld", d ? "," : "",
                                   (long long)s->shapes[t][d]);
        }
        hl += (size_t)snprintf(hdr + hl, 65536 - hl, "],\"data_offsets\":[%zu,%zu]}", off,
                               off + (size_t)numel * 4);
        off += (size_t)numel * 4;
    }
    hl += (size_t)snprintf(hdr + hl, 65536 - hl, "}");
    while (hl % 8) hdr[hl++] = ' ';
    snprintf(path, sizeof path, "%s/vae/diffusion_pytorch_model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    uint64_t n8 = hl;
    fwrite(&n8, 8, 1, f);
    fwrite(hdr, 1, hl, f);
    test_rng r = {0x7a11ull};
    for (int t = 0; t < s->n; t++) {
        int64_t numel = 1, fan_in = 1;
        for (int d = 0; d < s->ndims[t]; d++) numel *= s->shapes[t][d];
        for (int d = 1; d < s->ndims[t]; d++) fan_in *= s->shapes[t][d];
        const int gamma = strstr(s->names[t], "gamma") != NULL;
        for (int64_t i = 0; i < numel; i++) {
            float v = gamma ? 1.0f + 0.2f * test_uniform(&r)
                            : test_uniform(&r) / sqrtf((float)(fan_in > 1 ? fan_in : 20));
            fwrite(&v, 4, 1, f);
        }
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/vae/config.json", dir);
    f = fopen(path, "w");
    if (!f) return 0;
    fprintf(f, "{\"_class_name\": \"AutoencoderKLQwenImage\", \"base_dim\": 4, \"z_dim\": 4, "
               "\"dim_mult\": [1, 2], \"num_res_blocks\": 1, \"attn_scales\": [], "
               "\"temperal_downsample\": [false], \"latents_mean\": [0.1, -0.2, 0.3, 0.0], "
               "\"latents_std\": [1.5, 0.5, 2.0, 1.0]}");
    fclose(f);
    free(hdr);
    free(s);
    return 1;
}

static void test_decode_api(void) {
    const char *tmp = getenv("ENG_TEST_TMP");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/vae_tiny_%d", tmp && tmp[0] ? tmp : "/tmp", (int)getpid());
    if (!write_tiny_vae(dir)) {
        CHECK(0, "cannot write %s", dir);
        return;
    }
    eng_runtime *rt = test_runtime(ENG_ISA_AUTO, 2);
    eng_model *m = NULL;
    eng_error err;
    eng_err_clear(&err);
    CHECK(eng_model_open(rt, dir, &m, &err) == ENG_OK, "%s", err.message);
    if (!m) return;
    eng_vae_info info;
    CHECK(eng_vae_get_info(m, &info, &err) == ENG_OK, "%s", err.message);
    CHECK(info.scale == 2 && info.z_dim == 4 && info.halo == 7, "scale %d z %d halo %d", info.scale,
          info.z_dim, info.halo);
    const int h = 21, w = 17, n_out = 3 * 2 * h * 2 * w;
    float *lat = test_alloc((size_t)(4 * h * w) * 4);
    float *a = test_alloc((size_t)n_out * 4), *b = test_alloc((size_t)n_out * 4);
    test_rng r = {0xdec0deull};
    test_fill(&r, lat, 4 * h * w, 2.0f);
    eng_vae_options o = eng_vae_options_default();
    eng_err_clear(&err);
    CHECK(eng_vae_decode(m, lat, 4, h, w, a, (size_t)n_out * 4, &o, NULL, &err) == ENG_OK, "%s",
          err.message);
    int in_range = 1;
    for (int i = 0; i < n_out; i++) in_range &= a[i] >= -1.0f && a[i] <= 1.0f;
    CHECK(in_range, "output outside [-1, 1]");
    const int tiles[] = {15, 16};
    for (int t = 0; t < 2; t++) {
        o.tiling = 1;
        o.tile = tiles[t];
        eng_vae_plan p;
        CHECK(eng_vae_plan_decode(m, h, w, &o, &p, &err) == ENG_OK, "%s", err.message);
        CHECK(p.tiled && p.n_tiles_y > 1 && p.n_tiles_x > 1, "tile %d: %dx%d tiles", tiles[t],
              p.n_tiles_y, p.n_tiles_x);
        eng_err_clear(&err);
        CHECK(eng_vae_decode(m, lat, 4, h, w, b, (size_t)n_out * 4, &o, NULL, &err) == ENG_OK,
              "%s", err.message);
        CHECK(test_max_abs(b, a, n_out) <= 1e-6, "tile %d: tiled differs by %.3g", tiles[t],
              test_max_abs(b, a, n_out));
    }
    /* errors */
    o = eng_vae_options_default();
    eng_err_clear(&err);
    const size_t nb = (size_t)n_out * 4;
    CHECK(eng_vae_decode(m, lat, 16, h, w, a, nb, &o, NULL, &err) == ENG_ERR_INVALID_ARG,
          "z_dim mismatch: %s", err.message);
    eng_err_clear(&err);
    CHECK(eng_vae_decode(m, lat, 4, h, w, a, nb - 4, &o, NULL, &err) == ENG_ERR_INVALID_ARG,
          "small rgb: %s", err.message);
    o.tiling = 3;
    eng_err_clear(&err);
    CHECK(eng_vae_decode(m, lat, 4, h, w, a, nb, &o, NULL, &err) == ENG_ERR_INVALID_ARG,
          "bad tiling: %s", err.message);
    o = eng_vae_options_default();
    eng_cancel *c = eng_cancel_create();
    eng_cancel_request(c);
    eng_request req = {.cancel = c};
    eng_err_clear(&err);
    CHECK(eng_vae_decode(m, lat, 4, h, w, a, nb, &o, &req, &err) == ENG_ERR_CANCELLED,
          "cancel: %s", err.message);
    eng_cancel_free(c);
    eng_model_free(m);
    eng_runtime_free(rt);
    eng_free(lat), eng_free(a), eng_free(b);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup %s", dir);
}

/* The formula eng_to_rgb8 implements, written step by step: volatile stores round every
 * intermediate to float (no contraction), nearbyintf rounds ties to even. */
static uint8_t ref_u8(float x) {
    volatile float v = x * 0.5f;
    v = v + 0.5f;
    float c = v;
    if (!(c > 0.0f)) c = 0.0f; /* and NaN -> 0 */
    if (c > 1.0f) c = 1.0f;
    volatile float y = c * 255.0f;
    return (uint8_t)nearbyintf(y);
}

static void test_to_rgb8(void) {
    enum { N_SPECIAL = 8 };
    const float special[N_SPECIAL] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e30f, -1e30f, 1.0f};
    test_rng r = {0x5eed};
    const int64_t shapes[][3] = {{3, 5, 1100}, {1, 7, 5}, {4, 3, 9}, {3, 1, 1}, {2, 17, 513}};
    for (int threads = 1; threads <= 2; threads++) {
        eng_runtime *rt = test_runtime(ENG_ISA_AUTO, threads);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int64_t c = shapes[s][0], h = shapes[s][1], w = shapes[s][2], n = c * h * w;
            float *x = malloc((size_t)n * sizeof *x);    /* (c, h, w) */
            uint8_t *out = malloc((size_t)n);            /* (h, w, c) */
            for (int64_t i = 0; i < n; i++) {
                const int64_t kind = test_int(&r, 0, 9);
                if (kind < 5) {
                    x[i] = test_uniform(&r) * 1.2f;
                } else if (kind < 9) { /* a tie of v * 255 (k + 0.5) or a float next to one */
                    const float v = ((float)test_int(&r, 0, 254) + 0.5f) / 255.0f;
                    float t = v * 2.0f - 1.0f;
                    for (int64_t step = test_int(&r, -2, 2); step; step += step < 0 ? 1 : -1)
                        t = nextafterf(t, step < 0 ? -2.0f : 2.0f);
                    x[i] = t;
                } else {
                    x[i] = special[test_int(&r, 0, N_SPECIAL - 1)];
                }
            }
            eng_error err;
            eng_err_clear(&err);
            CHECK(eng_to_rgb8(rt, x, c, h, w, out, (size_t)n, &err) == ENG_OK, "%s", err.message);
            int64_t bad = 0, first = -1;
            for (int64_t ch = 0; ch < c; ch++)
                for (int64_t p = 0; p < h * w; p++)
                    if (out[p * c + ch] != ref_u8(x[ch * h * w + p]) && !bad++) first = ch * h * w + p;
            CHECK(bad == 0, "threads=%d shape (%lld,%lld,%lld): %lld differ, first x=%.9g", threads,
                  (long long)c, (long long)h, (long long)w, (long long)bad,
                  first >= 0 ? (double)x[first] : 0.0);
            free(x);
            free(out);
        }
        float x1[3] = {0};
        uint8_t o1[3];
        eng_error err;
        eng_err_clear(&err);
        CHECK(eng_to_rgb8(rt, x1, 5, 1, 1, o1, 5, &err) == ENG_ERR_INVALID_ARG, "c=5 accepted");
        CHECK(eng_to_rgb8(rt, x1, 3, 1, 1, o1, 2, &err) == ENG_ERR_INVALID_ARG, "small out");
        CHECK(eng_to_rgb8(rt, NULL, 3, 1, 1, o1, 3, &err) == ENG_ERR_INVALID_ARG, "NULL x");
        CHECK(eng_to_rgb8(NULL, x1, 3, 1, 1, o1, 3, &err) == ENG_ERR_INVALID_ARG, "NULL runtime");
        eng_runtime_free(rt);
    }
}

/* eng_project_rgb8: the per-pixel map in the kernel's float order (b, then each x_i m_i
 * rounded and added in turn), then ref_u8; exact. Spans of 512 pixels, rows on the pool. */
static void test_project_rgb8(void) {
    test_rng r = {0xb1e55};
    const int64_t shapes[][4] = {{16, 5, 1100, 3}, {1, 1, 1, 1}, {16, 3, 9, 4}, {40, 2, 513, 2},
                                 {16, 9, 17, 3}};
    for (int threads = 1; threads <= 2; threads++) {
        eng_runtime *rt = test_runtime(ENG_ISA_AUTO, threads);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int64_t cin = shapes[s][0], h = shapes[s][1], w = shapes[s][2], c = shapes[s][3];
            const int64_t plane = h * w;
            float *x = malloc((size_t)(cin * plane) * sizeof *x); /* (cin, h, w) */
            float *m = malloc((size_t)(cin * c) * sizeof *m);     /* (cin, c) */
            float b[4];                                            /* (c) */
            uint8_t *out = malloc((size_t)(plane * c));           /* (h, w, c) */
            for (int64_t i = 0; i < cin * plane; i++) x[i] = test_uniform(&r) * 3.0f;
            for (int64_t i = 0; i < cin * c; i++) m[i] = test_uniform(&r) * 0.4f;
            for (int64_t i = 0; i < c; i++) b[i] = test_uniform(&r) * 0.3f;
            eng_error err;
            eng_err_clear(&err);
            CHECK(eng_project_rgb8(rt, x, cin, h, w, m, b, c, out, (size_t)(plane * c), &err) ==
                      ENG_OK, "%s", err.message);
            int64_t bad = 0;
            for (int64_t p = 0; p < plane; p++)
                for (int64_t ch = 0; ch < c; ch++) {
                    float acc = b[ch];
                    for (int64_t i = 0; i < cin; i++) {
                        volatile float prod = x[i * plane + p] * m[i * c + ch];
                        acc += prod;
                    }
                    bad += out[p * c + ch] != ref_u8(acc);
                }
            CHECK(bad == 0, "threads=%d x (%lld,%lld,%lld) -> %lld channels: %lld differ", threads,
                  (long long)cin, (long long)h, (long long)w, (long long)c, (long long)bad);
            free(x);
            free(m);
            free(out);
        }
        float x1[4] = {0}, m1[8] = {0}, b1[4] = {0};
        uint8_t o1[4];
        eng_error err;
        eng_err_clear(&err);
        CHECK(eng_project_rgb8(rt, x1, 2, 1, 1, m1, b1, 5, o1, 5, &err) == ENG_ERR_INVALID_ARG,
              "5 output channels accepted");
        CHECK(eng_project_rgb8(rt, x1, 0, 1, 1, m1, b1, 3, o1, 3, &err) == ENG_ERR_INVALID_ARG,
              "0 input channels accepted");
        CHECK(eng_project_rgb8(rt, x1, 2, 1, 1, m1, b1, 3, o1, 2, &err) == ENG_ERR_INVALID_ARG,
              "small out accepted");
        CHECK(eng_project_rgb8(rt, x1, 2, 1, 1, NULL, b1, 3, o1, 3, &err) == ENG_ERR_INVALID_ARG,
              "NULL m accepted");
        CHECK(eng_project_rgb8(NULL, x1, 2, 1, 1, m1, b1, 3, o1, 3, &err) == ENG_ERR_INVALID_ARG,
              "NULL runtime accepted");
        eng_runtime_free(rt);
    }
}

int main(void) {
    RUN(test_to_rgb8);
    RUN(test_project_rgb8);
    RUN(test_conv_random);
    RUN(test_conv_blocking);
    RUN(test_upconv);
    RUN(test_channel_norm);
    RUN(test_decode_api);
    return test_finish("test_vae");
}
