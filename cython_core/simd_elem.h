/* simd_elem.h - constants shared by the row-kernel files kern_elem_{scalar,avx2,avx512,neon}.c,
 * header-only (macros only, so it is safe in files compiled with any ISA flags).
 *
 * GELU (tanh approximation, PyTorch F.gelu(x, approximate="tanh")):
 *   gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3).
 * Every ISA evaluates it through the exact identity 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)):
 *   gelu(x) = x / (1 + exp(-2u)),
 * which is tanh(u) = 1 - 2 / (exp(2u) + 1) with the "1 +" folded in. It has no cancellation
 * for x << 0 (where 1 + tanh(u) loses every digit in float) and saturates cleanly:
 * exp(-2u) -> 0 gives x, exp(-2u) -> inf gives -0 (x^3 may overflow to +-inf; still fine).
 * The argument is evaluated in the same order, without FMA, in every file:
 *   a = (x + ENG_GELU_K * ((x * x) * x)) * ENG_GELU_M2C,   gelu = x / (1 + exp(a)). */
#ifndef ENG_SIMD_ELEM_H
#define ENG_SIMD_ELEM_H

#define ENG_GELU_K (0.044715f)
/* -2 sqrt(2/pi): the factor 2 is exact, so this is float(-2 * 0.7978845608...). */
#define ENG_GELU_M2C (-1.5957691216057308f)

#endif /* ENG_SIMD_ELEM_H */
