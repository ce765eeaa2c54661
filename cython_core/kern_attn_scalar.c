/* kern_attn_scalar.c - the online-softmax tile update of flash attention in portable C (libm
 * expf): the specification the SIMD versions are tested against (kernels.h has the contract).
 * Reference: Dao et al., "FlashAttention" (2022), Algorithm 1, lines 9-12. */
#include <math.h>

#include "kernels.h"

/* s (rows, ld): scaled scores, -inf where masked; m, l, corr (rows). */
static void attn_softmax_tile_scalar(float *s, int64_t ld, int64_t rows, int64_t cols, float *m,
                                     float *l, float *corr) {
    for (int64_t r = 0; r < rows; r++) {
        float *row = s + r * ld; /* (cols) */
        float mx = -INFINITY;
        for (int64_t c = 0; c < cols; c++) mx = row[c] > mx ? row[c] : mx;
        const float m_old = m[r];
        const float m_new = mx > m_old ? mx : m_old;
        if (m_new == -INFINITY) { /* nothing visible yet: keep m = -inf, l as is */
            corr[r] = 1.0f;
            for (int64_t c = 0; c < cols; c++) row[c] = 0.0f;
            continue;
        }
        const float cr = expf(m_old - m_new); /* 0 when m_old = -inf */
        float sum = 0.0f;
        for (int64_t c = 0; c < cols; c++) {
            const float p = expf(row[c] - m_new); /* exp(-inf) = 0 */
            row[c] = p;
            sum += p;
        }
        m[r] = m_new;
        l[r] = l[r] * cr + sum;
        corr[r] = cr;
    }
}

void eng_kern_attn_scalar(eng_kernels *t) { t->attn_softmax_tile = attn_softmax_tile_scalar; }
