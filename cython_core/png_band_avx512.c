/* png_band_avx512.c - png_band.h compiled for AVX-512 + VBMI + BMI2 (see CMakeLists.txt; png.c
 * picks it only where the CPU has all three). */
#define PNG_BAND_TASK png_band_task_avx512
#define PNG_LIT64 1 /* literals 64 at a time: png_lit_vbmi.h */
#include "png_band.h"
