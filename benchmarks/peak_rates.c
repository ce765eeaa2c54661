/* peak_rates.c - per-core peak rates of the x86 dot-product instructions the engine could use,
 * measured with register-only loops (24 independent accumulators, no memory traffic), plus
 * what CPUID advertises and whether the kernel enables AMX tile state.
 *
 *   gcc -O2 -mavx512f -mavx512bf16 -mavx512vnni benchmarks/peak_rates.c -o /tmp/peak_rates
 *   /tmp/peak_rates          # one thread; run it alone
 *
 * Executes vdpbf16ps and vpdpbusd even when CPUID does not advertise them (a hypervisor can hide
 * features the hardware has); on a CPU that really lacks them it dies with SIGILL, which is
 * expected for this probe and why the engine itself dispatches on CPUID only.
 * Flops count 2 per multiply-add: f32 FMA 16 lanes, bf16 dot 32 pairs, int8 VNNI 64 pairs. */
#include <cpuid.h>
#include <immintrin.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ACC 24
#define ITERS (400000000L / ACC)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* NAME(): FLOPS_PER_OP x ACC x ITERS / seconds for OP(acc, b, c) on ACC accumulators of type VT
 * (SUM folds them so the compiler keeps the loop). */
#define DEFINE_PEAK(NAME, VT, INIT, BT, B0, C0, OP, SUM, FLOPS_PER_OP)                 \
    static double NAME(void) {                                                          \
        VT a[ACC];                                                                      \
        for (int i = 0; i < ACC; i++) a[i] = INIT(i);                                   \
        BT b = B0, c = C0;                                                              \
        double t = now();                                                               \
        for (long i = 0; i < ITERS; i++) {                                              \
            _Pragma("GCC unroll 24") for (int j = 0; j < ACC; j++) a[j] = OP(a[j], b, c); \
            __asm__ volatile("" : "+v"(b));                                             \
        }                                                                               \
        t = now() - t;                                                                  \
        double s = 0;                                                                   \
        for (int i = 0; i < ACC; i++) s += (double)SUM(a[i]);                           \
        if (s == 12345.0) puts("");                                                     \
        return (double)ITERS * ACC * (FLOPS_PER_OP) / t / 1e9;                          \
    }

#define INIT_PS(i) _mm512_set1_ps(1e-3f * (float)(i))
#define INIT_EPI32(i) _mm512_set1_epi32(i)
DEFINE_PEAK(fma_f32, __m512, INIT_PS, __m512, _mm512_set1_ps(0.999f), _mm512_set1_ps(1e-4f),
            _mm512_fmadd_ps, _mm512_reduce_add_ps, 32)
DEFINE_PEAK(dot_bf16, __m512, INIT_PS, __m512bh, (__m512bh)_mm512_set1_epi32(0x3f803f80),
            (__m512bh)_mm512_set1_epi32(0x3c003c00), _mm512_dpbf16_ps, _mm512_reduce_add_ps, 64)
DEFINE_PEAK(dot_int8, __m512i, INIT_EPI32, __m512i, _mm512_set1_epi32(0x01010101),
            _mm512_set1_epi32(0x01010101), _mm512_dpbusd_epi32, _mm512_reduce_add_epi32, 128)

int main(void) {
    unsigned a, b, c, d;
    int bf16 = 0, vnni = 0, amx_bf16 = 0;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        vnni = (c >> 11) & 1;
        amx_bf16 = (d >> 22) & 1;
    }
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) bf16 = (a >> 5) & 1;
    unsigned long xcomp = 0;
    long rc = syscall(SYS_arch_prctl, 0x1022 /* ARCH_GET_XCOMP_SUPP */, &xcomp);
    printf("CPUID: avx512_bf16 %s, avx512_vnni %s, amx_bf16 %s; kernel AMX tile state: %s\n",
           bf16 ? "yes" : "no", vnni ? "yes" : "no", amx_bf16 ? "yes" : "no",
           rc == 0 && ((xcomp >> 17) & 3) == 3 ? "enabled" : "not enabled");
    for (int rep = 0; rep < 2; rep++)
        printf("per core: f32 FMA %.1f GFLOP/s | bf16 dot (vdpbf16ps) %.1f GFLOP/s | int8 dot "
               "(vpdpbusd) %.1f GOP/s\n",
               fma_f32(), dot_bf16(), dot_int8());
    return 0;
}
