/* PLACEHOLDER: replaced by the real kernels. */
#include "kernels.h"

void eng_kern_elem_scalar(eng_kernels *t) { (void)t; }

