/* textenc.c - Qwen-Image's text encoder: the language model of Qwen2.5-VL (transformers
 * models/qwen2_5_vl/modeling_qwen2_5_vl.py, Qwen2_5_VLTextModel), batch 1, f32 activations.
 * Spec: shared/reference/qwen-image-spec.md section 3.3. Reads like the transformers forward:
 *
 *   h = embed_tokens[ids]
 *   for each layer:  r = h; x = RMSNorm(h) w1
 *                    q, k, v = x Wq^T + bq, x Wk^T + bk, x Wv^T + bv
 *                    q, k = rope_half(q), rope_half(k)        (positions 0..n-1, theta)
 *                    h = r + o_proj(causal GQA attention(q, k, v))
 *                    r = h; x = RMSNorm(h) w2
 *                    h = r + down(silu(gate(x)) * up(x))
 *   out = RMSNorm(h) w_final                                   (= hidden_states[-1])
 *
 * For text-only input M-RoPE is ordinary 1-D RoPE: the three position rows are equal, so the
 * mrope_section split selects the same angles (spec 3.3). Weights stay in the checkpoint dtype
 * (f32/f16/bf16) in the read-only mmap: the embedding table is gathered row by row with
 * conversion, linear weights are converted while the GEMM packs them. Only biases, norm
 * weights and the RoPE frequencies are copied to f32. Tensors the encoder does not use
 * (visual.*, lm_head.weight) are never looked at, so their pages are never read.
 *
 * The public text-encoder section of engine.h is implemented at the end of this file. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "model.h"
#include "ops_cpu.h"
#include "rowops.h"
#include "safetensors.h"
#include "textenc.h"

/* Limits on config.json values and on one forward's length. */
#define TE_MAX_DIM 65536
#define TE_MAX_INTERMEDIATE (1 << 20)
#define TE_MAX_VOCAB (1 << 24)
#define TE_MAX_TOKENS (1 << 20)
/* MLP rows per pass: bounds the (rows, intermediate) buffers; prompts up to 512 tokens read
 * each MLP weight once. */
#define TE_MLP_CHUNK 512

/* ---- config ------------------------------------------------------------------------------ */

/* transformers 5 writes the language-model keys under "text_config"; older configs (and the
 * one Qwen-Image ships) have them at the top level. A key is read from text_config first, then
 * from the top level, then the transformers default applies. */
typedef struct cfg_src {
    const json_value *tc; /* text_config object or NULL */
    const json_value *root;
    const char *path;
    eng_error *err;
} cfg_src;

static const json_value *cfg_get(const cfg_src *s, const char *key) {
    const json_value *v = s->tc ? json_get(s->tc, key) : NULL;
    if (!v || v->type == JSON_NULL) v = json_get(s->root, key);
    return (v && v->type != JSON_NULL) ? v : NULL;
}

static eng_status cfg_int(const cfg_src *s, const char *key, int64_t def, int64_t lo, int64_t hi,
                          int32_t *out) {
    const json_value *v = cfg_get(s, key);
    int64_t x = def;
    if (v && json_as_int64(v, key, &x, s->err) != ENG_OK)
        return eng_err_prefix(s->err, "'%s'", s->path);
    if (x < lo || x > hi)
        return eng_err_set(s->err, ENG_ERR_FORMAT, "'%s': %s = %lld outside [%lld, %lld]", s->path,
                           key, (long long)x, (long long)lo, (long long)hi);
    *out = (int32_t)x;
    return ENG_OK;
}

static eng_status cfg_double(const cfg_src *s, const json_value *obj, const char *key, double *out,
                             bool *found) {
    const json_value *v = obj ? json_get(obj, key) : NULL;
    *found = v && v->type != JSON_NULL;
    if (!*found) return ENG_OK;
    if (json_as_double(v, key, out, s->err) != ENG_OK)
        return eng_err_prefix(s->err, "'%s'", s->path);
    return ENG_OK;
}

/* RoPE: rope_parameters (transformers 5) or rope_scaling (older) may hold rope_theta and the
 * type; only the default type (also spelled "mrope") is supported. */
static eng_status cfg_rope(const cfg_src *s, textenc_config *c) {
    const json_value *objs[2] = {cfg_get(s, "rope_parameters"), cfg_get(s, "rope_scaling")};
    bool found = false;
    c->theta = 1000000.0; /* Qwen2_5_VLTextConfig.default_theta */
    for (int i = 0; i < 2; i++) {
        const json_value *o = objs[i];
        if (!o) continue;
        if (o->type != JSON_OBJECT)
            return eng_err_set(s->err, ENG_ERR_FORMAT, "'%s': %s must be an object", s->path,
                               i ? "rope_scaling" : "rope_parameters");
        const json_value *t = json_get(o, "rope_type");
        if (!t || t->type == JSON_NULL) t = json_get(o, "type");
        if (t && t->type != JSON_NULL) {
            const char *name;
            if (json_as_string(t, "rope_type", &name, NULL, s->err) != ENG_OK)
                return eng_err_prefix(s->err, "'%s'", s->path);
            if (strcmp(name, "default") != 0 && strcmp(name, "mrope") != 0)
                return eng_err_set(s->err, ENG_ERR_UNSUPPORTED,
                                   "'%s': rope type '%s' is not supported (only the default)",
                                   s->path, name);
        }
        if (!found) {
            eng_status st = cfg_double(s, o, "rope_theta", &c->theta, &found);
            if (st != ENG_OK) return st;
        }
    }
    if (!found) {
        const json_value *v = cfg_get(s, "rope_theta");
        if (v && json_as_double(v, "rope_theta", &c->theta, s->err) != ENG_OK)
            return eng_err_prefix(s->err, "'%s'", s->path);
    }
    if (!(c->theta > 1.0) || !isfinite(c->theta))
        return eng_err_set(s->err, ENG_ERR_FORMAT, "'%s': rope_theta = %g must be > 1", s->path,
                           c->theta);
    return ENG_OK;
}

/* Features a text-to-image encoder never needs: reject rather than compute something else. */
static eng_status cfg_unsupported(const cfg_src *s) {
    const json_value *v = cfg_get(s, "hidden_act");
    if (v) {
        const char *act;
        if (json_as_string(v, "hidden_act", &act, NULL, s->err) != ENG_OK)
            return eng_err_prefix(s->err, "'%s'", s->path);
        if (strcmp(act, "silu") != 0)
            return eng_err_set(s->err, ENG_ERR_UNSUPPORTED,
                               "'%s': hidden_act '%s' is not supported (silu)", s->path, act);
    }
    v = cfg_get(s, "use_sliding_window");
    bool sliding = false;
    if (v && json_as_bool(v, "use_sliding_window", &sliding, s->err) != ENG_OK)
        return eng_err_prefix(s->err, "'%s'", s->path);
    if (sliding)
        return eng_err_set(
            s->err, ENG_ERR_UNSUPPORTED,
            "'%s': use_sliding_window = true is not supported (Qwen-Image uses false)", s->path);
    v = cfg_get(s, "layer_types");
    for (size_t i = 0; v && i < json_len(v); i++) {
        const char *lt;
        if (json_as_string(json_at(v, i), "layer_types", &lt, NULL, s->err) != ENG_OK)
            return eng_err_prefix(s->err, "'%s'", s->path);
        if (strcmp(lt, "full_attention") != 0)
            return eng_err_set(s->err, ENG_ERR_UNSUPPORTED,
                               "'%s': layer_types[%zu] = '%s' is not supported", s->path, i, lt);
    }
    return ENG_OK;
}

static eng_status load_config(const char *dir, textenc_config *c, eng_error *err) {
    char path[ENG_PATH_CAP];
    json_value *root = NULL;
    eng_status st = eng_join_path(path, sizeof path, dir, "config.json", err);
    if (st == ENG_OK) st = eng_read_json(path, &root, err);
    if (st != ENG_OK) return st;
    memset(c, 0, sizeof *c);
    cfg_src s = {.root = root, .path = path, .err = err};
    const json_value *tc = json_get(root, "text_config");
    if (tc && tc->type == JSON_OBJECT)
        s.tc = tc;
    else if (tc && tc->type != JSON_NULL) {
        st = eng_err_set(err, ENG_ERR_FORMAT, "'%s': text_config must be an object", path);
        goto done;
    }
    /* defaults: transformers 5.24 Qwen2_5_VLTextConfig */
    if ((st = cfg_int(&s, "vocab_size", 152064, 1, TE_MAX_VOCAB, &c->vocab)) ||
        (st = cfg_int(&s, "hidden_size", 8192, 2, TE_MAX_DIM, &c->hidden)) ||
        (st = cfg_int(&s, "intermediate_size", 29568, 1, TE_MAX_INTERMEDIATE, &c->intermediate)) ||
        (st = cfg_int(&s, "num_hidden_layers", 80, 1, 4096, &c->n_layers)) ||
        (st = cfg_int(&s, "num_attention_heads", 64, 1, 4096, &c->n_heads)) ||
        (st = cfg_int(&s, "num_key_value_heads", c->n_heads, 1, 4096, &c->n_kv_heads)) ||
        (st = cfg_int(&s, "max_position_embeddings", 32768, 1, INT32_MAX, &c->max_positions)))
        goto done;
    double eps = 1e-5;
    bool found;
    if ((st = cfg_double(&s, s.tc, "rms_norm_eps", &eps, &found))) goto done;
    if (!found && (st = cfg_double(&s, root, "rms_norm_eps", &eps, &found))) goto done;
    if (!(eps > 0.0 && eps < 1.0)) {
        st = eng_err_set(err, ENG_ERR_FORMAT, "'%s': rms_norm_eps = %g outside (0, 1)", path, eps);
        goto done;
    }
    c->eps = (float)eps;
    if ((st = cfg_rope(&s, c)) || (st = cfg_unsupported(&s))) goto done;
    if (c->hidden % c->n_heads != 0) {
        st = eng_err_set(err, ENG_ERR_FORMAT,
                         "'%s': hidden_size %d is not a multiple of num_attention_heads %d", path,
                         c->hidden, c->n_heads);
        goto done;
    }
    c->head_dim = c->hidden / c->n_heads; /* Qwen2_5_VLAttention: hidden_size // num_heads */
    int32_t hd = c->head_dim;
    if ((st = cfg_int(&s, "head_dim", c->head_dim, 1, TE_MAX_DIM, &hd))) goto done;
    if (hd != c->head_dim) {
        st = eng_err_set(err, ENG_ERR_UNSUPPORTED,
                         "'%s': head_dim %d != hidden_size / num_attention_heads = %d", path, hd,
                         c->head_dim);
        goto done;
    }
    if (c->head_dim % 2) {
        st = eng_err_set(err, ENG_ERR_FORMAT, "'%s': head dim %d must be even for RoPE", path,
                         c->head_dim);
        goto done;
    }
    if (c->n_heads % c->n_kv_heads != 0) {
        st = eng_err_set(err, ENG_ERR_FORMAT,
                         "'%s': num_attention_heads %d is not a multiple of num_key_value_heads %d",
                         path, c->n_heads, c->n_kv_heads);
        goto done;
    }
done:
    json_free(root);
    return st;
}

/* ---- weights ----------------------------------------------------------------------------- */

typedef struct loader {
    const eng_weights *w;
    const char *prefix; /* "model." or "model.language_model." */
    float *owned;       /* f32 pool for biases and norm weights */
    size_t used, cap;
    eng_error *err;
} loader;

static eng_status load_vec(loader *ld, const char *name, int64_t n, const float **out) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", ld->prefix, name);
    eng_tensor t;
    eng_status st = weights_tensor_float(ld->w, full, 1, &n, &t, ld->err);
    if (st != ENG_OK) return st;
    if (ld->used + (size_t)n > ld->cap)
        return eng_err_set(ld->err, ENG_ERR_FORMAT, "internal: f32 pool too small at '%s'", full);
    float *dst = ld->owned + ld->used;
    ld->used += (size_t)n;
    *out = dst;
    return eng_convert_to_f32(dst, t.data, t.dtype, n, ld->err);
}

static eng_status load_linear(loader *ld, const char *name, int64_t n_out, int64_t n_in, bool bias,
                              textenc_linear *L) {
    char full[256];
    int64_t shape[2] = {n_out, n_in};
    snprintf(full, sizeof full, "%s%s.weight", ld->prefix, name);
    eng_status st = weights_tensor_float(ld->w, full, 2, shape, &L->w, ld->err);
    if (st != ENG_OK) return st;
    L->n_out = n_out;
    L->n_in = n_in;
    L->b = NULL;
    if (!bias) return ENG_OK;
    snprintf(full, sizeof full, "%s.bias", name);
    return load_vec(ld, full, n_out, &L->b);
}

static eng_status load_layer(loader *ld, const textenc_config *c, int i, textenc_layer *l) {
    const int64_t D = c->hidden, QD = (int64_t)c->n_heads * c->head_dim,
                  KD = (int64_t)c->n_kv_heads * c->head_dim, I = c->intermediate;
    char p[128];
    eng_status st;
#define LIN(field, suffix, o, in, bias)                                                            \
    do {                                                                                           \
        snprintf(p, sizeof p, "layers.%d.%s", i, suffix);                                          \
        if ((st = load_linear(ld, p, o, in, bias, &l->field)) != ENG_OK) return st;                \
    } while (0)
#define VEC(field, suffix)                                                                         \
    do {                                                                                           \
        snprintf(p, sizeof p, "layers.%d.%s", i, suffix);                                          \
        if ((st = load_vec(ld, p, D, &l->field)) != ENG_OK) return st;                             \
    } while (0)
    VEC(ln_attn, "input_layernorm.weight");
    LIN(q, "self_attn.q_proj", QD, D, true);
    LIN(k, "self_attn.k_proj", KD, D, true);
    LIN(v, "self_attn.v_proj", KD, D, true);
    LIN(o, "self_attn.o_proj", D, QD, false);
    VEC(ln_mlp, "post_attention_layernorm.weight");
    LIN(gate, "mlp.gate_proj", I, D, false);
    LIN(up, "mlp.up_proj", I, D, false);
    LIN(down, "mlp.down_proj", D, I, false);
#undef LIN
#undef VEC
    return ENG_OK;
}

/* inv_freq[k] = 1 / theta^(2k / d) exactly as transformers computes it in fp32:
 * 1.0 / (base ** (torch.arange(0, d, 2, dtype=float) / d)). */
static void rope_inv_freq(double theta, int d, float *inv) {
    const float base = (float)theta;
    for (int k = 0; k < d / 2; k++) {
        float e = (float)(2 * k) / (float)d;
        float p = (float)pow((double)base, (double)e);
        inv[k] = 1.0f / p;
    }
}

eng_status textenc_load(const char *dir, textenc_model **out, eng_error *err) {
    *out = NULL;
    textenc_model *m = calloc(1, sizeof *m);
    if (!m) return eng_err_set(err, ENG_ERR_OOM, "text encoder: out of memory");
    eng_status st = load_config(dir, &m->cfg, err);
    if (st != ENG_OK) goto fail;
    const textenc_config *c = &m->cfg;

    char wpath[ENG_PATH_CAP];
    static const char *const bases[] = {"model", NULL};
    if ((st = eng_find_weights(dir, bases, wpath, sizeof wpath, err))) goto fail;
    if ((st = eng_weights_open(wpath, &m->weights, err))) goto fail;

    /* naming: transformers 5 saves model.language_model.*, Qwen-Image ships model.* */
    if (weights_has(m->weights, "model.language_model.embed_tokens.weight") &&
        weights_has(m->weights, "model.embed_tokens.weight")) {
        st = eng_err_set(err, ENG_ERR_FORMAT,
                         "'%s' has both model.embed_tokens.weight and "
                         "model.language_model.embed_tokens.weight: two text encoders in one file?",
                         wpath);
        goto fail;
    }
    if (weights_has(m->weights, "model.language_model.embed_tokens.weight")) {
        snprintf(m->prefix, sizeof m->prefix, "model.language_model.");
    } else if (weights_has(m->weights, "model.embed_tokens.weight")) {
        snprintf(m->prefix, sizeof m->prefix, "model.");
    } else {
        st = eng_err_set(err, ENG_ERR_FORMAT,
                         "'%s' has neither model.embed_tokens.weight nor "
                         "model.language_model.embed_tokens.weight "
                         "(not a Qwen2.5-VL text encoder?)",
                         wpath);
        goto fail;
    }

    const size_t D = (size_t)c->hidden, QD = (size_t)c->n_heads * (size_t)c->head_dim,
                 KD = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    size_t cap = D + (size_t)c->head_dim / 2 + (size_t)c->n_layers * (2 * D + QD + 2 * KD);
    m->owned = eng_aligned_alloc(cap * sizeof(float));
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->owned || !m->layers) {
        st = eng_err_set(err, ENG_ERR_OOM, "text encoder: out of memory for %zu biases", cap);
        goto fail;
    }
    loader ld = {.w = m->weights, .prefix = m->prefix, .owned = m->owned, .cap = cap, .err = err};
    char name[256];
    int64_t eshape[2] = {c->vocab, c->hidden};
    snprintf(name, sizeof name, "%sembed_tokens.weight", m->prefix);
    if ((st = weights_tensor_float(m->weights, name, 2, eshape, &m->embed, err))) goto fail;
    for (int i = 0; i < c->n_layers; i++)
        if ((st = load_layer(&ld, c, i, &m->layers[i]))) goto fail;
    if ((st = load_vec(&ld, "norm.weight", c->hidden, &m->norm))) goto fail;
    m->inv_freq = m->owned + ld.used;
    rope_inv_freq(c->theta, c->head_dim, m->inv_freq);
    /* more layers in the checkpoint than config.json says is a mismatch, not a silent trim */
    snprintf(name, sizeof name, "%slayers.%d.input_layernorm.weight", m->prefix, c->n_layers);
    if (weights_has(m->weights, name)) {
        st = eng_err_set(err, ENG_ERR_FORMAT,
                         "'%s' has more layers than num_hidden_layers = %d in config.json", wpath,
                         c->n_layers);
        goto fail;
    }
    *out = m;
    return ENG_OK;
fail:
    eng_err_prefix(err, "text encoder '%s'", dir);
    textenc_free(m);
    return st;
}

void textenc_free(textenc_model *m) {
    if (!m) return;
    eng_weights_free(m->weights);
    eng_free(m->owned);
    free(m->layers);
    free(m);
}

/* ---- forward ----------------------------------------------------------------------------- */

/* Activation buffers, one arena per forward (D = hidden, QD = heads * hd, KD = kv_heads * hd,
 * c = min(n, TE_MLP_CHUNK), I = intermediate):
 *   X (n, max(D, QD)) normed rows / attention rows     Q (n, QD), K, V (n, KD) projections
 *   Qh (heads, n, hd), Kh, Vh (kv_heads, n, hd)        T (n, D) o_proj / down outputs
 *   G, U (c, I) gate and up                            cos, sin (n, hd/2)    ones (D)
 * The residual stream lives in the caller's output buffer. */
size_t textenc_activation_bytes(const textenc_config *c, int64_t n) {
    const size_t N = (size_t)n, D = (size_t)c->hidden, hd = (size_t)c->head_dim;
    const size_t QD = (size_t)c->n_heads * hd, KD = (size_t)c->n_kv_heads * hd;
    const size_t ch = N < TE_MLP_CHUNK ? N : TE_MLP_CHUNK;
    size_t floats = N * (D > QD ? D : QD) + 2 * N * QD + 4 * N * KD + N * D +
                    2 * ch * (size_t)c->intermediate + N * hd + D;
    return floats * sizeof(float) + 16 * ENG_ALIGN;
}

typedef struct embed_job {
    const eng_tensor *table; /* (vocab, D) */
    const int32_t *ids;
    float *h; /* (n, D) */
    int64_t n, D;
} embed_job;

static void embed_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    const embed_job *j = (const embed_job *)ctx;
    const size_t esz = eng_dtype_size(j->table->dtype);
    const int64_t r0 = task * 16, r1 = r0 + 16 < j->n ? r0 + 16 : j->n;
    for (int64_t r = r0; r < r1; r++) {
        const unsigned char *row =
            (const unsigned char *)j->table->data + (size_t)j->ids[r] * (size_t)j->D * esz;
        /* cannot fail: the table's dtype was checked at load (f32/f16/bf16) */
        eng_convert_to_f32(j->h + r * j->D, row, j->table->dtype, j->D, NULL);
    }
}

/* g (rows, I) = silu(g) * u, threaded over rows. */
typedef struct swiglu_job {
    const eng_kernels *k;
    float *g;
    const float *u;
    int64_t rows, I, chunk;
} swiglu_job;

static void swiglu_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    const swiglu_job *j = (const swiglu_job *)ctx;
    const int64_t r0 = task * j->chunk, r1 = r0 + j->chunk < j->rows ? r0 + j->chunk : j->rows;
    for (int64_t r = r0; r < r1; r++) {
        float *g = j->g + r * j->I;
        const float *u = j->u + r * j->I;
        j->k->silu(g, g, j->I);
        for (int64_t i = 0; i < j->I; i++) g[i] *= u[i];
    }
}

static void swiglu(eng_runtime *rt, float *g, const float *u, int64_t rows, int64_t I) {
    swiglu_job j = {.k = &rt->kern, .g = g, .u = u, .rows = rows, .I = I};
    j.chunk = (16384 + I - 1) / I;
    if (j.chunk < 1) j.chunk = 1;
    eng_pool_run(rt->pool, (rows + j.chunk - 1) / j.chunk, swiglu_task, &j);
}

static eng_status lin(eng_runtime *rt, float *y, const float *x, int64_t rows,
                      const textenc_linear *L, eng_error *err) {
    return cpu_linear(rt, y, x, L->w.data, L->w.dtype, L->b, rows, L->n_out, L->n_in, err);
}

typedef struct fwd {
    eng_runtime *rt;
    const textenc_config *c;
    int64_t n, D, QD, KD, chunk;
    float *H; /* (n, D) residual stream = the output buffer */
    float *X, *Q, *K, *V, *Qh, *Kh, *Vh, *T, *G, *U, *cos, *sin, *ones;
    const eng_cancel *cancel;
    eng_error *err;
} fwd;

static eng_status layer_forward(fwd *f, const textenc_layer *l) {
    eng_runtime *rt = f->rt;
    const textenc_config *c = f->c;
    const int64_t n = f->n, hd = c->head_dim;
    eng_status st;
    /* self-attention block */
    rows_rmsnorm(rt, f->X, f->H, n, f->D, l->ln_attn, c->eps);
    if ((st = lin(rt, f->Q, f->X, n, &l->q, f->err)) ||
        (st = lin(rt, f->K, f->X, n, &l->k, f->err)) ||
        (st = lin(rt, f->V, f->X, n, &l->v, f->err)))
        return st;
    rows_rope_half(rt, f->Q, n, c->n_heads, hd, f->cos, f->sin);
    rows_rope_half(rt, f->K, n, c->n_kv_heads, hd, f->cos, f->sin);
    rows_to_heads(rt, f->Qh, f->Q, n, c->n_heads, hd);
    rows_to_heads(rt, f->Kh, f->K, n, c->n_kv_heads, hd);
    rows_to_heads(rt, f->Vh, f->V, n, c->n_kv_heads, hd);
    float *O = f->Q; /* (heads, n, hd): Q is free once transposed */
    if ((st = cpu_attention(rt, O, f->Qh, f->Kh, f->Vh, NULL, 1, c->n_heads, c->n_kv_heads, n, n,
                            hd, 1.0f / sqrtf((float)hd), f->cancel, f->err)))
        return st;
    heads_to_rows(rt, f->X, O, n, c->n_heads, hd);
    if ((st = lin(rt, f->T, f->X, n, &l->o, f->err))) return st;
    rows_gated_add(rt, f->H, f->ones, f->T, n, f->D);
    /* MLP block, in row chunks */
    for (int64_t r0 = 0; r0 < n; r0 += f->chunk) {
        const int64_t rows = n - r0 < f->chunk ? n - r0 : f->chunk;
        float *h = f->H + r0 * f->D, *x = f->X + r0 * f->D, *t = f->T + r0 * f->D;
        rows_rmsnorm(rt, x, h, rows, f->D, l->ln_mlp, c->eps);
        if ((st = lin(rt, f->G, x, rows, &l->gate, f->err)) ||
            (st = lin(rt, f->U, x, rows, &l->up, f->err)))
            return st;
        swiglu(rt, f->G, f->U, rows, c->intermediate);
        if ((st = lin(rt, t, f->G, rows, &l->down, f->err))) return st;
        rows_gated_add(rt, h, f->ones, t, rows, f->D);
    }
    return ENG_OK;
}

/* cos/sin (n, hd/2): angle = fp32(position * inv_freq) as transformers' rotary embedding, then
 * cos/sin of that fp32 angle, rounded once. */
static void rope_tables(const textenc_model *m, int64_t n, float *cs, float *sn) {
    const int64_t half = m->cfg.head_dim / 2;
    for (int64_t p = 0; p < n; p++)
        for (int64_t k = 0; k < half; k++) {
            float ang = (float)p * m->inv_freq[k];
            cs[p * half + k] = (float)cos((double)ang);
            sn[p * half + k] = (float)sin((double)ang);
        }
}

eng_status textenc_forward(eng_runtime *rt, const textenc_model *m, const int32_t *ids, int64_t n,
                           float *out, const eng_cancel *cancel, eng_error *err) {
    const textenc_config *c = &m->cfg;
    fwd f = {.rt = rt,
             .c = c,
             .n = n,
             .D = c->hidden,
             .QD = (int64_t)c->n_heads * c->head_dim,
             .KD = (int64_t)c->n_kv_heads * c->head_dim,
             .chunk = n < TE_MLP_CHUNK ? n : TE_MLP_CHUNK,
             .H = out,
             .cancel = cancel,
             .err = err};
    const size_t need = textenc_activation_bytes(c, n);
    unsigned char *ws = eng_runtime_workspace(rt, ENG_WS_ACTIVATIONS, need, "text encoder", err);
    if (!ws) return ENG_ERR_OOM;
    eng_arena ar = {.base = ws, .cap = need};  /* the runtime's kept workspace */
    eng_status st = ENG_OK;
    const int64_t xw = f.D > f.QD ? f.D : f.QD, half = c->head_dim / 2;
#define ALLOC(ptr, count)                                                                          \
    if (!((ptr) = eng_arena_floats(&ar, (count), #ptr, err))) {                                    \
        st = ENG_ERR_OOM;                                                                          \
        goto done;                                                                                 \
    }
    ALLOC(f.X, n * xw);
    ALLOC(f.Q, n * f.QD);
    ALLOC(f.K, n * f.KD);
    ALLOC(f.V, n * f.KD);
    ALLOC(f.Qh, n * f.QD);
    ALLOC(f.Kh, n * f.KD);
    ALLOC(f.Vh, n * f.KD);
    ALLOC(f.T, n * f.D);
    ALLOC(f.G, f.chunk * c->intermediate);
    ALLOC(f.U, f.chunk * c->intermediate);
    ALLOC(f.cos, n * half);
    ALLOC(f.sin, n * half);
    ALLOC(f.ones, f.D);
#undef ALLOC
    for (int64_t i = 0; i < f.D; i++) f.ones[i] = 1.0f;
    rope_tables(m, n, f.cos, f.sin);

    embed_job ej = {.table = &m->embed, .ids = ids, .h = f.H, .n = n, .D = f.D};
    eng_pool_run(rt->pool, (n + 15) / 16, embed_task, &ej);

    for (int i = 0; i < c->n_layers; i++) {
        if (eng_cancel_requested(cancel)) {
            st = eng_err_set(err, ENG_ERR_CANCELLED,
                             "text encoder: cancelled before layer %d of %d", i, c->n_layers);
            goto done;
        }
        if ((st = layer_forward(&f, &m->layers[i]))) goto done;
    }
    rows_rmsnorm(rt, f.H, f.H, n, f.D, m->norm, c->eps);
done:
    return st;
}

/* ---- public API (engine.h, text encoder section) ------------------------------------------ */

static void free_slot(void *p) {
    textenc_free((textenc_model *)p);
}

/* Loads on first use; returns the loaded model (call with the lock NOT held). */
static eng_status loaded(eng_model *m, textenc_model **out, eng_error *err) {
    *out = NULL;
    if (!m) return eng_err_set(err, ENG_ERR_INVALID_ARG, "model is NULL");
    char dir[ENG_PATH_CAP];
    eng_status st = ENG_OK;
    pthread_mutex_lock(&m->rt->lock);
    if (!m->extra[ENG_COMP_TEXT_ENCODER]) {
        textenc_model *t = NULL;
        st = eng_model_component_dir(m, "text_encoder", dir, sizeof dir, err);
        if (st == ENG_OK) st = textenc_load(dir, &t, err);
        if (st == ENG_OK) {
            m->extra[ENG_COMP_TEXT_ENCODER] = t;
            m->extra_free[ENG_COMP_TEXT_ENCODER] = free_slot;
        }
    }
    *out = (textenc_model *)m->extra[ENG_COMP_TEXT_ENCODER];
    pthread_mutex_unlock(&m->rt->lock);
    return st;
}

eng_status eng_model_load_text_encoder(eng_model *m, eng_error *err) {
    textenc_model *t;
    return loaded(m, &t, err);
}

eng_status eng_text_encoder_get_info(eng_model *m, eng_text_encoder_info *out, eng_error *err) {
    textenc_model *t;
    if (!out) return eng_err_set(err, ENG_ERR_INVALID_ARG, "text_encoder_get_info: out is NULL");
    eng_status st = loaded(m, &t, err);
    if (st != ENG_OK) return st;
    const textenc_config *c = &t->cfg;
    memset(out, 0, sizeof *out);
    out->hidden = c->hidden;
    out->n_layers = c->n_layers;
    out->n_heads = c->n_heads;
    out->n_kv_heads = c->n_kv_heads;
    out->head_dim = c->head_dim;
    out->intermediate = c->intermediate;
    out->vocab = c->vocab;
    out->rms_eps = c->eps;
    out->rope_theta = (float)c->theta;
    out->weight_dtype = t->layers[0].q.w.dtype;
    out->embed_dtype = t->embed.dtype;
    out->max_tokens = c->max_positions < TE_MAX_TOKENS ? c->max_positions : TE_MAX_TOKENS;
    return ENG_OK;
}

eng_status eng_text_encoder_activation_bytes(eng_model *m, int64_t n, size_t *out, eng_error *err) {
    textenc_model *t;
    if (!out)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "text_encoder_activation_bytes: out is NULL");
    eng_status st = loaded(m, &t, err);
    if (st != ENG_OK) return st;
    if (n < 1 || n > TE_MAX_TOKENS)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "token count %lld out of range", (long long)n);
    *out = textenc_activation_bytes(&t->cfg, n);
    return ENG_OK;
}

eng_status eng_text_encoder_forward(eng_model *m, const int32_t *ids, int64_t n, float *out,
                                    size_t out_bytes, const eng_request *req, eng_error *err) {
    eng_cpu_clear_upper();  /* scalar RoPE tables first: see internal.h */
    textenc_model *t;
    eng_status st = loaded(m, &t, err);
    if (st != ENG_OK) return st;
    const textenc_config *c = &t->cfg;
    if (!ids || !out)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "text_encoder_forward: ids and out are required");
    const int64_t max_n = c->max_positions < TE_MAX_TOKENS ? c->max_positions : TE_MAX_TOKENS;
    if (n < 1 || n > max_n)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "text_encoder_forward: %lld tokens, expected 1 to %lld", (long long)n,
                           (long long)max_n);
    size_t need = (size_t)n * (size_t)c->hidden * sizeof(float);
    if (out_bytes < need)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "text_encoder_forward: out has %zu bytes, needs %zu", out_bytes, need);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return eng_err_set(
                err, ENG_ERR_INVALID_ARG,
                "text_encoder_forward: token id %d at position %lld is outside [0, %d)", ids[i],
                (long long)i, c->vocab);
    pthread_mutex_lock(&m->rt->lock);
    st = textenc_forward(m->rt, t, ids, n, out, req ? req->cancel : NULL, err);
    pthread_mutex_unlock(&m->rt->lock);
    return st;
}

eng_status eng_text_encoder_release(eng_model *m, eng_error *err) {
    if (!m) return eng_err_set(err, ENG_ERR_INVALID_ARG, "model is NULL");
    eng_status st = ENG_OK;
    pthread_mutex_lock(&m->rt->lock);
    const textenc_model *t = (const textenc_model *)m->extra[ENG_COMP_TEXT_ENCODER];
    if (t) st = eng_weights_advise(t->weights, MADV_DONTNEED, err);
    pthread_mutex_unlock(&m->rt->lock);
    return st;
}
