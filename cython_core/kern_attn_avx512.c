/* PLACEHOLDER: replaced by the real kernels. */
#include "kernels.h"
#if defined(__x86_64__)
void eng_kern_attn_avx512(eng_kernels *t) { (void)t; }
#endif
