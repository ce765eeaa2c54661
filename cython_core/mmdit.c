/* mmdit.c - Qwen-Image MMDiT forward (diffusers QwenImageTransformer2DModel,
 * models/transformers/transformer_qwenimage.py), batch 1, f32 activations.
 * Spec: shared/reference/qwen-image-spec.md section 1. Reads like the diffusers forward:
 *   img_in -> txt_norm + txt_in -> timestep embedding -> MSRoPE tables -> blocks -> norm_out
 *   -> proj_out.
 * The joint sequence keeps text rows first (as diffusers concatenates for attention), so one
 * (S, dim) residual buffer H holds both streams: rows [0, n_txt) text, [n_txt, S) image. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "mmdit.h"
#include "model.h"
#include "ops_cpu.h"
#include "rowops.h"
#include "safetensors.h"

#define MMDIT_EPS 1e-6f
#define MMDIT_T_CHANNELS 256 /* sinusoidal timestep channels */
#define MMDIT_MAX_DIM 65536

/* ---- loading ------------------------------------------------------------------------- */

static eng_status load_config(const char *dir, mmdit_config *c, eng_error *err) {
    char path[ENG_PATH_CAP];
    json_value *root = NULL;
    eng_status st = eng_join_path(path, sizeof path, dir, "config.json", err);
    if (st == ENG_OK) st = eng_read_json(path, &root, err);
    if (st != ENG_OK) return st;
    memset(c, 0, sizeof *c);
    if ((st = json_get_int32_in(root, "patch_size", 2, 1, 16, &c->patch_size, path, err)) ||
        (st = json_get_int32_in(root, "in_channels", 64, 1, MMDIT_MAX_DIM, &c->in_channels, path, err)) ||
        (st = json_get_int32_in(root, "num_layers", 60, 1, 1024, &c->n_layers, path, err)) ||
        (st = json_get_int32_in(root, "attention_head_dim", 128, 2, 1024, &c->head_dim, path, err)) ||
        (st = json_get_int32_in(root, "num_attention_heads", 24, 1, 1024, &c->n_heads, path, err)) ||
        (st = json_get_int32_in(root, "joint_attention_dim", 3584, 1, MMDIT_MAX_DIM, &c->joint_dim, path, err)))
        goto done;
    /* out_channels: null or absent means in_channels (diffusers: out_channels or in_channels) */
    int64_t oc = 0;
    if ((st = json_get_int64_or(root, "out_channels", 0, &oc, err))) {
        eng_err_prefix(err, "'%s'", path);
        goto done;
    }
    if (oc < 0 || oc > MMDIT_MAX_DIM) { /* 0 (or null, absent) is in_channels, as diffusers' `or` */
        st = eng_err_set(err, ENG_ERR_FORMAT, "'%s': out_channels = %lld outside [1, %d]", path, (long long)oc,
                         MMDIT_MAX_DIM);
        goto done;
    }
    c->out_channels = oc > 0 ? (int32_t)oc : c->in_channels;
    c->dim = c->n_heads * c->head_dim;
    c->theta = 10000.0f;
    if (c->dim > MMDIT_MAX_DIM) {
        st = eng_err_set(err, ENG_ERR_FORMAT, "'%s': inner dim %d too large", path, c->dim);
        goto done;
    }
    const json_value *axes = json_get(root, "axes_dims_rope");
    if (!axes) {
        c->axes[0] = 16, c->axes[1] = 56, c->axes[2] = 56;
    } else if (json_len(axes) != 3) {
        st = eng_err_set(err, ENG_ERR_FORMAT, "'%s': axes_dims_rope must have 3 entries", path);
        goto done;
    } else {
        for (int i = 0; i < 3; i++) {
            int64_t a;
            if ((st = json_as_int64(json_at(axes, (size_t)i), "axes_dims_rope", &a, err))) {
                eng_err_prefix(err, "'%s'", path);
                goto done;
            }
            if (a < 0 || a % 2 || a > 1024) {
                st = eng_err_set(err, ENG_ERR_FORMAT, "'%s': axes_dims_rope[%d] = %lld must be even and in [0, 1024]",
                                 path, i, (long long)a);
                goto done;
            }
            c->axes[i] = (int32_t)a;
        }
    }
    if (c->axes[0] + c->axes[1] + c->axes[2] != c->head_dim) {
        st = eng_err_set(err, ENG_ERR_FORMAT, "'%s': axes_dims_rope (%d, %d, %d) must sum to attention_head_dim %d",
                         path, c->axes[0], c->axes[1], c->axes[2], c->head_dim);
        goto done;
    }
    if (c->in_channels % (c->patch_size * c->patch_size) != 0) {
        st = eng_err_set(err, ENG_ERR_FORMAT, "'%s': in_channels %d is not a multiple of patch_size^2",
                         path, c->in_channels);
        goto done;
    }
    static const char *const unsupported[] = {"guidance_embeds", "zero_cond_t", "use_additional_t_cond",
                                              "use_layer3d_rope"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        bool flag = false;
        if ((st = json_get_bool_or(root, unsupported[i], false, &flag, err))) {
            eng_err_prefix(err, "'%s'", path);
            goto done;
        }
        if (flag) {
            st = eng_err_set(err, ENG_ERR_UNSUPPORTED,
                             "'%s': %s = true is not supported (Qwen-Image text-to-image uses false)",
                             path, unsupported[i]);
            goto done;
        }
    }
done:
    json_free(root);
    return st;
}

typedef struct loader {
    const eng_weights *w;
    float *owned;  /* f32 pool for biases and norm weights */
    size_t used, cap;
    eng_error *err;
} loader;

/* Copies a 1-D float tensor of n values into the owned f32 pool. */
static eng_status load_vec(loader *ld, const char *name, int64_t n, const float **out) {
    eng_tensor t;
    eng_status st = weights_tensor_float(ld->w, name, 1, &n, &t, ld->err);
    if (st != ENG_OK) return st;
    if (ld->used + (size_t)n > ld->cap)
        return eng_err_set(ld->err, ENG_ERR_FORMAT, "internal: f32 pool too small at '%s'", name);
    float *dst = ld->owned + ld->used;
    ld->used += (size_t)n;
    *out = dst;
    return eng_convert_to_f32(dst, t.data, t.dtype, n, ld->err);
}

static eng_status load_linear(loader *ld, const char *prefix, int64_t n_out, int64_t n_in,
                              mmdit_linear *L) {
    char name[256];
    int64_t shape[2] = {n_out, n_in};
    snprintf(name, sizeof name, "%s.weight", prefix);
    eng_status st = weights_tensor_float(ld->w, name, 2, shape, &L->w, ld->err);
    if (st != ENG_OK) return st;
    snprintf(name, sizeof name, "%s.bias", prefix);
    L->n_out = n_out;
    L->n_in = n_in;
    return load_vec(ld, name, n_out, &L->b);
}

static eng_status load_block(loader *ld, const mmdit_config *c, int i, mmdit_block *b) {
    const int64_t D = c->dim;
    char p[200], name[256];
    eng_status st;
#define LIN(field, suffix, o, in)                                          \
    do {                                                                   \
        snprintf(p, sizeof p, "transformer_blocks.%d.%s", i, suffix);      \
        if ((st = load_linear(ld, p, o, in, &b->field)) != ENG_OK) return st; \
    } while (0)
#define VEC(field, suffix)                                                             \
    do {                                                                               \
        snprintf(name, sizeof name, "transformer_blocks.%d.%s", i, suffix);            \
        if ((st = load_vec(ld, name, c->head_dim, &b->field)) != ENG_OK) return st;    \
    } while (0)
    LIN(img_mod, "img_mod.1", 6 * D, D);
    LIN(txt_mod, "txt_mod.1", 6 * D, D);
    LIN(to_q, "attn.to_q", D, D);
    LIN(to_k, "attn.to_k", D, D);
    LIN(to_v, "attn.to_v", D, D);
    LIN(to_out, "attn.to_out.0", D, D);
    LIN(add_q, "attn.add_q_proj", D, D);
    LIN(add_k, "attn.add_k_proj", D, D);
    LIN(add_v, "attn.add_v_proj", D, D);
    LIN(add_out, "attn.to_add_out", D, D);
    LIN(img_fc1, "img_mlp.net.0.proj", 4 * D, D);
    LIN(img_fc2, "img_mlp.net.2", D, 4 * D);
    LIN(txt_fc1, "txt_mlp.net.0.proj", 4 * D, D);
    LIN(txt_fc2, "txt_mlp.net.2", D, 4 * D);
    VEC(norm_q, "attn.norm_q.weight");
    VEC(norm_k, "attn.norm_k.weight");
    VEC(norm_added_q, "attn.norm_added_q.weight");
    VEC(norm_added_k, "attn.norm_added_k.weight");
#undef LIN
#undef VEC
    return ENG_OK;
}

eng_status mmdit_load(const char *dir, const mmdit_progress *progress, mmdit_model **out,
                      eng_error *err) {
    *out = NULL;
    mmdit_model *m = calloc(1, sizeof *m);
    if (!m) return eng_err_set(err, ENG_ERR_OOM, "transformer: out of memory");
    eng_status st = load_config(dir, &m->cfg, err);
    if (st != ENG_OK) goto fail;
    const mmdit_config *c = &m->cfg;
    const int64_t D = c->dim;
    const int64_t P = (int64_t)c->patch_size * c->patch_size * c->out_channels;

    char wpath[ENG_PATH_CAP];
    static const char *const bases[] = {"diffusion_pytorch_model", "model", NULL};
    if ((st = eng_find_weights(dir, bases, wpath, sizeof wpath, err))) goto fail;
    if ((st = eng_weights_open(wpath, &m->weights, err))) goto fail;

    size_t cap = (size_t)(4 * D + 2 * D + P + c->joint_dim) +
                 (size_t)c->n_layers * (size_t)(30 * D + 4 * c->head_dim);
    m->owned = eng_aligned_alloc(cap * sizeof(float));
    m->blocks = calloc((size_t)c->n_layers, sizeof *m->blocks);
    if (!m->owned || !m->blocks) {
        st = eng_err_set(err, ENG_ERR_OOM, "transformer: out of memory for %zu biases", cap);
        goto fail;
    }
    loader ld = {.w = m->weights, .owned = m->owned, .cap = cap, .err = err};
    if ((st = load_linear(&ld, "img_in", D, c->in_channels, &m->img_in)) ||
        (st = load_linear(&ld, "txt_in", D, c->joint_dim, &m->txt_in)) ||
        (st = load_vec(&ld, "txt_norm.weight", c->joint_dim, &m->txt_norm)) ||
        (st = load_linear(&ld, "time_text_embed.timestep_embedder.linear_1", D, MMDIT_T_CHANNELS, &m->t_lin1)) ||
        (st = load_linear(&ld, "time_text_embed.timestep_embedder.linear_2", D, D, &m->t_lin2)) ||
        (st = load_linear(&ld, "norm_out.linear", 2 * D, D, &m->norm_out)) ||
        (st = load_linear(&ld, "proj_out", P, D, &m->proj_out)))
        goto fail;
    for (int i = 0; i < c->n_layers; i++) {
        if ((st = load_block(&ld, c, i, &m->blocks[i]))) goto fail;
        if (progress && progress->fn && progress->fn("transformer", i + 1, c->n_layers, progress->user)) {
            st = eng_err_set(err, ENG_ERR_CANCELLED, "loading aborted by the progress callback");
            goto fail;
        }
    }
    /* a checkpoint with more blocks than config.json says is a mismatch, not a silent trim */
    char extra[64];
    snprintf(extra, sizeof extra, "transformer_blocks.%d.attn.to_q.weight", c->n_layers);
    if (weights_has(m->weights, extra)) {
        st = eng_err_set(err, ENG_ERR_FORMAT, "'%s' has more transformer blocks than num_layers = %d in config.json",
                         wpath, c->n_layers);
        goto fail;
    }
    *out = m;
    return ENG_OK;
fail:
    eng_err_prefix(err, "transformer '%s'", dir);
    mmdit_free(m);
    return st;
}

void mmdit_free(mmdit_model *m) {
    if (!m) return;
    for (int32_t i = 0; i < m->n_merged; i++) eng_free(m->merged[i]);
    free(m->merged);
    eng_weights_free(m->weights);
    eng_free(m->owned);
    free(m->blocks);
    free(m);
}

mmdit_linear *mmdit_find_linear(mmdit_model *m, const char *module) {
    static const struct {
        const char *name;
        size_t offset;
    } top[] = {
        {"img_in", offsetof(mmdit_model, img_in)},
        {"txt_in", offsetof(mmdit_model, txt_in)},
        {"time_text_embed.timestep_embedder.linear_1", offsetof(mmdit_model, t_lin1)},
        {"time_text_embed.timestep_embedder.linear_2", offsetof(mmdit_model, t_lin2)},
        {"norm_out.linear", offsetof(mmdit_model, norm_out)},
        {"proj_out", offsetof(mmdit_model, proj_out)},
    };
    static const struct {
        const char *name;
        size_t offset;
    } blk[] = {
        {"img_mod.1", offsetof(mmdit_block, img_mod)},
        {"txt_mod.1", offsetof(mmdit_block, txt_mod)},
        {"attn.to_q", offsetof(mmdit_block, to_q)},
        {"attn.to_k", offsetof(mmdit_block, to_k)},
        {"attn.to_v", offsetof(mmdit_block, to_v)},
        {"attn.to_out.0", offsetof(mmdit_block, to_out)},
        {"attn.add_q_proj", offsetof(mmdit_block, add_q)},
        {"attn.add_k_proj", offsetof(mmdit_block, add_k)},
        {"attn.add_v_proj", offsetof(mmdit_block, add_v)},
        {"attn.to_add_out", offsetof(mmdit_block, add_out)},
        {"img_mlp.net.0.proj", offsetof(mmdit_block, img_fc1)},
        {"img_mlp.net.2", offsetof(mmdit_block, img_fc2)},
        {"txt_mlp.net.0.proj", offsetof(mmdit_block, txt_fc1)},
        {"txt_mlp.net.2", offsetof(mmdit_block, txt_fc2)},
    };
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (strcmp(module, top[i].name) == 0) return (mmdit_linear *)((char *)m + top[i].offset);
    const char *pre = "transformer_blocks.";
    if (strncmp(module, pre, strlen(pre)) != 0) return NULL;
    const char *p = module + strlen(pre);
    char *end = NULL;
    long b = strtol(p, &end, 10);
    if (end == p || *end != '.' || b < 0 || b >= m->cfg.n_layers || (p[0] == '0' && end - p > 1)) return NULL;
    for (size_t i = 0; i < sizeof blk / sizeof blk[0]; i++)
        if (strcmp(end + 1, blk[i].name) == 0) return (mmdit_linear *)((char *)&m->blocks[b] + blk[i].offset);
    return NULL;
}

/* ---- forward ------------------------------------------------------------------------- */

/* Activation buffers, carved from one arena per forward (S = n_txt + n_img):
 *   H (S, D) residual streams   N (S, D) modulated norm / attention output
 *   T (S, D) projections        Qh, Kh, Vh (heads, S, head_dim)
 *   G (chunk, 4D) MLP hidden    rope cos/sin (S, head_dim/2) each
 *   text RMSNorm (n_txt, joint_dim), small vectors. */
#define MLP_CHUNK 1024

size_t mmdit_activation_bytes(const mmdit_config *c, int64_t n_img, int64_t n_txt) {
    const size_t S = (size_t)(n_img + n_txt), D = (size_t)c->dim;
    const size_t chunk = S < MLP_CHUNK ? S : MLP_CHUNK;
    size_t floats = 6 * S * D + chunk * 4 * D + S * (size_t)c->head_dim + 40 * D + MMDIT_T_CHANNELS +
                    (size_t)n_txt * (size_t)c->joint_dim;
    return floats * sizeof(float) + 32 * ENG_ALIGN + (size_t)S;
}

/* Frequencies of one RoPE axis (dim d): 1 / theta^(2k/d), k < d/2, as diffusers computes them. */
static double rope_inv_freq(double theta, int k, int d) { return 1.0 / pow(theta, (2.0 * k) / d); }

/* cos/sin (S, head_dim/2): text rows first, then image rows. Image token (y, x) of the h x w
 * grid has positions (0, y - (h - h/2), x - (w - w/2)); text token j has M + j on all three
 * axes, M = max(h/2, w/2). Pairs are ordered [frame | height | width]. */
static void rope_tables(const mmdit_config *c, int64_t n_txt, int64_t h, int64_t w, float *cs,
                        float *sn) {
    const int half = c->head_dim / 2;
    const int64_t M = (h / 2 > w / 2) ? h / 2 : w / 2;
    for (int64_t r = 0; r < n_txt + h * w; r++) {
        int64_t pos[3];
        if (r < n_txt) {
            pos[0] = pos[1] = pos[2] = M + r;
        } else {
            int64_t t = r - n_txt, y = t / w, x = t % w;
            pos[0] = 0;
            pos[1] = y - (h - h / 2);
            pos[2] = x - (w - w / 2);
        }
        int slot = 0;
        for (int a = 0; a < 3; a++)
            for (int k = 0; k < c->axes[a] / 2; k++, slot++) {
                float inv = (float)rope_inv_freq(c->theta, k, c->axes[a]);
                float ang = (float)pos[a] * inv; /* fp32 product, as torch.outer */
                cs[r * half + slot] = cosf(ang);
                sn[r * half + slot] = sinf(ang);
            }
    }
}

/* emb (256) = [cos(a), sin(a)], a_k = 1000 * (sigma * exp(-ln(10000) k / 128)) in fp32. */
static void timestep_sinusoid(float sigma, float *emb) {
    const int half = MMDIT_T_CHANNELS / 2;
    for (int k = 0; k < half; k++) {
        float e = (-9.210340371976184f * (float)k) / (float)half;
        float a = 1000.0f * (sigma * expf(e));
        emb[k] = cosf(a);
        emb[half + k] = sinf(a);
    }
}

static eng_status lin(eng_runtime *rt, float *y, const float *x, int64_t rows, const mmdit_linear *L,
                      eng_error *err) {
    return cpu_linear(rt, y, x, L->w.data, L->w.dtype, L->b, rows, L->n_out, L->n_in, err);
}

typedef struct fwd {
    eng_runtime *rt;
    const mmdit_model *m;
    int64_t n_txt, n_img, S, D, H, hd;
    float *Hs, *N, *T, *Qh, *Kh, *Vh, *G, *cos, *sin;
    float *st;            /* (D) silu(temb) */
    float *mod_img, *mod_txt; /* (6D) */
    float *g1_img, *g1_txt, *g2_img, *g2_txt; /* (D) 1 + scale */
    uint8_t *kmask;       /* (S) | NULL */
    eng_error *err;
} fwd;

/* N[rows] = LN(H[rows]) * (1 + scale) + shift for one stream. */
static void modulate(fwd *f, int64_t r0, int64_t rows, const float *one_plus_scale, const float *shift) {
    rows_layernorm(f->rt, f->N + r0 * f->D, f->Hs + r0 * f->D, rows, f->D, one_plus_scale, shift, MMDIT_EPS);
}

/* T = [txt_proj(N_txt); img_proj(N_img)], optional per-head RMSNorm and RoPE, -> heads. */
static eng_status project(fwd *f, const mmdit_linear *Lt, const mmdit_linear *Li, const float *nt,
                          const float *ni, float *heads) {
    eng_status st;
    const int64_t D = f->D, nt_rows = f->n_txt;
    if ((st = lin(f->rt, f->T, f->N, f->n_txt, Lt, f->err))) return st;
    if ((st = lin(f->rt, f->T + nt_rows * D, f->N + nt_rows * D, f->n_img, Li, f->err))) return st;
    if (nt) {
        rows_rmsnorm(f->rt, f->T, f->T, f->n_txt * f->H, f->hd, nt, MMDIT_EPS);
        rows_rmsnorm(f->rt, f->T + nt_rows * D, f->T + nt_rows * D, f->n_img * f->H, f->hd, ni, MMDIT_EPS);
        rows_rope_pairs(f->rt, f->T, f->S, f->H, f->hd, f->cos, f->sin);
    }
    rows_to_heads(f->rt, heads, f->T, f->S, f->H, f->hd);
    return ENG_OK;
}

/* MLP of one stream over rows [r0, r0 + rows), in chunks: H += gate2 * fc2(gelu(fc1(mod2(H)))). */
static eng_status mlp(fwd *f, int64_t r0, int64_t rows, const mmdit_linear *fc1, const mmdit_linear *fc2,
                      const float *one_plus_scale, const float *shift, const float *gate) {
    eng_status st;
    const int64_t D = f->D;
    for (int64_t c0 = 0; c0 < rows; c0 += MLP_CHUNK) {
        const int64_t n = rows - c0 < MLP_CHUNK ? rows - c0 : MLP_CHUNK;
        float *h = f->Hs + (r0 + c0) * D, *nn = f->N + (r0 + c0) * D, *t = f->T + (r0 + c0) * D;
        rows_layernorm(f->rt, nn, h, n, D, one_plus_scale, shift, MMDIT_EPS);
        if ((st = lin(f->rt, f->G, nn, n, fc1, f->err))) return st;
        rows_gelu_tanh(f->rt, f->G, n * fc1->n_out);
        if ((st = lin(f->rt, t, f->G, n, fc2, f->err))) return st;
        rows_gated_add(f->rt, h, gate, t, n, D);
    }
    return ENG_OK;
}

static void one_plus(float *dst, const float *scale, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = 1.0f + scale[i];
}

static eng_status block_forward(fwd *f, const mmdit_block *b, int last) {
    eng_status st;
    const int64_t D = f->D, nt = f->n_txt;
    /* 1. modulation: (shift, scale, gate) x 2 per stream, from silu(temb) */
    if ((st = lin(f->rt, f->mod_img, f->st, 1, &b->img_mod, f->err))) return st;
    if ((st = lin(f->rt, f->mod_txt, f->st, 1, &b->txt_mod, f->err))) return st;
    const float *mi = f->mod_img, *mt = f->mod_txt;
    one_plus(f->g1_img, mi + D, D);
    one_plus(f->g1_txt, mt + D, D);
    one_plus(f->g2_img, mi + 4 * D, D);
    one_plus(f->g2_txt, mt + 4 * D, D);
    /* 2. modulated LayerNorm (no affine) */
    modulate(f, 0, nt, f->g1_txt, mt);
    modulate(f, nt, f->n_img, f->g1_img, mi);
    /* 3. joint attention: q/k with per-head RMSNorm and RoPE, text first */
    if ((st = project(f, &b->add_q, &b->to_q, b->norm_added_q, b->norm_q, f->Qh))) return st;
    if ((st = project(f, &b->add_k, &b->to_k, b->norm_added_k, b->norm_k, f->Kh))) return st;
    if ((st = project(f, &b->add_v, &b->to_v, NULL, NULL, f->Vh))) return st;
    const float scale = 1.0f / sqrtf((float)f->hd);
    if ((st = cpu_attention(f->rt, f->N, f->Qh, f->Kh, f->Vh, f->kmask, 0, f->H, f->H, f->S, f->S,
                            f->hd, scale, NULL, f->err)))
        return st;
    heads_to_rows(f->rt, f->T, f->N, f->S, f->H, f->hd);
    if ((st = lin(f->rt, f->N, f->T, nt, &b->add_out, f->err))) return st;
    if ((st = lin(f->rt, f->N + nt * D, f->T + nt * D, f->n_img, &b->to_out, f->err))) return st;
    /* 4. gated residuals */
    rows_gated_add(f->rt, f->Hs, mt + 2 * D, f->N, nt, D);
    rows_gated_add(f->rt, f->Hs + nt * D, mi + 2 * D, f->N + nt * D, f->n_img, D);
    /* 5. MLPs (the last block's text stream is discarded by the model: skip it) */
    if ((st = mlp(f, nt, f->n_img, &b->img_fc1, &b->img_fc2, f->g2_img, mi + 3 * D, mi + 5 * D))) return st;
    if (!last && (st = mlp(f, 0, nt, &b->txt_fc1, &b->txt_fc2, f->g2_txt, mt + 3 * D, mt + 5 * D))) return st;
    return ENG_OK;
}

eng_status mmdit_forward(eng_runtime *rt, const mmdit_model *m, const mmdit_inputs *in,
                         float *out, const eng_cancel *cancel, eng_error *err) {
    const mmdit_config *c = &m->cfg;
    const int64_t D = c->dim, unit = 8 * c->patch_size;
    if (in->height <= 0 || in->width <= 0 || in->height % unit || in->width % unit)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "height %d and width %d must be positive multiples of %lld",
                           in->height, in->width, (long long)unit);
    const int64_t h = in->height / unit, w = in->width / unit;
    if (in->n_img != h * w)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "latents have %lld tokens but %dx%d pixels need %lld x %lld = %lld",
                           (long long)in->n_img, in->width, in->height, (long long)h, (long long)w,
                           (long long)(h * w));
    if (in->n_txt < 1)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "prompt embeddings are empty");
    const int64_t M = (h / 2 > w / 2) ? h / 2 : w / 2;
    if (M + in->n_txt > 4096 || h - h / 2 > 4096 || w - w / 2 > 4096)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "RoPE positions exceed 4096 (grid %lldx%lld, %lld text tokens)",
                           (long long)h, (long long)w, (long long)in->n_txt);
    if (!(in->sigma >= 0.0f && in->sigma <= 1.0f))
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "sigma %g outside [0, 1]", (double)in->sigma);

    fwd f = {.rt = rt, .m = m, .n_txt = in->n_txt, .n_img = in->n_img, .S = in->n_txt + in->n_img,
             .D = D, .H = c->n_heads, .hd = c->head_dim, .err = err};
    /* the arena is the runtime's kept workspace (allocating and page-faulting ~340 MB per
     * forward at 1024x1024 cost ~2 %) */
    const size_t need = mmdit_activation_bytes(c, f.n_img, f.n_txt);
    unsigned char *ws = eng_runtime_workspace(rt, ENG_WS_ACTIVATIONS, need, "transformer", err);
    if (!ws) return ENG_ERR_OOM;
    eng_arena ar = {.base = ws, .cap = need};
    eng_status st = ENG_OK;
    const int64_t S = f.S, chunk = S < MLP_CHUNK ? S : MLP_CHUNK;
    float *temb, *tnorm;
#define ALLOC(ptr, n)                                               \
    if (!((ptr) = eng_arena_floats(&ar, (n), #ptr, err))) {          \
        st = ENG_ERR_OOM;                                           \
        goto done;                                                  \
    }
    ALLOC(f.Hs, S * D);
    ALLOC(f.N, S * D);
    ALLOC(f.T, S * D);
    ALLOC(f.Qh, S * D);
    ALLOC(f.Kh, S * D);
    ALLOC(f.Vh, S * D);
    ALLOC(f.G, chunk * 4 * D);
    ALLOC(f.cos, S * c->head_dim / 2);
    ALLOC(f.sin, S * c->head_dim / 2);
    ALLOC(f.st, D);
    ALLOC(temb, 2 * D + MMDIT_T_CHANNELS);
    ALLOC(f.mod_img, 6 * D);
    ALLOC(f.mod_txt, 6 * D);
    ALLOC(f.g1_img, D);
    ALLOC(f.g1_txt, D);
    ALLOC(f.g2_img, D);
    ALLOC(f.g2_txt, D);
    ALLOC(tnorm, f.n_txt * c->joint_dim);
#undef ALLOC
    if (in->txt_mask) {
        f.kmask = eng_arena_alloc(&ar, (size_t)S, "key mask", err);
        if (!f.kmask) {
            st = ENG_ERR_OOM;
            goto done;
        }
        for (int64_t i = 0; i < S; i++) f.kmask[i] = i < f.n_txt ? (in->txt_mask[i] != 0) : 1;
    }

    /* image and text inputs */
    if ((st = lin(rt, f.Hs + f.n_txt * D, in->latents, f.n_img, &m->img_in, err))) goto done;
    rows_rmsnorm(rt, tnorm, in->txt, f.n_txt, c->joint_dim, m->txt_norm, MMDIT_EPS);
    if ((st = lin(rt, f.Hs, tnorm, f.n_txt, &m->txt_in, err))) goto done;
    /* timestep embedding: linear_2(silu(linear_1(sinusoid(sigma)))) */
    float *emb = temb + 2 * D, *t1 = temb;
    timestep_sinusoid(in->sigma, emb);
    if ((st = lin(rt, t1, emb, 1, &m->t_lin1, err))) goto done;
    rt->kern.silu(t1, t1, D);
    if ((st = lin(rt, f.st, t1, 1, &m->t_lin2, err))) goto done; /* temb */
    rt->kern.silu(f.st, f.st, D);                                /* every consumer uses silu(temb) */
    rope_tables(c, f.n_txt, h, w, f.cos, f.sin);

    for (int i = 0; i < c->n_layers; i++) {
        if (eng_cancel_requested(cancel)) {
            st = eng_err_set(err, ENG_ERR_CANCELLED, "transformer: cancelled before block %d of %d", i,
                             c->n_layers);
            goto done;
        }
        if ((st = block_forward(&f, &m->blocks[i], i == c->n_layers - 1))) goto done;
    }
    if (eng_cancel_requested(cancel)) {
        st = eng_err_set(err, ENG_ERR_CANCELLED, "transformer: cancelled after the last block");
        goto done;
    }
    /* norm_out (scale first, then shift) and proj_out, image rows only */
    if ((st = lin(rt, temb, f.st, 1, &m->norm_out, err))) goto done;
    one_plus(f.g1_img, temb, D);
    rows_layernorm(rt, f.N, f.Hs + f.n_txt * D, f.n_img, D, f.g1_img, temb + D, MMDIT_EPS);
    st = lin(rt, out, f.N, f.n_img, &m->proj_out, err);
done:
    return st; /* the workspace stays with the runtime (eng_runtime_trim frees it) */
}
