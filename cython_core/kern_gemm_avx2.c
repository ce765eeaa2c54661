/* PLACEHOLDER */
#include "kernels.h"
#if defined(__x86_64__)
void eng_kern_gemm_avx2(eng_kernels *t) { (void)t; }
#endif
