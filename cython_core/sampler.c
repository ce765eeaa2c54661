/* sampler.c - counter-based Gaussian noise (Philox4x32-10 + Box-Muller) and the flow-matching
 * Euler denoising loop with true CFG (diffusers QwenImagePipeline + FlowMatchEulerDiscrete-
 * Scheduler, fp32), calling the MMDiT once (twice with CFG) per step. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mmdit.h"
#include "model.h"
#include "sampler.h"

/* ---- Philox4x32-10 ------------------------------------------------------------------- */

void eng_philox4x32_10(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[4]) {
    uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
    uint32_t k0 = key_in[0], k1 = key_in[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

void eng_randn(uint64_t seed, uint64_t offset, float *out, int64_t n) {
    eng_cpu_clear_upper();  /* legacy-SSE double math below: see internal.h */
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const double two_pi = 6.283185307179586476925286766559;
    for (int64_t j = 0; j < n;) {
        uint64_t i = offset + (uint64_t)j, block = i / 4;
        uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), 0, 0}, u[4];
        eng_philox4x32_10(ctr, key, u);
        double z[4];
        for (int h = 0; h < 2; h++) {
            double a = ((double)u[2 * h] + 0.5) * (1.0 / 4294967296.0);
            double b = ((double)u[2 * h + 1] + 0.5) * (1.0 / 4294967296.0);
            double r = sqrt(-2.0 * log(a));
            z[2 * h] = r * cos(two_pi * b);
            z[2 * h + 1] = r * sin(two_pi * b);
        }
        for (uint64_t lane = i % 4; lane < 4 && j < n; lane++, j++) out[j] = (float)z[lane];
    }
}

/* eng_randn over the runtime's pool: contiguous pieces of the stream, each computed exactly as
 * one eng_randn call computes it (an element depends only on seed and its index), so the
 * result is bit-identical for every thread count. */
#define RANDN_PIECE 8192 /* elements per task (~0.2 ms) */

typedef struct randn_job {
    uint64_t seed, offset;
    float *out; /* (n,) */
    int64_t n;
} randn_job;

static void randn_task(void *ctx, int64_t task, int thread) {
    const randn_job *j = ctx;
    const int64_t i0 = task * RANDN_PIECE;
    const int64_t len = j->n - i0 < RANDN_PIECE ? j->n - i0 : RANDN_PIECE;
    eng_randn(j->seed, j->offset + (uint64_t)i0, j->out + i0, len);
}

eng_status eng_randn_parallel(eng_runtime *rt, uint64_t seed, uint64_t offset, float *out,
                              int64_t n, eng_error *err) {
    if (!rt) return eng_err_set(err, ENG_ERR_INVALID_ARG, "randn: runtime is NULL");
    if (n < 0 || (n > 0 && !out))
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "randn: n=%lld, out %s", (long long)n,
                           out ? "given" : "NULL");
    randn_job j = {.seed = seed, .offset = offset, .out = out, .n = n};
    eng_runtime_parallel(rt, (n + RANDN_PIECE - 1) / RANDN_PIECE, randn_task, &j);
    return ENG_OK;
}

/* ---- denoising loop ------------------------------------------------------------------ */

/* x0 (n_img, C*p*p) packed -> (C, h_lat, w_lat): token (y, x) of the (h_lat/p, w_lat/p) grid,
 * channel c*p*p + py*p + px -> pixel (p*y + py, p*x + px) of plane c. */
static void unpack_latents(float *dst, const float *src, int64_t c, int64_t p, int64_t gh,
                           int64_t gw) {
    const int64_t w_lat = gw * p, plane = gh * p * w_lat, width = c * p * p;
    for (int64_t y = 0; y < gh; y++)
        for (int64_t x = 0; x < gw; x++) {
            const float *tok = src + (y * gw + x) * width;
            for (int64_t ch = 0; ch < c; ch++)
                for (int64_t py = 0; py < p; py++)
                    for (int64_t px = 0; px < p; px++)
                        dst[ch * plane + (p * y + py) * w_lat + p * x + px] = tok[(ch * p + py) * p + px];
        }
}

/* v <- comb * |v| / |comb| with comb = neg + s (v - neg), norms over each token's row. */
static void cfg_combine(float *v, const float *neg, float s, int64_t rows, int64_t width) {
    for (int64_t r = 0; r < rows; r++) {
        float *vr = v + r * width;
        const float *nr = neg + r * width;
        double cn = 0, mn = 0;
        for (int64_t j = 0; j < width; j++) {
            float comb = nr[j] + s * (vr[j] - nr[j]);
            cn += (double)vr[j] * vr[j];
            mn += (double)comb * comb;
        }
        float ratio = mn > 0 ? (float)(sqrt(cn) / sqrt(mn)) : 0.0f;
        for (int64_t j = 0; j < width; j++) vr[j] = (nr[j] + s * (vr[j] - nr[j])) * ratio;
    }
}

eng_status eng_denoise(eng_model *m, const eng_denoise_params *p, float *latents,
                       size_t latents_bytes, const eng_request *req, eng_error *err) {
    eng_cpu_clear_upper();
    eng_status st = eng_model_load_transformer(m, err);
    if (st != ENG_OK) return st;
    if (!p || !latents || !p->txt || !p->sigmas)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "denoise: params, latents, txt and sigmas are required");
    const mmdit_config *c = &m->mmdit->cfg;
    if (p->n_steps < 1 || p->n_steps > 1000)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "denoise: steps %d outside [1, 1000]", p->n_steps);
    const int64_t unit = 8 * c->patch_size;
    if (p->height <= 0 || p->width <= 0 || p->height % unit || p->width % unit)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "denoise: height %d and width %d must be positive multiples of %lld",
                           p->height, p->width, (long long)unit);
    const int64_t gh = p->height / unit, gw = p->width / unit, n_img = gh * gw;
    const int64_t width = c->in_channels, out_w = (int64_t)c->patch_size * c->patch_size * c->out_channels;
    if (out_w != width)
        return eng_err_set(err, ENG_ERR_UNSUPPORTED, "denoise: transformer output width %lld != input width %lld",
                           (long long)out_w, (long long)width);
    if (latents_bytes != (size_t)(n_img * width) * sizeof(float))
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "denoise: latents buffer has %zu bytes, needs %lld (%lld x %lld floats)",
                           latents_bytes, (long long)(n_img * width * 4), (long long)n_img, (long long)width);
    for (int32_t i = 0; i <= p->n_steps; i++)
        if (!(p->sigmas[i] >= 0.0f && p->sigmas[i] <= 1.0f))
            return eng_err_set(err, ENG_ERR_INVALID_ARG, "denoise: sigma[%d] = %g outside [0, 1]", i, (double)p->sigmas[i]);
    if (p->n_txt < 1) return eng_err_set(err, ENG_ERR_INVALID_ARG, "denoise: empty prompt (n_txt %lld)", (long long)p->n_txt);
    if (p->txt_dim != c->joint_dim)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "denoise: prompt embeddings are %lld wide, the transformer takes %d (joint_attention_dim): "
                           "the text encoder does not match this transformer",
                           (long long)p->txt_dim, c->joint_dim);
    const int cfg = p->neg_txt && p->cfg_scale > 1.0f;
    if (cfg && p->n_neg < 1) return eng_err_set(err, ENG_ERR_INVALID_ARG, "denoise: empty negative prompt");

    const size_t n = (size_t)(n_img * width);
    float *v = malloc(n * sizeof(float)), *vneg = cfg ? malloc(n * sizeof(float)) : NULL;
    float *x0 = malloc(n * sizeof(float) * 2); /* packed x0, then unpacked */
    if (!v || !x0 || (cfg && !vneg)) {
        st = eng_err_set(err, ENG_ERR_OOM, "denoise: out of memory");
        goto done;
    }
    pthread_mutex_lock(&m->rt->lock);
    for (int32_t i = 0; i < p->n_steps && st == ENG_OK; i++) {
        const float sigma = p->sigmas[i], t = sigma * 1000.0f;
        mmdit_inputs in = {.latents = latents, .n_img = n_img, .txt = p->txt, .n_txt = p->n_txt,
                           .txt_mask = p->txt_mask, .sigma = t / 1000.0f, .height = p->height,
                           .width = p->width};
        st = mmdit_forward(m->rt, m->mmdit, &in, v, req ? req->cancel : NULL, err);
        if (st == ENG_OK && cfg) {
            in.txt = p->neg_txt, in.n_txt = p->n_neg, in.txt_mask = p->neg_mask;
            st = mmdit_forward(m->rt, m->mmdit, &in, vneg, req ? req->cancel : NULL, err);
            if (st == ENG_OK) cfg_combine(v, vneg, p->cfg_scale, n_img, width);
        }
        if (st != ENG_OK) break;
        if (req && req->on_step) {
            for (size_t j = 0; j < n; j++) x0[j] = latents[j] - sigma * v[j];
            const int64_t ch = width / ((int64_t)c->patch_size * c->patch_size);
            unpack_latents(x0 + n, x0, ch, c->patch_size, gh, gw);
            eng_step_info info = {.step = i + 1, .n_steps = p->n_steps, .sigma = sigma, .latent = x0 + n,
                                  .latent_c = (int32_t)ch, .latent_h = (int32_t)(gh * c->patch_size),
                                  .latent_w = (int32_t)(gw * c->patch_size)};
            pthread_mutex_unlock(&m->rt->lock); /* the callback may run other ops on the model */
            int stop = req->on_step(&info, req->on_step_user);
            pthread_mutex_lock(&m->rt->lock);
            if (stop) {
                st = eng_err_set(err, ENG_ERR_CANCELLED, "denoise: stopped by the step callback after step %d", i + 1);
                break;
            }
        }
        const float dt = p->sigmas[i + 1] - sigma;
        for (size_t j = 0; j < n; j++) latents[j] = latents[j] + dt * v[j];
    }
    pthread_mutex_unlock(&m->rt->lock);
done:
    free(v);
    free(vneg);
    free(x0);
    return st;
}
