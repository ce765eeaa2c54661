/* PLACEHOLDER: JSON reader (being written). */
#include "internal.h"
