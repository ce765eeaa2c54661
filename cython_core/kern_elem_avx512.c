/* kern_elem_avx512.c - the row kernels (kernels.h "row kernels") for AVX-512 F/BW/DQ/VL: the
 * same functions as kern_elem_scalar.c (the specification), 16 floats per vector. Tails use
 * mask registers, so every element goes through the same vector code and nothing is read or
 * written past n. Reductions use four accumulators (64 lanes) to hide add latency, inside a
 * pairwise tree (see LEAF) for accuracy; exp is eng_exp512 (vexp.h).
 * Compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl + the AVX2 flags. */
#include "kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>

#include "simd_elem.h"
#include "vexp.h"

/* Lanes 0..r-1 set, r in [0, 16]. */
static inline __mmask16 tail_mask16(int64_t r) { return (__mmask16)((1u << r) - 1u); }

/* Reductions are pairwise over leaves of LEAF floats: inside a leaf, four accumulators (64
 * lanes, 8 sequential adds each); leaves are combined as a balanced tree. The rounding error
 * then grows like log2(n) ulp, as in the scalar pairwise sum, instead of n / 64 ulp. */
#define LEAF 512

/* Vector partial sums over x (n), 1 <= n <= LEAF: of (x[i] - c)^2 if sq, else of x[i]. */
static __m512 sum_leaf(const float *x, int64_t n, __m512 c, int sq) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        __m512 v2 = _mm512_loadu_ps(x + i + 32), v3 = _mm512_loadu_ps(x + i + 48);
        if (sq) {
            v0 = _mm512_sub_ps(v0, c);
            v1 = _mm512_sub_ps(v1, c);
            v2 = _mm512_sub_ps(v2, c);
            v3 = _mm512_sub_ps(v3, c);
            a0 = _mm512_fmadd_ps(v0, v0, a0);
            a1 = _mm512_fmadd_ps(v1, v1, a1);
            a2 = _mm512_fmadd_ps(v2, v2, a2);
            a3 = _mm512_fmadd_ps(v3, v3, a3);
        } else {
            a0 = _mm512_add_ps(a0, v0);
            a1 = _mm512_add_ps(a1, v1);
            a2 = _mm512_add_ps(a2, v2);
            a3 = _mm512_add_ps(a3, v3);
        }
    }
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        if (sq) {
            v = _mm512_sub_ps(v, c);
            a0 = _mm512_fmadd_ps(v, v, a0);
        } else {
            a0 = _mm512_add_ps(a0, v);
        }
    }
    if (i < n) {
        __mmask16 m = tail_mask16(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i); /* masked lanes 0 */
        if (sq) {
            v = _mm512_maskz_sub_ps(m, v, c); /* masked lanes 0, not (0 - c)^2 */
            a1 = _mm512_fmadd_ps(v, v, a1);
        } else {
            a1 = _mm512_add_ps(a1, v);
        }
    }
    return _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
}

/* Vector partial sums over x (n), n >= 1, pairwise over leaves. */
static __m512 sum_tree(const float *x, int64_t n, __m512 c, int sq) {
    if (n <= LEAF) return sum_leaf(x, n, c, sq);
    int64_t h = (n + LEAF - 1) / LEAF / 2 * LEAF; /* whole leaves on the left, LEAF <= h < n */
    return _mm512_add_ps(sum_tree(x, h, c, sq), sum_tree(x + h, n - h, c, sq));
}

/* sum x[i], i < n */
static float sum_avx512(const float *x, int64_t n) {
    return _mm512_reduce_add_ps(sum_tree(x, n, _mm512_setzero_ps(), 0));
}

/* sum (x[i] - c)^2, i < n */
static float sumsq_dev_avx512(const float *x, int64_t n, float c) {
    return _mm512_reduce_add_ps(sum_tree(x, n, _mm512_set1_ps(c), 1));
}

/* y, x (n); w (n) or NULL. In place ok. */
static void rmsnorm_avx512(float *y, const float *x, const float *w, int64_t n, float eps) {
    float ms = sumsq_dev_avx512(x, n, 0.0f) / (float)n;
    const __m512 scale = _mm512_set1_ps(1.0f / sqrtf(ms + eps));
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), scale);
        if (w) v = _mm512_mul_ps(v, _mm512_loadu_ps(w + i));
        _mm512_storeu_ps(y + i, v);
    }
    if (i < n) {
        __mmask16 m = tail_mask16(n - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), scale);
        if (w) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

/* y, x (n); g, b (n) or NULL. Two-pass mean / variance. In place ok. */
static void layernorm_avx512(float *y, const float *x, const float *g, const float *b,
                             int64_t n, float eps) {
    float mean = sum_avx512(x, n) / (float)n;
    float var = sumsq_dev_avx512(x, n, mean) / (float)n;
    const __m512 vm = _mm512_set1_ps(mean), rstd = _mm512_set1_ps(1.0f / sqrtf(var + eps));
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm), rstd);
        if (g) v = _mm512_mul_ps(v, _mm512_loadu_ps(g + i));
        if (b) v = _mm512_add_ps(v, _mm512_loadu_ps(b + i));
        _mm512_storeu_ps(y + i, v);
    }
    if (i < n) {
        __mmask16 m = tail_mask16(n - i);
        __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), rstd);
        if (g) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, g + i));
        if (b) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

static inline __m512 silu16(__m512 x) {
    __m512 e = eng_exp512(_mm512_xor_ps(x, _mm512_set1_ps(-0.0f))); /* exp(-x) */
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* y, x (n). In place ok. */
static void silu_avx512(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 v0 = silu16(_mm512_loadu_ps(x + i)), v1 = silu16(_mm512_loadu_ps(x + i + 16));
        _mm512_storeu_ps(y + i, v0);
        _mm512_storeu_ps(y + i + 16, v1);
    }
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, silu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = tail_mask16(n - i);
        _mm512_mask_storeu_ps(y + i, m, silu16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* x / (1 + exp(-2u)); argument evaluated exactly as in kern_elem_scalar.c (no FMA). */
static inline __m512 gelu16(__m512 x) {
    __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    __m512 a = _mm512_mul_ps(_mm512_add_ps(x, _mm512_mul_ps(_mm512_set1_ps(ENG_GELU_K), x3)),
                             _mm512_set1_ps(ENG_GELU_M2C));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), eng_exp512(a)));
}

/* y, x (n). In place ok. */
static void gelu_tanh_avx512(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 v0 = gelu16(_mm512_loadu_ps(x + i)), v1 = gelu16(_mm512_loadu_ps(x + i + 16));
        _mm512_storeu_ps(y + i, v0);
        _mm512_storeu_ps(y + i + 16, v1);
    }
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, gelu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = tail_mask16(n - i);
        _mm512_mask_storeu_ps(y + i, m, gelu16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* y = exp(x - vmax) for x, y (n), 1 <= n <= LEAF; returns the vector partial sums of y. */
static __m512 exp_leaf(float *y, const float *x, int64_t n, __m512 vmax) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 e0 = eng_exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmax));
        __m512 e1 = eng_exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vmax));
        _mm512_storeu_ps(y + i, e0);
        _mm512_storeu_ps(y + i + 16, e1);
        s0 = _mm512_add_ps(s0, e0);
        s1 = _mm512_add_ps(s1, e1);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 e = eng_exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmax));
        _mm512_storeu_ps(y + i, e);
        s0 = _mm512_add_ps(s0, e);
    }
    if (i < n) {
        __mmask16 m = tail_mask16(n - i);
        __m512 e = eng_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vmax));
        e = _mm512_maskz_mov_ps(m, e); /* masked lanes: exp(0 - max) -> 0 */
        _mm512_mask_storeu_ps(y + i, m, e);
        s1 = _mm512_add_ps(s1, e);
    }
    return _mm512_add_ps(s0, s1);
}

/* exp_leaf over x, y (n), n >= 1, with its sums combined pairwise like sum_tree. */
static __m512 exp_tree(float *y, const float *x, int64_t n, __m512 vmax) {
    if (n <= LEAF) return exp_leaf(y, x, n, vmax);
    int64_t h = (n + LEAF - 1) / LEAF / 2 * LEAF;
    return _mm512_add_ps(exp_tree(y, x, h, vmax), exp_tree(y + h, x + h, n - h, vmax));
}

/* y, x (n), n >= 1. In place ok. */
static void softmax_avx512(float *y, const float *x, int64_t n) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    /* pass 1: max */
    __m512 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
        m2 = _mm512_max_ps(m2, _mm512_loadu_ps(x + i + 32));
        m3 = _mm512_max_ps(m3, _mm512_loadu_ps(x + i + 48));
    }
    for (; i + 16 <= n; i += 16) m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
    if (i < n) m1 = _mm512_max_ps(m1, _mm512_mask_loadu_ps(ninf, tail_mask16(n - i), x + i));
    const __m512 vmax = _mm512_set1_ps(
        _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3))));

    /* pass 2: y = exp(x - max), summed pairwise like the other reductions */
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(exp_tree(y, x, n, vmax)));

    /* pass 3: normalise */
    i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), inv));
    if (i < n) {
        __mmask16 m = tail_mask16(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i), inv));
    }
}

/* x (n_pairs, 2) in place; cos, sin (n_pairs). 8 pairs per vector:
 * x = [a0 b0 a1 b1 ...], swapped = [b0 a0 b1 a1 ...], c/s duplicated per pair;
 * fmaddsub gives even lanes a c - b s and odd lanes b c + a s. */
static void rope_pairs_avx512(float *x, const float *cos, const float *sin, int64_t n_pairs) {
    const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    int64_t m = 0;
    for (; m + 8 <= n_pairs; m += 8) {
        __m512 c = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_loadu_ps(cos + m)));
        __m512 s = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_loadu_ps(sin + m)));
        __m512 v = _mm512_loadu_ps(x + 2 * m);
        __m512 sw = _mm512_permute_ps(v, 0xB1);
        _mm512_storeu_ps(x + 2 * m, _mm512_fmaddsub_ps(v, c, _mm512_mul_ps(sw, s)));
    }
    if (m < n_pairs) {
        int64_t r = n_pairs - m; /* 1..7 pairs */
        __mmask8 mp = (__mmask8)((1u << r) - 1u);
        __mmask16 mx = tail_mask16(2 * r);
        __m256 c8 = _mm256_maskz_loadu_ps(mp, cos + m), s8 = _mm256_maskz_loadu_ps(mp, sin + m);
        __m512 c = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(c8));
        __m512 s = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(s8));
        __m512 v = _mm512_maskz_loadu_ps(mx, x + 2 * m);
        __m512 sw = _mm512_permute_ps(v, 0xB1);
        _mm512_mask_storeu_ps(x + 2 * m, mx, _mm512_fmaddsub_ps(v, c, _mm512_mul_ps(sw, s)));
    }
}

/* x (2, half) in place; cos, sin (half). */
static void rope_half_avx512(float *x, const float *cos, const float *sin, int64_t half) {
    float *x2 = x + half; /* (half): second half */
    int64_t m = 0;
    for (; m + 16 <= half; m += 16) {
        __m512 a = _mm512_loadu_ps(x + m), b = _mm512_loadu_ps(x2 + m);
        __m512 c = _mm512_loadu_ps(cos + m), s = _mm512_loadu_ps(sin + m);
        _mm512_storeu_ps(x + m, _mm512_fmsub_ps(a, c, _mm512_mul_ps(b, s)));
        _mm512_storeu_ps(x2 + m, _mm512_fmadd_ps(b, c, _mm512_mul_ps(a, s)));
    }
    if (m < half) {
        __mmask16 k = tail_mask16(half - m);
        __m512 a = _mm512_maskz_loadu_ps(k, x + m), b = _mm512_maskz_loadu_ps(k, x2 + m);
        __m512 c = _mm512_maskz_loadu_ps(k, cos + m), s = _mm512_maskz_loadu_ps(k, sin + m);
        _mm512_mask_storeu_ps(x + m, k, _mm512_fmsub_ps(a, c, _mm512_mul_ps(b, s)));
        _mm512_mask_storeu_ps(x2 + m, k, _mm512_fmadd_ps(b, c, _mm512_mul_ps(a, s)));
    }
}

/* y (2h, 2w), x (h, w). Each input row is widened once in registers and stored twice. */
static void upsample2x_avx512(float *y, const float *x, int64_t h, int64_t w) {
    const __m512i lo_idx = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i hi_idx = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14,
                                             15, 15);
    for (int64_t r = 0; r < h; r++) {
        const float *xr = x + r * w;   /* (w) */
        float *y0 = y + 2 * r * 2 * w; /* (2w): output row 2r */
        float *y1 = y0 + 2 * w;        /* (2w): output row 2r + 1 */
        int64_t c = 0;
        for (; c + 16 <= w; c += 16) {
            __m512 v = _mm512_loadu_ps(xr + c);
            __m512 d0 = _mm512_permutexvar_ps(lo_idx, v), d1 = _mm512_permutexvar_ps(hi_idx, v);
            _mm512_storeu_ps(y0 + 2 * c, d0);
            _mm512_storeu_ps(y0 + 2 * c + 16, d1);
            _mm512_storeu_ps(y1 + 2 * c, d0);
            _mm512_storeu_ps(y1 + 2 * c + 16, d1);
        }
        if (c < w) {
            int64_t rem = w - c; /* 1..15 inputs -> 2..30 outputs */
            __m512 v = _mm512_maskz_loadu_ps(tail_mask16(rem), xr + c);
            __m512 d0 = _mm512_permutexvar_ps(lo_idx, v), d1 = _mm512_permutexvar_ps(hi_idx, v);
            __mmask16 k0 = tail_mask16(rem >= 8 ? 16 : 2 * rem);
            __mmask16 k1 = tail_mask16(rem > 8 ? 2 * rem - 16 : 0);
            _mm512_mask_storeu_ps(y0 + 2 * c, k0, d0);
            _mm512_mask_storeu_ps(y0 + 2 * c + 16, k1, d1);
            _mm512_mask_storeu_ps(y1 + 2 * c, k0, d0);
            _mm512_mask_storeu_ps(y1 + 2 * c + 16, k1, d1);
        }
    }
}

void eng_kern_elem_avx512(eng_kernels *t) {
    t->rmsnorm = rmsnorm_avx512;
    t->layernorm = layernorm_avx512;
    t->silu = silu_avx512;
    t->gelu_tanh = gelu_tanh_avx512;
    t->softmax = softmax_avx512;
    t->rope_pairs = rope_pairs_avx512;
    t->rope_half = rope_half_avx512;
    t->upsample2x = upsample2x_avx512;
}

#endif /* __x86_64__ */
