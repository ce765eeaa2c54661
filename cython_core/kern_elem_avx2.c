/* kern_elem_avx2.c - the row kernels (kernels.h "row kernels") for AVX2 + FMA: the same
 * functions as kern_elem_scalar.c (the specification), 8 floats per vector. Tails use
 * masked loads/stores (vmaskmov), so every element goes through the same vector code and
 * nothing is read or written past n. Reductions use four accumulators (32 lanes) to hide add
 * latency, inside a pairwise tree (see LEAF) for accuracy; exp is eng_exp256 (vexp.h).
 * Compiled with -mavx2 -mfma -mf16c. */
#include "kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>

#include "simd_elem.h"
#include "vexp.h"

/* Lanes 0..r-1 set (r in [0, 8]); for vmaskmov loads/stores. */
static inline __m256i tail_mask(int64_t r) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax256(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Reductions are pairwise over leaves of LEAF floats: inside a leaf, four accumulators (32
 * lanes, 8 sequential adds each); leaves are combined as a balanced tree. The rounding error
 * then grows like log2(n) ulp, as in the scalar pairwise sum, instead of n / 32 ulp. */
#define LEAF 256

/* Vector partial sums over x (n), 1 <= n <= LEAF: of (x[i] - c)^2 if sq, else of x[i]. */
static __m256 sum_leaf(const float *x, int64_t n, __m256 c, int sq) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        __m256 v2 = _mm256_loadu_ps(x + i + 16), v3 = _mm256_loadu_ps(x + i + 24);
        if (sq) {
            v0 = _mm256_sub_ps(v0, c);
            v1 = _mm256_sub_ps(v1, c);
            v2 = _mm256_sub_ps(v2, c);
            v3 = _mm256_sub_ps(v3, c);
            a0 = _mm256_fmadd_ps(v0, v0, a0);
            a1 = _mm256_fmadd_ps(v1, v1, a1);
            a2 = _mm256_fmadd_ps(v2, v2, a2);
            a3 = _mm256_fmadd_ps(v3, v3, a3);
        } else {
            a0 = _mm256_add_ps(a0, v0);
            a1 = _mm256_add_ps(a1, v1);
            a2 = _mm256_add_ps(a2, v2);
            a3 = _mm256_add_ps(a3, v3);
        }
    }
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        if (sq) {
            v = _mm256_sub_ps(v, c);
            a0 = _mm256_fmadd_ps(v, v, a0);
        } else {
            a0 = _mm256_add_ps(a0, v);
        }
    }
    if (i < n) {
        __m256i m = tail_mask(n - i);
        __m256 v = _mm256_maskload_ps(x + i, m); /* masked lanes 0 */
        if (sq) {
            v = _mm256_and_ps(_mm256_sub_ps(v, c), _mm256_castsi256_ps(m)); /* not (0 - c)^2 */
            a1 = _mm256_fmadd_ps(v, v, a1);
        } else {
            a1 = _mm256_add_ps(a1, v);
        }
    }
    return _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
}

/* Vector partial sums over x (n), n >= 1, pairwise over leaves. */
static __m256 sum_tree(const float *x, int64_t n, __m256 c, int sq) {
    if (n <= LEAF) return sum_leaf(x, n, c, sq);
    int64_t h = (n + LEAF - 1) / LEAF / 2 * LEAF; /* whole leaves on the left, LEAF <= h < n */
    return _mm256_add_ps(sum_tree(x, h, c, sq), sum_tree(x + h, n - h, c, sq));
}

/* sum x[i], i < n */
static float sum_avx2(const float *x, int64_t n) {
    return hsum256(sum_tree(x, n, _mm256_setzero_ps(), 0));
}

/* sum (x[i] - c)^2, i < n */
static float sumsq_dev_avx2(const float *x, int64_t n, float c) {
    return hsum256(sum_tree(x, n, _mm256_set1_ps(c), 1));
}

/* y, x (n); w (n) or NULL. In place ok. */
static void rmsnorm_avx2(float *y, const float *x, const float *w, int64_t n, float eps) {
    float ms = sumsq_dev_avx2(x, n, 0.0f) / (float)n;
    const __m256 scale = _mm256_set1_ps(1.0f / sqrtf(ms + eps));
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), scale);
        if (w) v = _mm256_mul_ps(v, _mm256_loadu_ps(w + i));
        _mm256_storeu_ps(y + i, v);
    }
    if (i < n) {
        __m256i m = tail_mask(n - i);
        __m256 v = _mm256_mul_ps(_mm256_maskload_ps(x + i, m), scale);
        if (w) v = _mm256_mul_ps(v, _mm256_maskload_ps(w + i, m));
        _mm256_maskstore_ps(y + i, m, v);
    }
}

/* y, x (n); g, b (n) or NULL. Two-pass mean / variance. In place ok. */
static void layernorm_avx2(float *y, const float *x, const float *g, const float *b, int64_t n,
                           float eps) {
    float mean = sum_avx2(x, n) / (float)n;
    float var = sumsq_dev_avx2(x, n, mean) / (float)n;
    const __m256 vm = _mm256_set1_ps(mean), rstd = _mm256_set1_ps(1.0f / sqrtf(var + eps));
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), rstd);
        if (g) v = _mm256_mul_ps(v, _mm256_loadu_ps(g + i));
        if (b) v = _mm256_add_ps(v, _mm256_loadu_ps(b + i));
        _mm256_storeu_ps(y + i, v);
    }
    if (i < n) {
        __m256i m = tail_mask(n - i);
        __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vm), rstd);
        if (g) v = _mm256_mul_ps(v, _mm256_maskload_ps(g + i, m));
        if (b) v = _mm256_add_ps(v, _mm256_maskload_ps(b + i, m));
        _mm256_maskstore_ps(y + i, m, v);
    }
}

static inline __m256 silu8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = eng_exp256(_mm256_xor_ps(x, _mm256_set1_ps(-0.0f))); /* exp(-x) */
    return _mm256_div_ps(x, _mm256_add_ps(one, e));
}

/* y, x (n). In place ok. */
static void silu_avx2(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 v0 = silu8(_mm256_loadu_ps(x + i)), v1 = silu8(_mm256_loadu_ps(x + i + 8));
        _mm256_storeu_ps(y + i, v0);
        _mm256_storeu_ps(y + i + 8, v1);
    }
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, silu8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(y + i, m, silu8(_mm256_maskload_ps(x + i, m)));
    }
}

/* x / (1 + exp(-2u)); argument evaluated exactly as in kern_elem_scalar.c (no FMA). */
static inline __m256 gelu8(__m256 x) {
    __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    __m256 a = _mm256_mul_ps(_mm256_add_ps(x, _mm256_mul_ps(_mm256_set1_ps(ENG_GELU_K), x3)),
                             _mm256_set1_ps(ENG_GELU_M2C));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), eng_exp256(a)));
}

/* y, x (n). In place ok. */
static void gelu_tanh_avx2(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 v0 = gelu8(_mm256_loadu_ps(x + i)), v1 = gelu8(_mm256_loadu_ps(x + i + 8));
        _mm256_storeu_ps(y + i, v0);
        _mm256_storeu_ps(y + i + 8, v1);
    }
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(y + i, m, gelu8(_mm256_maskload_ps(x + i, m)));
    }
}

/* y = exp(x - vmax) for x, y (n), 1 <= n <= LEAF; returns the vector partial sums of y. */
static __m256 exp_leaf(float *y, const float *x, int64_t n, __m256 vmax) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 e0 = eng_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
        __m256 e1 = eng_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vmax));
        _mm256_storeu_ps(y + i, e0);
        _mm256_storeu_ps(y + i + 8, e1);
        s0 = _mm256_add_ps(s0, e0);
        s1 = _mm256_add_ps(s1, e1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 e = eng_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
        _mm256_storeu_ps(y + i, e);
        s0 = _mm256_add_ps(s0, e);
    }
    if (i < n) {
        __m256i m = tail_mask(n - i);
        __m256 e = eng_exp256(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vmax));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(m)); /* masked lanes: exp(0 - max) -> 0 */
        _mm256_maskstore_ps(y + i, m, e);
        s1 = _mm256_add_ps(s1, e);
    }
    return _mm256_add_ps(s0, s1);
}

/* exp_leaf over x, y (n), n >= 1, with its sums combined pairwise like sum_tree. */
static __m256 exp_tree(float *y, const float *x, int64_t n, __m256 vmax) {
    if (n <= LEAF) return exp_leaf(y, x, n, vmax);
    int64_t h = (n + LEAF - 1) / LEAF / 2 * LEAF;
    return _mm256_add_ps(exp_tree(y, x, h, vmax), exp_tree(y + h, x + h, n - h, vmax));
}

/* y, x (n), n >= 1. In place ok. */
static void softmax_avx2(float *y, const float *x, int64_t n) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    /* pass 1: max */
    __m256 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
        m2 = _mm256_max_ps(m2, _mm256_loadu_ps(x + i + 16));
        m3 = _mm256_max_ps(m3, _mm256_loadu_ps(x + i + 24));
    }
    for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        __m256 v = _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, m), _mm256_castsi256_ps(m));
        m1 = _mm256_max_ps(m1, v);
    }
    const __m256 vmax =
        _mm256_set1_ps(hmax256(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3))));

    /* pass 2: y = exp(x - max), summed pairwise like the other reductions */
    const __m256 inv = _mm256_set1_ps(1.0f / hsum256(exp_tree(y, x, n, vmax)));

    /* pass 3: normalise */
    i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), inv));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(y + i, m, _mm256_mul_ps(_mm256_maskload_ps(y + i, m), inv));
    }
}

/* x (n_pairs, 2) in place; cos, sin (n_pairs). 4 pairs per vector:
 * x = [a0 b0 a1 b1 ...], swapped = [b0 a0 b1 a1 ...], c/s duplicated per pair;
 * fmaddsub gives even lanes a c - b s and odd lanes b c + a s. */
static void rope_pairs_avx2(float *x, const float *cos, const float *sin, int64_t n_pairs) {
    int64_t m = 0;
    for (; m + 4 <= n_pairs; m += 4) {
        __m128 c4 = _mm_loadu_ps(cos + m), s4 = _mm_loadu_ps(sin + m);
        __m256 c = _mm256_set_m128(_mm_unpackhi_ps(c4, c4), _mm_unpacklo_ps(c4, c4));
        __m256 s = _mm256_set_m128(_mm_unpackhi_ps(s4, s4), _mm_unpacklo_ps(s4, s4));
        __m256 v = _mm256_loadu_ps(x + 2 * m);
        __m256 sw = _mm256_permute_ps(v, 0xB1);
        _mm256_storeu_ps(x + 2 * m, _mm256_fmaddsub_ps(v, c, _mm256_mul_ps(sw, s)));
    }
    for (; m < n_pairs; m++) { /* at most 3 pairs */
        float a = x[2 * m], b = x[2 * m + 1], c = cos[m], s = sin[m];
        x[2 * m] = a * c - b * s;
        x[2 * m + 1] = a * s + b * c;
    }
}

/* x (2, half) in place; cos, sin (half). */
static void rope_half_avx2(float *x, const float *cos, const float *sin, int64_t half) {
    float *x2 = x + half; /* (half): second half */
    int64_t m = 0;
    for (; m + 8 <= half; m += 8) {
        __m256 a = _mm256_loadu_ps(x + m), b = _mm256_loadu_ps(x2 + m);
        __m256 c = _mm256_loadu_ps(cos + m), s = _mm256_loadu_ps(sin + m);
        _mm256_storeu_ps(x + m, _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s)));
        _mm256_storeu_ps(x2 + m, _mm256_fmadd_ps(b, c, _mm256_mul_ps(a, s)));
    }
    if (m < half) {
        __m256i k = tail_mask(half - m);
        __m256 a = _mm256_maskload_ps(x + m, k), b = _mm256_maskload_ps(x2 + m, k);
        __m256 c = _mm256_maskload_ps(cos + m, k), s = _mm256_maskload_ps(sin + m, k);
        _mm256_maskstore_ps(x + m, k, _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s)));
        _mm256_maskstore_ps(x2 + m, k, _mm256_fmadd_ps(b, c, _mm256_mul_ps(a, s)));
    }
}

/* y (2h, 2w), x (h, w). Each input row is widened once in registers and stored twice. */
static void upsample2x_avx2(float *y, const float *x, int64_t h, int64_t w) {
    for (int64_t r = 0; r < h; r++) {
        const float *xr = x + r * w;   /* (w) */
        float *y0 = y + 2 * r * 2 * w; /* (2w): output row 2r */
        float *y1 = y0 + 2 * w;        /* (2w): output row 2r + 1 */
        int64_t c = 0;
        for (; c + 8 <= w; c += 8) {
            __m256 v = _mm256_loadu_ps(xr + c);                  /* 0 1 2 3 | 4 5 6 7 */
            __m256 lo = _mm256_unpacklo_ps(v, v);                /* 0 0 1 1 | 4 4 5 5 */
            __m256 hi = _mm256_unpackhi_ps(v, v);                /* 2 2 3 3 | 6 6 7 7 */
            __m256 d0 = _mm256_permute2f128_ps(lo, hi, 0x20);    /* 0 0 1 1 2 2 3 3 */
            __m256 d1 = _mm256_permute2f128_ps(lo, hi, 0x31);    /* 4 4 5 5 6 6 7 7 */
            _mm256_storeu_ps(y0 + 2 * c, d0);
            _mm256_storeu_ps(y0 + 2 * c + 8, d1);
            _mm256_storeu_ps(y1 + 2 * c, d0);
            _mm256_storeu_ps(y1 + 2 * c + 8, d1);
        }
        for (; c < w; c++) y0[2 * c] = y0[2 * c + 1] = y1[2 * c] = y1[2 * c + 1] = xr[c];
    }
}

void eng_kern_elem_avx2(eng_kernels *t) {
    t->rmsnorm = rmsnorm_avx2;
    t->layernorm = layernorm_avx2;
    t->silu = silu_avx2;
    t->gelu_tanh = gelu_tanh_avx2;
    t->softmax = softmax_avx2;
    t->rope_pairs = rope_pairs_avx2;
    t->rope_half = rope_half_avx2;
    t->upsample2x = upsample2x_avx2;
}

#endif /* __x86_64__ */
