/* backend_cpu.c - the CPU backend: the op drivers in gemm.c, attention.c and conv.c. */
#include "backend.h"
#include "ops_cpu.h"

static eng_status cpu_weight_prepare(eng_runtime *rt, const eng_tensor *host, void **handle,
                                     eng_error *err) {
    (void)rt;
    (void)err;
    *handle = (void *)host->data; /* weights stay in the read-only mmap */
    return ENG_OK;
}

static void cpu_weight_release(eng_runtime *rt, void *handle) {
    (void)rt;
    (void)handle;
}

const eng_backend_ops eng_backend_cpu = {
    .name = "cpu",
    .kind = ENG_BACKEND_CPU,
    .linear = cpu_linear,
    .attention = cpu_attention,
    .conv2d = cpu_conv2d,
    .weight_prepare = cpu_weight_prepare,
    .weight_release = cpu_weight_release,
};
