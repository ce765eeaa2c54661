/* dispatch.c - CPU feature detection, ISA names/parsing/resolution, kernel-table selection,
 * build facts. x86-64: runtime detection (__builtin_cpu_supports checks OS register-state
 * support too). AArch64: NEON is baseline, so it is chosen at compile time. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#define ENG_ARCH_X86 1
#else
#define ENG_ARCH_X86 0
#endif
#if defined(__aarch64__)
#define ENG_ARCH_ARM64 1
#include <sys/auxv.h>
#else
#define ENG_ARCH_ARM64 0
#endif

#ifndef ENG_VERSION_STR
#define ENG_VERSION_STR "0.0.0"
#endif
#ifndef ENG_BUILD_TYPE
#define ENG_BUILD_TYPE "unknown"
#endif
#ifndef ENG_COMPILER_STR
#define ENG_COMPILER_STR "unknown"
#endif
#ifndef ENG_ARCH_STR
#define ENG_ARCH_STR "unknown"
#endif
#ifndef ENG_BUILD_NATIVE
#define ENG_BUILD_NATIVE 0
#endif
#ifndef ENG_BUILD_CUDA
#define ENG_BUILD_CUDA 0
#endif
#ifndef ENG_BUILD_SANITIZE
#define ENG_BUILD_SANITIZE 0
#endif

#define ENG_STR2(x) #x
#define ENG_STRINGIFY_BOOL(x) ENG_STR2(x)

static const char *const isa_names[ENG_ISA_COUNT] = {"auto", "scalar", "avx2", "avx512", "neon"};

const char *eng_version(void) { return ENG_VERSION_STR; }

const char *eng_isa_name(eng_isa isa) {
    return (isa >= 0 && isa < ENG_ISA_COUNT) ? isa_names[isa] : "unknown";
}

const char *eng_build_info(void) {
    return "version=" ENG_VERSION_STR " build=" ENG_BUILD_TYPE " compiler=" ENG_COMPILER_STR
           " arch=" ENG_ARCH_STR
#if ENG_ARCH_X86
           " isas=scalar,avx2,avx512"
#elif ENG_ARCH_ARM64
           " isas=scalar,neon"
#else
           " isas=scalar"
#endif
           " native=" ENG_STRINGIFY_BOOL(ENG_BUILD_NATIVE) " cuda=" ENG_STRINGIFY_BOOL(ENG_BUILD_CUDA)
           " sanitize=" ENG_STRINGIFY_BOOL(ENG_BUILD_SANITIZE);
}

eng_status eng_isa_parse(const char *name, eng_isa *out, eng_error *err) {
    char low[16];
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= sizeof low)
        return eng_err_set(err, ENG_ERR_INVALID_ARG,
                           "unknown ISA '%s' (expected auto, scalar, avx2, avx512 or neon)",
                           name ? name : "(null)");
    for (size_t i = 0; i <= n; i++) low[i] = (char)tolower((unsigned char)name[i]);
    for (int i = 0; i < ENG_ISA_COUNT; i++) {
        if (strcmp(low, isa_names[i]) == 0) {
            *out = (eng_isa)i;
            return ENG_OK;
        }
    }
    return eng_err_set(err, ENG_ERR_INVALID_ARG,
                       "unknown ISA '%s' (expected auto, scalar, avx2, avx512 or neon)", name);
}

int eng_isa_compiled(eng_isa isa) {
    switch (isa) {
    case ENG_ISA_SCALAR: return 1;
#if ENG_ARCH_X86
    case ENG_ISA_AVX2:
    case ENG_ISA_AVX512: return 1;
#endif
#if ENG_ARCH_ARM64
    case ENG_ISA_NEON: return 1;
#endif
    default: return 0;
    }
}

void eng_cpu_clear_upper(void) {
#if ENG_ARCH_X86 && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx")) __asm__ __volatile__("vzeroupper" ::: "memory");
#endif
}

int eng_isa_supported(eng_isa isa) {
    if (!eng_isa_compiled(isa)) return 0;
    switch (isa) {
    case ENG_ISA_SCALAR: return 1;
#if ENG_ARCH_X86
    case ENG_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
    case ENG_ISA_AVX512:
        __builtin_cpu_init();
        return eng_isa_supported(ENG_ISA_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl");
#endif
#if ENG_ARCH_ARM64
    case ENG_ISA_NEON: return 1;
#endif
    default: return 0;
    }
}

eng_isa eng_isa_best(void) {
    static const eng_isa order[] = {ENG_ISA_AVX512, ENG_ISA_AVX2, ENG_ISA_NEON};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (eng_isa_supported(order[i])) return order[i];
    return ENG_ISA_SCALAR;
}

void eng_cpu_features(char *buf, size_t cap) {
    if (!buf || cap == 0) return;
    buf[0] = '\0';
    size_t used = 0;
#define ADD(name)                                                                    \
    do {                                                                             \
        if (used < cap) used += (size_t)snprintf(buf + used, cap - used, "%s%s", used ? " " : "", name); \
    } while (0)
#if ENG_ARCH_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) ADD("sse4.2");
    if (__builtin_cpu_supports("avx")) ADD("avx");
    if (__builtin_cpu_supports("avx2")) ADD("avx2");
    if (__builtin_cpu_supports("fma")) ADD("fma");
    if (__builtin_cpu_supports("f16c")) ADD("f16c");
    if (__builtin_cpu_supports("avx512f")) ADD("avx512f");
    if (__builtin_cpu_supports("avx512bw")) ADD("avx512bw");
    if (__builtin_cpu_supports("avx512dq")) ADD("avx512dq");
    if (__builtin_cpu_supports("avx512vl")) ADD("avx512vl");
    if (__builtin_cpu_supports("avx512vnni")) ADD("avx512vnni");
#if defined(__GNUC__) && __GNUC__ >= 12
    if (__builtin_cpu_supports("avx512bf16")) ADD("avx512bf16");
    if (__builtin_cpu_supports("avx512fp16")) ADD("avx512fp16");
#endif
#elif ENG_ARCH_ARM64
    ADD("neon");
    unsigned long hw = getauxval(AT_HWCAP);
#ifdef HWCAP_ASIMDHP
    if (hw & HWCAP_ASIMDHP) ADD("asimdhp");
#endif
#ifdef HWCAP_ASIMDDP
    if (hw & HWCAP_ASIMDDP) ADD("dotprod");
#endif
#ifdef HWCAP_SVE
    if (hw & HWCAP_SVE) ADD("sve");
#endif
    (void)hw;
#endif
#undef ADD
    if (used == 0) snprintf(buf, cap, "(none detected)");
}

eng_status eng_isa_resolve(eng_isa requested, eng_isa *chosen, eng_error *err) {
    eng_isa isa = requested;
    const char *source = "requested";
    if (isa == ENG_ISA_AUTO) {
        const char *env = getenv("ENG_ISA");
        if (env && env[0]) {
            eng_status st = eng_isa_parse(env, &isa, err);
            if (st != ENG_OK) return eng_err_prefix(err, "environment variable ENG_ISA");
            source = "ENG_ISA";
        }
    }
    if (isa == ENG_ISA_AUTO) {
        *chosen = eng_isa_best();
        return ENG_OK;
    }
    if (isa < 0 || isa >= ENG_ISA_COUNT)
        return eng_err_set(err, ENG_ERR_INVALID_ARG, "ISA value %d out of range", (int)isa);
    if (!eng_isa_compiled(isa))
        return eng_err_set(err, ENG_ERR_UNSUPPORTED,
                           "ISA '%s' (%s) is not compiled into this build (%s)", eng_isa_name(isa),
                           source, ENG_ARCH_STR);
    if (!eng_isa_supported(isa)) {
        char feats[256];
        eng_cpu_features(feats, sizeof feats);
        return eng_err_set(err, ENG_ERR_UNSUPPORTED,
                           "ISA '%s' (%s) is not supported by this CPU (features: %s)",
                           eng_isa_name(isa), source, feats);
    }
    *chosen = isa;
    return ENG_OK;
}

void eng_kernels_fill_scalar(eng_kernels *t) {
    memset(t, 0, sizeof *t);
    eng_kern_gemm_scalar(t);
    eng_kern_elem_scalar(t);
    eng_kern_attn_scalar(t);
    t->name = "scalar";
    t->isa = ENG_ISA_SCALAR;
}

eng_status eng_kernels_init(eng_kernels *t, eng_isa isa, eng_error *err) {
    if (!eng_isa_supported(isa))
        return eng_err_set(err, ENG_ERR_UNSUPPORTED, "ISA '%s' is not available here",
                           eng_isa_name(isa));
    eng_kernels_fill_scalar(t);
    switch (isa) {
    case ENG_ISA_SCALAR: break;
#if ENG_ARCH_X86
    case ENG_ISA_AVX2:
        eng_kern_gemm_avx2(t);
        eng_kern_elem_avx2(t);
        eng_kern_attn_avx2(t);
        t->name = "avx2";
        break;
    case ENG_ISA_AVX512:
        /* AVX-512 files override what they implement; the rest comes from AVX2. */
        eng_kern_gemm_avx2(t);
        eng_kern_elem_avx2(t);
        eng_kern_attn_avx2(t);
        eng_kern_gemm_avx512(t);
        eng_kern_elem_avx512(t);
        eng_kern_attn_avx512(t);
        t->name = "avx512";
        break;
#endif
#if ENG_ARCH_ARM64
    case ENG_ISA_NEON:
        eng_kern_gemm_neon(t);
        eng_kern_elem_neon(t);
        eng_kern_attn_neon(t);
        t->name = "neon";
        break;
#endif
    default:
        return eng_err_set(err, ENG_ERR_UNSUPPORTED, "ISA '%s' has no kernel table",
                           eng_isa_name(isa));
    }
    t->isa = isa;
    return ENG_OK;
}
