/* png_band_avx512.c - png_band.h compiled for AVX-512 + BMI2 (see CMakeLists.txt). */
#define PNG_BAND_TASK png_band_task_avx512
#include "png_band.h"
