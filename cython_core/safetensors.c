/* PLACEHOLDER: safetensors reader (being written). */
#include "internal.h"
