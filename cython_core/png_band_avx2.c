/* png_band_avx2.c - png_band.h compiled for AVX2 + BMI2 (see CMakeLists.txt). */
#define PNG_BAND_TASK png_band_task_avx2
#include "png_band.h"
