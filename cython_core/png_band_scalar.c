/* png_band_scalar.c - png_band.h compiled for the specification. */
#define PNG_BAND_TASK png_band_task_scalar
#include "png_band.h"
