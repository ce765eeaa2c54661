/* kern_elem_scalar.c - the row kernels in portable C: rmsnorm, layernorm, silu, gelu_tanh,
 * softmax, rope_pairs, rope_half, upsample2x. This file is the specification: the AVX2,
 * AVX-512 and NEON versions compute the same functions and are tested against it
 * (tests/c/test_kernels.c), which in turn is tested against double-precision references.
 *
 * References: transformers Qwen2RMSNorm (mean of squares in f32, x * rsqrt(ms + eps) * w),
 * torch.nn.LayerNorm (biased variance), F.silu, F.gelu(approximate="tanh"), F.softmax,
 * diffusers QwenImage apply_rotary_emb_qwen (interleaved pairs), transformers Qwen2
 * rotate_half (half split), F.interpolate(scale_factor=2, mode="nearest").
 *
 * Accumulation is in float (like the SIMD versions), made accurate with pairwise summation
 * (error grows like log2(n) ulp instead of n ulp); layernorm uses two passes (mean, then the
 * mean of squared deviations), so a large mean does not cancel the variance away. */
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "simd_elem.h"

/* Below this length a sum is a plain loop; above it, the halves are summed separately. */
#define PAIRWISE_BLOCK 32

/* sum x[i], i < n (n >= 0) */
static float sum_pairwise(const float *x, int64_t n) {
    if (n <= PAIRWISE_BLOCK) {
        float s = 0.0f;
        for (int64_t i = 0; i < n; i++) s += x[i];
        return s;
    }
    int64_t h = n / 2;
    return sum_pairwise(x, h) + sum_pairwise(x + h, n - h);
}

/* sum (x[i] - c)^2, i < n (n >= 0) */
static float sumsq_dev_pairwise(const float *x, int64_t n, float c) {
    if (n <= PAIRWISE_BLOCK) {
        float s = 0.0f;
        for (int64_t i = 0; i < n; i++) {
            float d = x[i] - c;
            s += d * d;
        }
        return s;
    }
    int64_t h = n / 2;
    return sumsq_dev_pairwise(x, h, c) + sumsq_dev_pairwise(x + h, n - h, c);
}

/* y, x (n); w (n) or NULL. y = x / sqrt(mean(x^2) + eps) * w. In place ok. */
static void rmsnorm_scalar(float *y, const float *x, const float *w, int64_t n, float eps) {
    float ms = sumsq_dev_pairwise(x, n, 0.0f) / (float)n;
    float scale = 1.0f / sqrtf(ms + eps);
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] * scale;
        y[i] = w ? v * w[i] : v;
    }
}

/* y, x (n); g, b (n) or NULL. y = (x - mean) / sqrt(var + eps) * g + b. In place ok. */
static void layernorm_scalar(float *y, const float *x, const float *g, const float *b,
                             int64_t n, float eps) {
    float mean = sum_pairwise(x, n) / (float)n;
    float var = sumsq_dev_pairwise(x, n, mean) / (float)n;
    float rstd = 1.0f / sqrtf(var + eps);
    for (int64_t i = 0; i < n; i++) {
        float v = (x[i] - mean) * rstd;
        if (g) v = v * g[i];
        if (b) v = v + b[i];
        y[i] = v;
    }
}

/* y, x (n). y = x / (1 + exp(-x)): exp overflow gives x / inf = -0 for x << 0. In place ok. */
static void silu_scalar(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

/* y, x (n). gelu_tanh via x / (1 + exp(-2u)); see simd_elem.h. In place ok. */
static void gelu_tanh_scalar(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        float a = (v + ENG_GELU_K * ((v * v) * v)) * ENG_GELU_M2C; /* -2u */
        y[i] = v / (1.0f + expf(a));
    }
}

/* y, x (n), n >= 1. y = exp(x - max) / sum. -inf entries give 0. In place ok. */
static void softmax_scalar(float *y, const float *x, int64_t n) {
    float m = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > m) m = x[i];
    for (int64_t i = 0; i < n; i++) y[i] = expf(x[i] - m);
    float inv = 1.0f / sum_pairwise(y, n);
    for (int64_t i = 0; i < n; i++) y[i] *= inv;
}

/* x (n_pairs, 2) in place; cos, sin (n_pairs). Rotates each interleaved pair. */
static void rope_pairs_scalar(float *x, const float *cos, const float *sin, int64_t n_pairs) {
    for (int64_t m = 0; m < n_pairs; m++) {
        float a = x[2 * m], b = x[2 * m + 1], c = cos[m], s = sin[m];
        x[2 * m] = a * c - b * s;
        x[2 * m + 1] = a * s + b * c;
    }
}

/* x (2, half) in place; cos, sin (half). Rotates (x[m], x[m + half]). */
static void rope_half_scalar(float *x, const float *cos, const float *sin, int64_t half) {
    for (int64_t m = 0; m < half; m++) {
        float a = x[m], b = x[m + half], c = cos[m], s = sin[m];
        x[m] = a * c - b * s;
        x[m + half] = b * c + a * s;
    }
}

/* y (2h, 2w), x (h, w): y[r][c] = x[r / 2][c / 2]. */
static void upsample2x_scalar(float *y, const float *x, int64_t h, int64_t w) {
    for (int64_t r = 0; r < h; r++) {
        const float *xr = x + r * w; /* (w) */
        float *y0 = y + 2 * r * 2 * w; /* (2, 2w): output rows 2r and 2r + 1 */
        for (int64_t c = 0; c < w; c++) y0[2 * c] = y0[2 * c + 1] = xr[c];
        memcpy(y0 + 2 * w, y0, (size_t)(2 * w) * sizeof(float));
    }
}

void eng_kern_elem_scalar(eng_kernels *t) {
    t->rmsnorm = rmsnorm_scalar;
    t->layernorm = layernorm_scalar;
    t->silu = silu_scalar;
    t->gelu_tanh = gelu_tanh_scalar;
    t->softmax = softmax_scalar;
    t->rope_pairs = rope_pairs_scalar;
    t->rope_half = rope_half_scalar;
    t->upsample2x = upsample2x_scalar;
}
