/* dtype.h - scalar dtype conversions, header-only (static inline: safe to include from
 * files compiled with ISA flags). Round-to-nearest-even; NaN stays NaN, Inf stays Inf. */
#ifndef ENG_DTYPE_H
#define ENG_DTYPE_H

#include <stdint.h>
#include <string.h>

static inline uint32_t eng_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float eng_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float eng_bf16_to_f32_1(uint16_t h) { return eng_bits_f32((uint32_t)h << 16); }

static inline uint16_t eng_f32_to_bf16_1(float f) {
    uint32_t u = eng_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                                            /* RNE */
    return (uint16_t)(u >> 16);
}

static inline float eng_f16_to_f32_1(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return eng_bits_f32(sign | 0x7f800000u | (man << 13)); /* inf / nan */
    if (exp == 0) {
        if (man == 0) return eng_bits_f32(sign);
        /* subnormal: man * 2^-24 is exact in f32 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return eng_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline uint16_t eng_f32_to_f16_1(float f) {
    uint32_t u = eng_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u | ((a >> 13) & 0x3ffu) : 0));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {
        /* result is subnormal (or zero): value / 2^-24, rounded to nearest even */
        if (a < 0x33000000u) return sign; /* < 2^-25: rounds to zero */
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e;          /* 14 .. 24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = a - 0x38000000u; /* rebias exponent 127 -> 15 */
    r += 0xfffu + ((r >> 13) & 1u);
    return (uint16_t)(sign | (r >> 13));
}

/* OCP FP8 E4M3 (fn variant: no inf, 0x7f/0xff are NaN, max 448). */
static inline float eng_f8e4m3_to_f32_1(uint8_t b) {
    uint32_t sign = (uint32_t)(b & 0x80u) << 24;
    uint32_t exp = (b >> 3) & 0xfu, man = b & 0x7u;
    if (exp == 0xf && man == 0x7) return eng_bits_f32(sign | 0x7fc00000u);
    if (exp == 0) {
        float v = (float)man * 0.001953125f; /* man * 2^-9 */
        return sign ? -v : v;
    }
    return eng_bits_f32(sign | ((exp + 120u) << 23) | (man << 20));
}

#endif /* ENG_DTYPE_H */
