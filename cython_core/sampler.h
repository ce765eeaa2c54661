/* sampler.h - internals of sampler.c exposed for the unit tests. */
#ifndef ENG_SAMPLER_H
#define ENG_SAMPLER_H

#include <stdint.h>

/* One Philox4x32-10 block (Random123): out = philox(counter, key). */
void eng_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

#endif /* ENG_SAMPLER_H */
