/* kern_elem_neon.c - the row kernels (kernels.h "row kernels") for AArch64 Advanced SIMD: the
 * same functions as kern_elem_scalar.c (the specification), 4 floats per vector. NEON has no
 * masked loads, so a tail of 1..3 elements is copied into a padded 4-float stack vector, run
 * through the same vector code, and copied back (nothing is read or written past n).
 * Reductions use four accumulators (16 lanes) to hide add latency, inside a pairwise tree
 * (see LEAF) for accuracy; exp is eng_expq (vexp.h). */
#include "kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "simd_elem.h"
#include "vexp.h"

/* Loads r (0..4) floats from p into a vector, the other lanes set to pad. */
static inline float32x4_t load_tail(const float *p, int64_t r, float pad) {
    float buf[4] = {pad, pad, pad, pad};
    memcpy(buf, p, (size_t)r * sizeof(float));
    return vld1q_f32(buf);
}

/* Stores the first r (0..4) lanes of v to p. */
static inline void store_tail(float *p, int64_t r, float32x4_t v) {
    float buf[4];
    vst1q_f32(buf, v);
    memcpy(p, buf, (size_t)r * sizeof(float));
}

/* Reductions are pairwise over leaves of LEAF floats: inside a leaf, four accumulators (16
 * lanes, 8 sequential adds each); leaves are combined as a balanced tree. The rounding error
 * then grows like log2(n) ulp, as in the scalar pairwise sum, instead of n / 16 ulp. */
#define LEAF 128

/* Vector partial sums over x (n), 1 <= n <= LEAF: of (x[i] - c)^2 if sq, else of x[i]. */
static float32x4_t sum_leaf(const float *x, int64_t n, float32x4_t c, int sq) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        float32x4_t v0 = vld1q_f32(x + i), v1 = vld1q_f32(x + i + 4);
        float32x4_t v2 = vld1q_f32(x + i + 8), v3 = vld1q_f32(x + i + 12);
        if (sq) {
            v0 = vsubq_f32(v0, c);
            v1 = vsubq_f32(v1, c);
            v2 = vsubq_f32(v2, c);
            v3 = vsubq_f32(v3, c);
            a0 = vfmaq_f32(a0, v0, v0);
            a1 = vfmaq_f32(a1, v1, v1);
            a2 = vfmaq_f32(a2, v2, v2);
            a3 = vfmaq_f32(a3, v3, v3);
        } else {
            a0 = vaddq_f32(a0, v0);
            a1 = vaddq_f32(a1, v1);
            a2 = vaddq_f32(a2, v2);
            a3 = vaddq_f32(a3, v3);
        }
    }
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        if (sq) {
            v = vsubq_f32(v, c);
            a0 = vfmaq_f32(a0, v, v);
        } else {
            a0 = vaddq_f32(a0, v);
        }
    }
    if (i < n) {
        if (sq) {
            /* pad with c so the padded lanes contribute (c - c)^2 = 0 */
            float32x4_t v = vsubq_f32(load_tail(x + i, n - i, vgetq_lane_f32(c, 0)), c);
            a1 = vfmaq_f32(a1, v, v);
        } else {
            a1 = vaddq_f32(a1, load_tail(x + i, n - i, 0.0f));
        }
    }
    return vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3));
}

/* Vector partial sums over x (n), n >= 1, pairwise over leaves. */
static float32x4_t sum_tree(const float *x, int64_t n, float32x4_t c, int sq) {
    if (n <= LEAF) return sum_leaf(x, n, c, sq);
    int64_t h = (n + LEAF - 1) / LEAF / 2 * LEAF; /* whole leaves on the left, LEAF <= h < n */
    return vaddq_f32(sum_tree(x, h, c, sq), sum_tree(x + h, n - h, c, sq));
}

/* sum x[i], i < n */
static float sum_neon(const float *x, int64_t n) {
    return vaddvq_f32(sum_tree(x, n, vdupq_n_f32(0.0f), 0));
}

/* sum (x[i] - c)^2, i < n */
static float sumsq_dev_neon(const float *x, int64_t n, float c) {
    return vaddvq_f32(sum_tree(x, n, vdupq_n_f32(c), 1));
}

/* y, x (n); w (n) or NULL. In place ok. */
static void rmsnorm_neon(float *y, const float *x, const float *w, int64_t n, float eps) {
    float ms = sumsq_dev_neon(x, n, 0.0f) / (float)n;
    const float scale = 1.0f / sqrtf(ms + eps);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vmulq_n_f32(vld1q_f32(x + i), scale);
        if (w) v = vmulq_f32(v, vld1q_f32(w + i));
        vst1q_f32(y + i, v);
    }
    if (i < n) {
        int64_t r = n - i;
        float32x4_t v = vmulq_n_f32(load_tail(x + i, r, 0.0f), scale);
        if (w) v = vmulq_f32(v, load_tail(w + i, r, 0.0f));
        store_tail(y + i, r, v);
    }
}

/* y, x (n); g, b (n) or NULL. Two-pass mean / variance. In place ok. */
static void layernorm_neon(float *y, const float *x, const float *g, const float *b, int64_t n,
                           float eps) {
    float mean = sum_neon(x, n) / (float)n;
    float var = sumsq_dev_neon(x, n, mean) / (float)n;
    const float32x4_t vm = vdupq_n_f32(mean);
    const float rstd = 1.0f / sqrtf(var + eps);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vmulq_n_f32(vsubq_f32(vld1q_f32(x + i), vm), rstd);
        if (g) v = vmulq_f32(v, vld1q_f32(g + i));
        if (b) v = vaddq_f32(v, vld1q_f32(b + i));
        vst1q_f32(y + i, v);
    }
    if (i < n) {
        int64_t r = n - i;
        float32x4_t v = vmulq_n_f32(vsubq_f32(load_tail(x + i, r, 0.0f), vm), rstd);
        if (g) v = vmulq_f32(v, load_tail(g + i, r, 0.0f));
        if (b) v = vaddq_f32(v, load_tail(b + i, r, 0.0f));
        store_tail(y + i, r, v);
    }
}

static inline float32x4_t silu4(float32x4_t x) {
    float32x4_t e = eng_expq(vnegq_f32(x)); /* exp(-x) */
    return vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), e));
}

/* y, x (n). In place ok. */
static void silu_neon(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t v0 = silu4(vld1q_f32(x + i)), v1 = silu4(vld1q_f32(x + i + 4));
        vst1q_f32(y + i, v0);
        vst1q_f32(y + i + 4, v1);
    }
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, silu4(vld1q_f32(x + i)));
    if (i < n) store_tail(y + i, n - i, silu4(load_tail(x + i, n - i, 0.0f)));
}

/* x / (1 + exp(-2u)); argument evaluated exactly as in kern_elem_scalar.c (no FMA). */
static inline float32x4_t gelu4(float32x4_t x) {
    float32x4_t x3 = vmulq_f32(vmulq_f32(x, x), x);
    float32x4_t a = vmulq_n_f32(vaddq_f32(x, vmulq_n_f32(x3, ENG_GELU_K)), ENG_GELU_M2C);
    return vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), eng_expq(a)));
}

/* y, x (n). In place ok. */
static void gelu_tanh_neon(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t v0 = gelu4(vld1q_f32(x + i)), v1 = gelu4(vld1q_f32(x + i + 4));
        vst1q_f32(y + i, v0);
        vst1q_f32(y + i + 4, v1);
    }
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, gelu4(vld1q_f32(x + i)));
    if (i < n) store_tail(y + i, n - i, gelu4(load_tail(x + i, n - i, 0.0f)));
}

/* y = exp(x - vmax) for x, y (n), 1 <= n <= LEAF; returns the vector partial sums of y. */
static float32x4_t exp_leaf(float *y, const float *x, int64_t n, float32x4_t vmax) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t e0 = eng_expq(vsubq_f32(vld1q_f32(x + i), vmax));
        float32x4_t e1 = eng_expq(vsubq_f32(vld1q_f32(x + i + 4), vmax));
        vst1q_f32(y + i, e0);
        vst1q_f32(y + i + 4, e1);
        s0 = vaddq_f32(s0, e0);
        s1 = vaddq_f32(s1, e1);
    }
    for (; i + 4 <= n; i += 4) {
        float32x4_t e = eng_expq(vsubq_f32(vld1q_f32(x + i), vmax));
        vst1q_f32(y + i, e);
        s0 = vaddq_f32(s0, e);
    }
    if (i < n) {
        int64_t r = n - i;
        float buf[4];
        vst1q_f32(buf, eng_expq(vsubq_f32(load_tail(x + i, r, 0.0f), vmax)));
        for (int64_t k = r; k < 4; k++) buf[k] = 0.0f; /* padded lanes contribute 0 */
        memcpy(y + i, buf, (size_t)r * sizeof(float));
        s1 = vaddq_f32(s1, vld1q_f32(buf));
    }
    return vaddq_f32(s0, s1);
}

/* exp_leaf over x, y (n), n >= 1, with its sums combined pairwise like sum_tree. */
static float32x4_t exp_tree(float *y, const float *x, int64_t n, float32x4_t vmax) {
    if (n <= LEAF) return exp_leaf(y, x, n, vmax);
    int64_t h = (n + LEAF - 1) / LEAF / 2 * LEAF;
    return vaddq_f32(exp_tree(y, x, h, vmax), exp_tree(y + h, x + h, n - h, vmax));
}

/* y, x (n), n >= 1. In place ok. */
static void softmax_neon(float *y, const float *x, int64_t n) {
    /* pass 1: max */
    const float32x4_t ninf = vdupq_n_f32(-INFINITY);
    float32x4_t m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = vmaxq_f32(m0, vld1q_f32(x + i));
        m1 = vmaxq_f32(m1, vld1q_f32(x + i + 4));
        m2 = vmaxq_f32(m2, vld1q_f32(x + i + 8));
        m3 = vmaxq_f32(m3, vld1q_f32(x + i + 12));
    }
    for (; i + 4 <= n; i += 4) m0 = vmaxq_f32(m0, vld1q_f32(x + i));
    if (i < n) m1 = vmaxq_f32(m1, load_tail(x + i, n - i, -INFINITY));
    const float32x4_t vmax =
        vdupq_n_f32(vmaxvq_f32(vmaxq_f32(vmaxq_f32(m0, m1), vmaxq_f32(m2, m3))));

    /* pass 2: y = exp(x - max), summed pairwise like the other reductions */
    const float inv = 1.0f / vaddvq_f32(exp_tree(y, x, n, vmax));

    /* pass 3: normalise */
    i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_n_f32(vld1q_f32(y + i), inv));
    for (; i < n; i++) y[i] *= inv; /* same single rounding as the vector lanes */
}

/* x (n_pairs, 2) in place; cos, sin (n_pairs). 4 pairs per step: vld2 splits the pairs into
 * a = x[2m], b = x[2m + 1]. */
static void rope_pairs_neon(float *x, const float *cos, const float *sin, int64_t n_pairs) {
    int64_t m = 0;
    for (; m + 4 <= n_pairs; m += 4) {
        float32x4x2_t v = vld2q_f32(x + 2 * m);
        float32x4_t c = vld1q_f32(cos + m), s = vld1q_f32(sin + m);
        float32x4x2_t o;
        o.val[0] = vfmsq_f32(vmulq_f32(v.val[0], c), v.val[1], s); /* a c - b s */
        o.val[1] = vfmaq_f32(vmulq_f32(v.val[0], s), v.val[1], c); /* a s + b c */
        vst2q_f32(x + 2 * m, o);
    }
    for (; m < n_pairs; m++) { /* at most 3 pairs */
        float a = x[2 * m], b = x[2 * m + 1], c = cos[m], s = sin[m];
        x[2 * m] = a * c - b * s;
        x[2 * m + 1] = a * s + b * c;
    }
}

/* x (2, half) in place; cos, sin (half). */
static void rope_half_neon(float *x, const float *cos, const float *sin, int64_t half) {
    float *x2 = x + half; /* (half): second half */
    int64_t m = 0;
    for (; m + 4 <= half; m += 4) {
        float32x4_t a = vld1q_f32(x + m), b = vld1q_f32(x2 + m);
        float32x4_t c = vld1q_f32(cos + m), s = vld1q_f32(sin + m);
        vst1q_f32(x + m, vfmsq_f32(vmulq_f32(a, c), b, s));  /* a c - b s */
        vst1q_f32(x2 + m, vfmaq_f32(vmulq_f32(a, s), b, c)); /* b c + a s */
    }
    for (; m < half; m++) { /* at most 3 */
        float a = x[m], b = x2[m], c = cos[m], s = sin[m];
        x[m] = a * c - b * s;
        x2[m] = b * c + a * s;
    }
}

/* y (2h, 2w), x (h, w). Each input row is widened once in registers and stored twice. */
static void upsample2x_neon(float *y, const float *x, int64_t h, int64_t w) {
    for (int64_t r = 0; r < h; r++) {
        const float *xr = x + r * w;   /* (w) */
        float *y0 = y + 2 * r * 2 * w; /* (2w): output row 2r */
        float *y1 = y0 + 2 * w;        /* (2w): output row 2r + 1 */
        int64_t c = 0;
        for (; c + 4 <= w; c += 4) {
            float32x4_t v = vld1q_f32(xr + c);
            float32x4x2_t d = {{v, v}}; /* vst2 interleaves: v0 v0 v1 v1 v2 v2 v3 v3 */
            vst2q_f32(y0 + 2 * c, d);
            vst2q_f32(y1 + 2 * c, d);
        }
        for (; c < w; c++) y0[2 * c] = y0[2 * c + 1] = y1[2 * c] = y1[2 * c + 1] = xr[c];
    }
}

void eng_kern_elem_neon(eng_kernels *t) {
    t->rmsnorm = rmsnorm_neon;
    t->layernorm = layernorm_neon;
    t->silu = silu_neon;
    t->gelu_tanh = gelu_tanh_neon;
    t->softmax = softmax_neon;
    t->rope_pairs = rope_pairs_neon;
    t->rope_half = rope_half_neon;
    t->upsample2x = upsample2x_neon;
}

#endif /* __aarch64__ */
