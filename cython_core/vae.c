/* vae.c - Qwen-Image VAE decoder: config, weights and the public API (engine.h "VAE decoder").
 * Reference: diffusers AutoencoderKLQwenImage (models/autoencoders/autoencoder_kl_qwenimage.py,
 * diffusers 0.42) and shared/reference/qwen-image-spec.md section 2. The forward pass and the
 * tiling live in vae_tile.c, the convolution driver in vae_conv.c.
 *
 * Loading reads vae/config.json (base_dim, z_dim, dim_mult, num_res_blocks, attn_scales,
 * temperal_downsample, input_channels, latents_mean/std) and only the decoder's tensors of
 * vae/diffusion_pytorch_model.safetensors (post_quant_conv.*, decoder.*): the encoder, quant_conv
 * and the unused time_conv weights are never touched, so their pages are never read. Weights
 * (f32, bf16 or f16) are converted to f32 once and packed into the GEMM micro-kernel's panel
 * layout (vae.h vae_conv; the upsamplers' convs as their four 2x2 output phases, vae_upconv);
 * the file's pages are dropped tensor by tensor and the file is unmapped at the end. A
 * CausalConv3d with kernel 3 keeps only its last temporal tap W[:, :, 2]: for one frame with an
 * empty cache the first two taps see the causal zero padding. attn_scales is parsed and
 * ignored, as diffusers' decoder ignores it (its up blocks have no attention). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model.h"
#include "safetensors.h"
#include "vae.h"

static const double default_mean[16] = {-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653,
                                        -0.1517, 1.5508,  0.4134,  -0.0715, 0.5517,  -0.3632,
                                        -0.1922, -0.9497, 0.2503,  -0.2921};
static const double default_std[16] = {2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708,
                                       2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579,
                                       1.6382, 1.1253, 2.8251, 1.9160};

/* ---- config -------------------------------------------------------------------------- */

/* A JSON array member (absent or null: *arr = NULL). */
static eng_status cfg_array(const json_value *root, const char *key, const json_value **arr,
                            const char *path, eng_error *err) {
    const json_value *v = json_get(root, key);
    *arr = NULL;
    if (!v || v->type == JSON_NULL) return ENG_OK;
    if (v->type != JSON_ARRAY)
        return eng_err_set(err, ENG_ERR_FORMAT, "'%s': %s must be a list, got %s", path, key,
                           json_type_name(v->type));
    *arr = v;
    return ENG_OK;
}

static eng_status cfg_floats(const json_value *root, const char *key, int32_t n,
                             const double *def, float *out, const char *path, eng_error *err) {
    const json_value *arr;
    eng_status st = cfg_array(root, key, &arr, path, err);
    if (st != ENG_OK) return st;
    if (!arr) {
        if (!def)
            return eng_err_set(err, ENG_ERR_FORMAT, "'%s': missing %s (needed for z_dim = %d)",
                               path, key, n);
        for (int32_t i = 0; i < n; i++) out[i] = (float)def[i];
        return ENG_OK;
    }
    if ((int64_t)json_len(arr) != n)
        return eng_err_set(err, ENG_ERR_FORMAT, "'%s': %s has %zu values, z_dim is %d", path, key,
                           json_len(arr), n);
    for (int32_t i = 0; i < n; i++) {
        double d;
        if ((st = json_as_double(json_at(arr, (size_t)i), key, &d, err)))
            return eng_err_prefix(err, "'%s'", path);
        out[i] = (float)d; /* torch.tensor(list) rounds the Python floats to fp32 */
    }
    return ENG_OK;
}

static eng_status load_config(const char *dir, vae_config *c, eng_error *err) {
    char path[ENG_PATH_CAP];
    json_value *root = NULL;
    eng_status st = eng_join_path(path, sizeof path, dir, "config.json", err);
    if (st == ENG_OK) st = eng_read_json(path, &root, err);
    if (st != ENG_OK) return st;
    memset(c, 0, sizeof *c);
    const json_value *cls = json_get(root, "_class_name");
    if (cls && cls->type == JSON_STRING && strcmp(cls->u.string, "AutoencoderKLQwenImage") != 0) {
        st = eng_err_set(err, ENG_ERR_UNSUPPORTED,
                         "'%s': _class_name '%s' is not AutoencoderKLQwenImage", path,
                         cls->u.string);
        goto done;
    }
    if ((st = json_get_int32_in(root, "base_dim", 96, 1, VAE_MAX_CH, &c->base_dim, path, err)) ||
        (st = json_get_int32_in(root, "z_dim", 16, 1, VAE_MAX_Z, &c->z_dim, path, err)) ||
        (st = json_get_int32_in(root, "num_res_blocks", 2, 0, VAE_MAX_RES, &c->n_res, path, err)) ||
        (st = json_get_int32_in(root, "input_channels", 3, 1, 64, &c->out_channels, path, err)))
        goto done;
    const json_value *arr;
    if ((st = cfg_array(root, "dim_mult", &arr, path, err))) goto done;
    if (!arr) {
        static const int32_t def_mult[4] = {1, 2, 4, 4};
        c->n_levels = 4;
        memcpy(c->dim_mult, def_mult, sizeof def_mult);
    } else {
        if (json_len(arr) < 1 || json_len(arr) > VAE_MAX_LEVELS) {
            st = eng_err_set(err, ENG_ERR_FORMAT,
                             "'%s': dim_mult has %zu entries (1..%d supported)", path,
                             json_len(arr), VAE_MAX_LEVELS);
            goto done;
        }
        c->n_levels = (int32_t)json_len(arr);
        for (int32_t i = 0; i < c->n_levels; i++) {
            int64_t v;
            if ((st = json_as_int64(json_at(arr, (size_t)i), "dim_mult", &v, err))) {
                eng_err_prefix(err, "'%s'", path);
                goto done;
            }
            if (v < 1 || v > VAE_MAX_CH / c->base_dim) { /* no overflow: base_dim >= 1 */
                st = eng_err_set(err, ENG_ERR_FORMAT, "'%s': dim_mult[%d] = %lld out of range",
                                 path, i, (long long)v);
                goto done;
            }
            c->dim_mult[i] = (int32_t)v;
        }
    }
    /* temperal_downsample: one flag per downsampling level; the decoder's spatial factor is
     * 2^(len(dim_mult) - 1) and the pipeline's is 2^len(temperal_downsample): they must agree */
    if ((st = cfg_array(root, "temperal_downsample", &arr, path, err))) goto done;
    int64_t n_td = arr ? (int64_t)json_len(arr) : 3;
    if (n_td != c->n_levels - 1) {
        st = eng_err_set(err, ENG_ERR_FORMAT,
                         "'%s': temperal_downsample has %lld entries, dim_mult %d (expected %d)",
                         path, (long long)n_td, c->n_levels, c->n_levels - 1);
        goto done;
    }
    for (int64_t i = 0; arr && i < n_td; i++) {
        bool b;
        if ((st = json_as_bool(json_at(arr, (size_t)i), "temperal_downsample", &b, err))) {
            eng_err_prefix(err, "'%s'", path);
            goto done;
        }
    }
    if ((st = cfg_array(root, "attn_scales", &arr, path, err))) goto done;
    c->n_attn_scales = arr ? (int32_t)json_len(arr) : 0;
    bool residual = false;
    if ((st = json_get_bool_or(root, "is_residual", false, &residual, err))) {
        eng_err_prefix(err, "'%s'", path);
        goto done;
    }
    if (residual) {
        st = eng_err_set(err, ENG_ERR_UNSUPPORTED, "'%s': is_residual = true is not supported",
                         path);
        goto done;
    }
    const double *dm = c->z_dim == 16 ? default_mean : NULL;
    const double *ds = c->z_dim == 16 ? default_std : NULL;
    if ((st = cfg_floats(root, "latents_mean", c->z_dim, dm, c->latents_mean, path, err)) ||
        (st = cfg_floats(root, "latents_std", c->z_dim, ds, c->latents_std, path, err)))
        goto done;
    for (int32_t i = 0; i < c->z_dim; i++)
        if (c->latents_std[i] == 0.0f || !isfinite(c->latents_std[i]) ||
            !isfinite(c->latents_mean[i])) {
            st = eng_err_set(err, ENG_ERR_FORMAT,
                             "'%s': latents_std[%d] = %g / latents_mean[%d] = %g invalid", path, i,
                             (double)c->latents_std[i], i, (double)c->latents_mean[i]);
            goto done;
        }
    /* dims = base * [dim_mult[-1]] + base * dim_mult[::-1] */
    const int32_t L = c->n_levels;
    c->dims[0] = c->base_dim * c->dim_mult[L - 1];
    for (int32_t i = 0; i < L; i++) c->dims[i + 1] = c->base_dim * c->dim_mult[L - 1 - i];
    c->scale = 1 << (L - 1);
    for (int32_t i = 1; i < L; i++)
        if (c->dims[i] / 2 < 1) {
            st = eng_err_set(err, ENG_ERR_FORMAT, "'%s': decoder width %d cannot be halved",
                             path, c->dims[i]);
            goto done;
        }
done:
    json_free(root);
    return st;
}

/* Smallest halo (latent pixels) for which every conv of the up path can shrink its window by
 * one pixel per side and the last one still covers the tile's core: the receptive-field
 * radius of the up blocks + conv_out, rounded up (13 for the real config). */
static int32_t compute_halo(const vae_config *c) {
    for (int32_t H = 0; H < 4096; H++) {
        int64_t margin = H;
        bool ok = true;
        for (int32_t i = 0; i < c->n_levels && ok; i++) {
            margin -= 2 * (c->n_res + 1);
            if (i != c->n_levels - 1) margin = 2 * margin - 1; /* upsample, then its conv */
            ok = margin >= 0;
        }
        if (ok && margin - 1 >= 0) return H; /* conv_out */
    }
    return 4096;
}

/* ---- weights ------------------------------------------------------------------------- */

typedef enum conv_kind { CONV3D_K3, CONV3D_K1 } conv_kind;

typedef struct loader {
    const eng_weights *w;
    int32_t mr;
    float *pool;          /* NULL: dry run (check names and shapes, count floats) */
    size_t used;
    float *tmp;           /* f32 conversion buffer, tmp_cap floats */
    size_t tmp_cap;
    eng_dtype dtype;      /* of decoder.conv_in.weight */
    eng_error *err;
} loader;

static float *take(loader *ld, int64_t n) {
    float *p = ld->pool ? ld->pool + ld->used : NULL;
    ld->used += (size_t)(n + 15) / 16 * 16; /* keep every block 64-byte aligned */
    return p;
}

static eng_status ensure_tmp(loader *ld, int64_t n) {
    if ((size_t)n <= ld->tmp_cap) return ENG_OK;
    eng_free(ld->tmp);
    ld->tmp = eng_aligned_alloc((size_t)n * sizeof(float));
    ld->tmp_cap = ld->tmp ? (size_t)n : 0;
    if (!ld->tmp) return eng_err_set(ld->err, ENG_ERR_OOM, "VAE: out of memory converting weights");
    return ENG_OK;
}

/* Drops the file pages under [p, p + n) from this process (MADV_DONTNEED on the read-only
 * private mapping: they are re-read from the page cache if touched again), so loading never
 * holds more than one tensor of the file resident next to the packed copy. */
static void release_pages(const void *p, size_t n) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p / page * page, b = ((uintptr_t)p + n + page - 1) / page * page;
    if (page > 0 && b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

/* A tensor of exactly the given shape, converted to f32 into dst (n = numel floats). */
static eng_status read_f32(loader *ld, const char *name, int32_t ndim, const int64_t *shape,
                           float *dst) {
    eng_tensor t;
    eng_status st = weights_tensor_float(ld->w, name, ndim, shape, &t, ld->err);
    if (st != ENG_OK || !dst) return st;
    const int64_t n = eng_tensor_numel(&t);
    st = eng_convert_to_f32(dst, t.data, t.dtype, n, ld->err);
    release_pages(t.data, (size_t)n * eng_dtype_size(t.dtype));
    return st;
}

/* An RMS_norm gamma ([C,1,1,1], or [C,1,1] for the attention norm) into the pool. */
static eng_status load_gamma(loader *ld, const char *name, int32_t C, int images,
                             const float **out) {
    const int64_t shape[4] = {C, 1, 1, 1};
    float *dst = take(ld, C);
    *out = dst;
    return read_f32(ld, name, images ? 3 : 4, shape, dst);
}

static eng_status load_conv(loader *ld, const char *prefix, int32_t cin, int32_t cout,
                            conv_kind kind, vae_conv *c) {
    char wname[256], bname[256];
    snprintf(wname, sizeof wname, "%s.weight", prefix);
    snprintf(bname, sizeof bname, "%s.bias", prefix);
    const int32_t ks = kind == CONV3D_K1 ? 1 : 3;
    const int64_t s3[5] = {cout, cin, 3, 3, 3}, s1[5] = {cout, cin, 1, 1, 1}, sb[1] = {cout};
    const int64_t *shape = kind == CONV3D_K3 ? s3 : s1;
    const int32_t ndim = 5;
    const int64_t K = (int64_t)cin * ks * ks, numel = kind == CONV3D_K3 ? 3 * cout * K : cout * K;
    float *dst = take(ld, vae_conv_packed_floats(cin, cout, ks, ld->mr));
    if (!dst) { /* dry run: validate only */
        eng_status st = read_f32(ld, wname, ndim, shape, NULL);
        return st ? st : read_f32(ld, bname, 1, sb, NULL);
    }
    eng_status st = ensure_tmp(ld, numel + cout * K + cout);
    if (st != ENG_OK) return st;
    float *full = ld->tmp, *w2 = full + numel, *b = w2 + cout * K;
    if ((st = read_f32(ld, wname, ndim, shape, full)) || (st = read_f32(ld, bname, 1, sb, b)))
        return st;
    const float *w = full;
    if (kind == CONV3D_K3) { /* (cout, cin, kt, 3, 3): keep kt = 2 */
        for (int64_t oc = 0; oc < (int64_t)cout * cin; oc++)
            memcpy(w2 + oc * 9, full + oc * 27 + 18, 9 * sizeof(float));
        w = w2;
    }
    vae_conv_pack(c, cin, cout, ks, ld->mr, w, b, dst);
    return ENG_OK;
}

/* resample.1 of an upsampler: (cout, cin, 3, 3), packed as its four output phases. */
static eng_status load_upconv(loader *ld, const char *prefix, int32_t cin, int32_t cout,
                              vae_upconv *u) {
    char wname[256], bname[256];
    snprintf(wname, sizeof wname, "%s.weight", prefix);
    snprintf(bname, sizeof bname, "%s.bias", prefix);
    const int64_t shape[4] = {cout, cin, 3, 3}, sb[1] = {cout}, n = (int64_t)cout * cin;
    float *dst = take(ld, vae_upconv_packed_floats(cin, cout, ld->mr));
    if (!dst) {
        eng_status st = read_f32(ld, wname, 4, shape, NULL);
        return st ? st : read_f32(ld, bname, 1, sb, NULL);
    }
    eng_status st = ensure_tmp(ld, 9 * n + 4 * n + cout);
    if (st != ENG_OK) return st;
    float *w = ld->tmp, *scratch = w + 9 * n, *b = scratch + 4 * n;
    if ((st = read_f32(ld, wname, 4, shape, w)) || (st = read_f32(ld, bname, 1, sb, b))) return st;
    vae_upconv_pack(u, cin, cout, ld->mr, w, b, scratch, dst);
    return ENG_OK;
}

static eng_status load_resblock(loader *ld, const char *prefix, int32_t cin, int32_t cout,
                                vae_resblock *r) {
    char p[200];
    eng_status st;
    r->cin = cin;
    r->cout = cout;
#define SUB(s) (snprintf(p, sizeof p, "%s.%s", prefix, s), p)
    if ((st = load_gamma(ld, SUB("norm1.gamma"), cin, 0, &r->g1)) ||
        (st = load_conv(ld, SUB("conv1"), cin, cout, CONV3D_K3, &r->conv1)) ||
        (st = load_gamma(ld, SUB("norm2.gamma"), cout, 0, &r->g2)) ||
        (st = load_conv(ld, SUB("conv2"), cout, cout, CONV3D_K3, &r->conv2)))
        return st;
    memset(&r->shortcut, 0, sizeof r->shortcut);
    if (cin != cout &&
        (st = load_conv(ld, SUB("conv_shortcut"), cin, cout, CONV3D_K1, &r->shortcut)))
        return st;
#undef SUB
    return ENG_OK;
}

static eng_status load_attn(loader *ld, const char *prefix, int32_t C, vae_attn *a) {
    char p[200];
    eng_status st;
    const int64_t sq[4] = {3 * C, C, 1, 1}, sp[4] = {C, C, 1, 1}, b3[1] = {3 * C}, b1[1] = {C};
    a->c = C;
    float *wq = take(ld, 3 * (int64_t)C * C), *bq = take(ld, 3 * C);
    float *wp = take(ld, (int64_t)C * C), *bp = take(ld, C);
    a->w_qkv = wq, a->b_qkv = bq, a->w_proj = wp, a->b_proj = bp;
#define SUB(s) (snprintf(p, sizeof p, "%s.%s", prefix, s), p)
    if ((st = load_gamma(ld, SUB("norm.gamma"), C, 1, &a->g)) ||
        (st = read_f32(ld, SUB("to_qkv.weight"), 4, sq, wq)) ||
        (st = read_f32(ld, SUB("to_qkv.bias"), 1, b3, bq)) ||
        (st = read_f32(ld, SUB("proj.weight"), 4, sp, wp)) ||
        (st = read_f32(ld, SUB("proj.bias"), 1, b1, bp)))
        return st;
#undef SUB
    return ENG_OK;
}

/* Every decoder tensor, in diffusers' module order. Run twice: dry (pool NULL), then filling. */
static eng_status load_all(loader *ld, vae_model *m) {
    const vae_config *c = &m->cfg;
    const int32_t L = c->n_levels, Z = c->z_dim;
    char p[200];
    eng_status st;
    eng_tensor t;
    if ((st = weights_tensor(ld->w, "decoder.conv_in.weight", &t, ld->err))) return st;
    ld->dtype = t.dtype;
    const int32_t C0 = c->dims[0];
    if ((st = load_conv(ld, "post_quant_conv", Z, Z, CONV3D_K1, &m->post_quant)) ||
        (st = load_conv(ld, "decoder.conv_in", Z, C0, CONV3D_K3, &m->conv_in)) ||
        (st = load_resblock(ld, "decoder.mid_block.resnets.0", C0, C0, &m->mid_res[0])) ||
        (st = load_attn(ld, "decoder.mid_block.attentions.0", C0, &m->attn)) ||
        (st = load_resblock(ld, "decoder.mid_block.resnets.1", C0, C0, &m->mid_res[1])))
        return st;
    for (int32_t i = 0; i < L; i++) {
        vae_up_block *u = &m->up[i];
        int32_t cin = i == 0 ? c->dims[0] : c->dims[i] / 2;
        const int32_t cout = c->dims[i + 1];
        u->n_res = c->n_res + 1;
        for (int32_t r = 0; r < u->n_res; r++, cin = cout) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, r);
            if ((st = load_resblock(ld, p, cin, cout, &u->res[r]))) return st;
        }
        u->has_up = i != L - 1;
        if (u->has_up) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.resample.1", i);
            if ((st = load_upconv(ld, p, cout, cout / 2, &u->up))) return st;
        }
    }
    if ((st = load_gamma(ld, "decoder.norm_out.gamma", c->dims[L], 0, &m->g_out)) ||
        (st = load_conv(ld, "decoder.conv_out", c->dims[L], c->out_channels, CONV3D_K3,
                        &m->conv_out)))
        return st;
    /* a checkpoint with more blocks than config.json describes is a mismatch, not a silent trim */
    snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.0.conv1.weight", L);
    char q[200];
    snprintf(q, sizeof q, "decoder.up_blocks.0.resnets.%d.conv1.weight", c->n_res + 1);
    if (weights_has(ld->w, p) || weights_has(ld->w, q))
        return eng_err_set(ld->err, ENG_ERR_FORMAT,
                           "'%s' has more decoder blocks than config.json describes (dim_mult "
                           "has %d levels, num_res_blocks = %d)",
                           weights_path(ld->w), L, c->n_res);
    return ENG_OK;
}

eng_status vae_load(const char *dir, const eng_runtime *rt, vae_model **out, eng_error *err) {
    *out = NULL;
    eng_weights *w = NULL;
    loader ld = {.mr = rt->kern.gemm_mr, .err = err};
    vae_model *m = calloc(1, sizeof *m);
    if (!m) return eng_err_set(err, ENG_ERR_OOM, "VAE: out of memory");
    eng_status st = load_config(dir, &m->cfg, err);
    if (st != ENG_OK) goto fail;
    m->mr = ld.mr;
    m->halo = compute_halo(&m->cfg);
    char wpath[ENG_PATH_CAP];
    static const char *const bases[] = {"diffusion_pytorch_model", "model", NULL};
    if ((st = eng_find_weights(dir, bases, wpath, sizeof wpath, err))) goto fail;
    if ((st = eng_weights_open(wpath, &w, err))) goto fail;
    ld.w = w;
    if ((st = load_all(&ld, m))) goto fail; /* dry run: names, shapes, dtypes; pool size */
    m->pool_floats = ld.used;
    m->pool = eng_aligned_alloc(ld.used * sizeof(float));
    if (!m->pool) {
        st = eng_err_set(err, ENG_ERR_OOM, "VAE: cannot allocate %zu bytes of weights",
                         ld.used * sizeof(float));
        goto fail;
    }
    ld.pool = m->pool;
    ld.used = 0;
    if ((st = load_all(&ld, m))) goto fail;
    m->weight_dtype = ld.dtype;
    eng_free(ld.tmp);
    eng_weights_free(w); /* everything needed is packed: unmap the file */
    *out = m;
    return ENG_OK;
fail:
    eng_err_prefix(err, "VAE '%s'", dir);
    eng_free(ld.tmp);
    eng_weights_free(w);
    vae_free(m);
    return st;
}

void vae_free(vae_model *m) {
    if (!m) return;
    eng_free(m->pool);
    free(m);
}

/* ---- public API ---------------------------------------------------------------------- */

eng_vae_options eng_vae_options_default(void) {
    eng_vae_options o = {.tiling = -1, .tile = 0, .overlap = 0, .memory_budget = 0};
    return o;
}

static void vae_free_void(void *p) { vae_free((vae_model *)p); }

eng_status eng_model_load_vae(eng_model *m, eng_error *err) {
    if (!m) return eng_err_set(err, ENG_ERR_INVALID_ARG, "model is NULL");
    if (m->extra[ENG_COMP_VAE]) return ENG_OK;
    char dir[ENG_PATH_CAP];
    eng_status st = eng_model_component_dir(m, "vae", dir, sizeof dir, err);
    if (st != ENG_OK) return st;
    pthread_mutex_lock(&m->rt->lock);
    if (!m->extra[ENG_COMP_VAE]) {
        vae_model *vm = NULL;
        st = vae_load(dir, m->rt, &vm, err);
        if (st == ENG_OK) {
            m->extra[ENG_COMP_VAE] = vm;
            m->extra_free[ENG_COMP_VAE] = vae_free_void;
        }
    }
    pthread_mutex_unlock(&m->rt->lock);
    return st;
}

eng_status eng_vae_get_info(eng_model *m, eng_vae_info *out, eng_error *err) {
    if (!out) return eng_err_set(err, ENG_ERR_INVALID_ARG, "eng_vae_get_info: out is NULL");
    eng_status st = eng_model_load_vae(m, err);
    if (st != ENG_OK) return st;
    const vae_model *v = m->extra[ENG_COMP_VAE];
    const vae_config *c = &v->cfg;
    memset(out, 0, sizeof *out);
    out->z_dim = c->z_dim;
    out->scale = c->scale;
    out->out_channels = c->out_channels;
    out->base_dim = c->base_dim;
    out->n_levels = c->n_levels;
    out->n_res_blocks = c->n_res;
    for (int32_t i = 0; i < c->n_levels && i < 8; i++) out->dim_mult[i] = c->dim_mult[i];
    out->halo = v->halo;
    out->weight_dtype = v->weight_dtype;
    out->weight_bytes = v->pool_floats * sizeof(float);
    return ENG_OK;
}

static eng_status check_opts(const eng_vae_options *o, eng_error *err) {
    if (o->tiling < -1 || o->tiling > 1)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "VAE: tiling must be -1 (auto), 0 or 1, got %d", o->tiling);
    if (o->tile < 0 || o->overlap < 0 || o->tile > 65536 || o->overlap > 65536)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "VAE: tile %d / overlap %d out of range",
                           o->tile, o->overlap);
    return ENG_OK;
}

static eng_status check_size(const vae_model *v, int64_t h, int64_t w, eng_error *err) {
    const int64_t s = v->cfg.scale;
    if (h < 1 || w < 1 || h * s > 32768 || w * s > 32768)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "VAE: latent size %lldx%lld out of range (1 .. %lld per side)",
                           (long long)h, (long long)w, (long long)(32768 / s));
    return ENG_OK;
}

eng_status eng_vae_plan_decode(eng_model *m, int32_t h, int32_t w, const eng_vae_options *opt,
                               eng_vae_plan *out, eng_error *err) {
    if (!out) return eng_err_set(err, ENG_ERR_INVALID_ARG, "eng_vae_plan_decode: out is NULL");
    eng_status st = eng_model_load_vae(m, err);
    if (st != ENG_OK) return st;
    const vae_model *v = m->extra[ENG_COMP_VAE];
    eng_vae_options o = opt ? *opt : eng_vae_options_default();
    vae_plan p;
    if ((st = check_opts(&o, err)) || (st = check_size(v, h, w, err)) ||
        (st = vae_make_plan(v, m->rt, h, w, &o, &p, err)))
        return st;
    memset(out, 0, sizeof *out);
    out->tiled = p.tiled;
    out->tile = p.tile;
    out->overlap = p.overlap;
    out->n_tiles_y = p.ny;
    out->n_tiles_x = p.nx;
    out->activation_bytes = p.total_bytes;
    return ENG_OK;
}

eng_status eng_vae_decode(eng_model *m, const float *latents, int32_t z_dim, int32_t h,
                          int32_t w, float *rgb, size_t rgb_bytes, const eng_vae_options *opt,
                          const eng_request *req, eng_error *err) {
    eng_cpu_clear_upper();  /* scalar code first (un-normalising the latents): see internal.h */
    eng_status st = eng_model_load_vae(m, err);
    if (st != ENG_OK) return st;
    const vae_model *v = m->extra[ENG_COMP_VAE];
    const vae_config *c = &v->cfg;
    if (!latents || !rgb)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "VAE: latents and rgb are required");
    if (z_dim != c->z_dim)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "VAE: latents have %d channels, z_dim is %d",
                           z_dim, c->z_dim);
    if ((st = check_size(v, h, w, err))) return st;
    const size_t need = (size_t)c->out_channels * (size_t)(h * c->scale) * (size_t)(w * c->scale) *
                        sizeof(float);
    if (rgb_bytes < need)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "VAE: rgb has %zu bytes, needs %zu", rgb_bytes,
                           need);
    eng_vae_options o = opt ? *opt : eng_vae_options_default();
    vae_plan plan;
    if ((st = check_opts(&o, err)) || (st = vae_make_plan(v, m->rt, h, w, &o, &plan, err)))
        return st;
    pthread_mutex_lock(&m->rt->lock);
    st = vae_decode(m->rt, v, latents, h, w, rgb, &plan, req ? req->cancel : NULL, err);
    pthread_mutex_unlock(&m->rt->lock);
    return st;
}
