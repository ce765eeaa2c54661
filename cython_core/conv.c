/* conv.c - 2-D convolution (stride 1, zero "same" padding, kernel 1x1 or 3x3) as a GEMM:
 *
 *   Y (cout, h*w) = W (cout, cin*ks*ks) . im2col(X) (cin*ks*ks, h*w) + b (cout)
 *
 * W keeps its PyTorch layout (cout, cin, ks, ks), whose rows are exactly the GEMM's A rows
 * (k = (ci*ks + ky)*ks + kx). im2col is never materialised: the B packer copies, for each k,
 * runs of consecutive output pixels from the shifted input row (contiguous in CHW), so packing
 * costs a few vector copies per k. Output is written in CHW directly (bias per GEMM row). */
#include <string.h>

#include "dtype.h"
#include "gemm.h"
#include "ops_cpu.h"

/* A = weight rows (cout, K) in f32/bf16/f16: convert MR rows to f32, then the table packer. */
static void pack_a_weight(const gemm_src *src, const eng_kernels *kern, float *dst, int64_t m0,
                          int64_t m_valid, int64_t k0, int64_t kc) {
    if (src->dtype == ENG_F32) {
        kern->pack_a_f32(dst, (const float *)src->data + m0 * src->ld + k0, src->ld, m_valid, kc);
        return;
    }
    float rows[32 * GEMM_KC]; /* (m_valid <= MR <= 32, kc <= GEMM_KC) f32 staging */
    const uint16_t *w = (const uint16_t *)src->data + m0 * src->ld + k0;
    for (int64_t i = 0; i < m_valid; i++) {
        const uint16_t *wi = w + i * src->ld;
        float *ri = rows + i * kc;
        if (src->dtype == ENG_BF16)
            for (int64_t p = 0; p < kc; p++) ri[p] = eng_bf16_to_f32_1(wi[p]);
        else
            for (int64_t p = 0; p < kc; p++) ri[p] = eng_f16_to_f32_1(wi[p]);
    }
    kern->pack_a_f32(dst, rows, kc, m_valid, kc);
}

/* A run of panel columns that lie in one image row: columns [j0, j0 + len) are pixels
 * (y, x0 .. x0 + len - 1). */
typedef struct pix_run {
    int64_t j0, len, y, x0;
} pix_run;

/* B = im2col(X) (K, h*w), one NR panel: dst (kc, NR), columns = pixels n0 .. n0 + n_valid. */
static void pack_b_im2col(const gemm_src *src, const eng_kernels *kern, float *dst, int64_t n0,
                          int64_t n_valid, int64_t k0, int64_t kc) {
    const int64_t NR = kern->gemm_nr, H = src->h, W = src->w, HW = H * W;
    const int ks = src->ksize, pad = (ks - 1) / 2;
    const float *x = (const float *)src->data; /* (cin, H, W) */
    pix_run runs[64];                          /* NR <= 64 columns: at most NR runs */
    int n_runs = 0;
    for (int64_t j = 0; j < n_valid;) {
        int64_t n = n0 + j, y = n / W, x0 = n % W;
        int64_t len = W - x0 < n_valid - j ? W - x0 : n_valid - j;
        runs[n_runs++] = (pix_run){j, len, y, x0};
        j += len;
    }
    for (int64_t p = 0; p < kc; p++) {
        const int64_t k = k0 + p;
        const int64_t ci = k / (ks * ks), r = k % (ks * ks), ky = r / ks, kx = r % ks;
        const float *plane = x + ci * HW;
        float *d = dst + p * NR;
        for (int q = 0; q < n_runs; q++) {
            const pix_run *ru = &runs[q];
            float *dq = d + ru->j0;
            const int64_t sy = ru->y + ky - pad;
            if (sy < 0 || sy >= H) {
                memset(dq, 0, (size_t)ru->len * sizeof(float));
                continue;
            }
            /* source columns sx = x0 + t + kx - pad for t < len; clip to [0, W) */
            const int64_t sx0 = ru->x0 + kx - pad;
            int64_t t0 = sx0 < 0 ? -sx0 : 0;
            int64_t t1 = W - sx0 < ru->len ? W - sx0 : ru->len;
            if (t1 < t0) t1 = t0;
            for (int64_t t = 0; t < t0; t++) dq[t] = 0.0f;
            memcpy(dq + t0, plane + sy * W + sx0 + t0, (size_t)(t1 - t0) * sizeof(float));
            for (int64_t t = t1; t < ru->len; t++) dq[t] = 0.0f;
        }
        for (int64_t j = n_valid; j < NR; j++) d[j] = 0.0f;
    }
}

eng_status cpu_conv2d(eng_runtime *rt, float *y, const float *x, const void *w, eng_dtype w_dtype,
                      const float *b, int64_t cin, int64_t cout, int64_t h, int64_t w_,
                      int32_t ksize, eng_error *err) {
    const int64_t K = cin * ksize * ksize;
    gemm_src a = {.pack = pack_a_weight, .data = w, .dtype = w_dtype, .ld = K};
    gemm_src bx = {.pack = pack_b_im2col, .data = x, .dtype = ENG_F32, .h = h, .w = w_,
                   .ksize = ksize};
    gemm_args g = {.M = cout, .N = h * w_, .K = K, .a = &a, .b = &bx, .bias = b,
                   .bias_per_row = 1, .c = y, .ldc = h * w_};
    return gemm_run(rt, &g, err);
}
