# cengine.pxd - extern declarations of engine.h, one-to-one; no logic.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint64_t

cdef extern from "engine.h" nogil:
    enum: ENG_MAX_DIMS
    enum: ENG_ERROR_CAP

    ctypedef enum eng_status:
        ENG_OK
        ENG_ERR_INVALID_ARG
        ENG_ERR_IO
        ENG_ERR_FORMAT
        ENG_ERR_OOM
        ENG_ERR_UNSUPPORTED
        ENG_ERR_CANCELLED
        ENG_ERR_BACKEND
        ENG_STATUS_COUNT

    ctypedef enum eng_isa:
        ENG_ISA_AUTO
        ENG_ISA_SCALAR
        ENG_ISA_AVX2
        ENG_ISA_AVX512
        ENG_ISA_NEON
        ENG_ISA_COUNT

    ctypedef enum eng_backend:
        ENG_BACKEND_AUTO
        ENG_BACKEND_CPU
        ENG_BACKEND_CUDA
        ENG_BACKEND_COUNT

    ctypedef enum eng_dtype:
        ENG_F32
        ENG_F16
        ENG_BF16
        ENG_F8_E4M3
        ENG_F64
        ENG_F8_E5M2
        ENG_DTYPE_COUNT

    ctypedef struct eng_error:
        eng_status status
        char message[ENG_ERROR_CAP]

    const char *eng_version()
    const char *eng_build_info()
    const char *eng_status_name(eng_status s)
    const char *eng_isa_name(eng_isa isa)
    const char *eng_dtype_name(eng_dtype dt)
    size_t eng_dtype_size(eng_dtype dt)
    eng_status eng_isa_parse(const char *name, eng_isa *out, eng_error *err)
    int eng_isa_compiled(eng_isa isa)
    int eng_isa_supported(eng_isa isa)
    eng_isa eng_isa_best()
    void eng_cpu_features(char *buf, size_t cap)
    eng_status eng_isa_resolve(eng_isa requested, eng_isa *chosen, eng_error *err)

    ctypedef struct eng_cancel:
        pass
    eng_cancel *eng_cancel_create()
    void eng_cancel_request(eng_cancel *c)
    int eng_cancel_requested(const eng_cancel *c)
    void eng_cancel_free(eng_cancel *c)

    ctypedef struct eng_runtime:
        pass
    ctypedef struct eng_runtime_params:
        eng_isa isa
        eng_backend backend
        int32_t n_threads
    eng_runtime_params eng_runtime_params_default()
    eng_status eng_runtime_create(const eng_runtime_params *p, eng_runtime **out, eng_error *err)
    void eng_runtime_free(eng_runtime *rt)
    eng_isa eng_runtime_isa(const eng_runtime *rt)
    eng_backend eng_runtime_backend(const eng_runtime *rt)
    int32_t eng_runtime_threads(const eng_runtime *rt)
    void eng_runtime_park(eng_runtime *rt)
    void eng_runtime_trim(eng_runtime *rt)

    eng_status eng_linear(eng_runtime *rt, float *y, size_t y_bytes, const float *x, const void *w,
                          eng_dtype w_dtype, const float *b, int64_t m, int64_t n, int64_t k,
                          eng_error *err)
    eng_status eng_attention(eng_runtime *rt, float *o, size_t o_bytes, const float *q,
                             const float *k, const float *v, const uint8_t *key_mask, int causal,
                             int64_t hq, int64_t hkv, int64_t sq, int64_t sk, int64_t d, float scale,
                             const eng_cancel *cancel, eng_error *err)
    eng_status eng_conv2d(eng_runtime *rt, float *y, size_t y_bytes, const float *x, const void *w,
                          eng_dtype w_dtype, const float *b, int64_t cin, int64_t cout, int64_t h,
                          int64_t w_, int32_t ksize, eng_error *err)

    ctypedef struct eng_weights:
        pass
    ctypedef struct eng_tensor_info:
        const char *name
        const char *file
        eng_dtype dtype
        int32_t ndim
        int64_t shape[ENG_MAX_DIMS]
        int64_t numel
        size_t nbytes
        const void *data
    eng_status eng_weights_open(const char *path, eng_weights **out, eng_error *err)
    void eng_weights_free(eng_weights *w)
    int64_t eng_weights_count(const eng_weights *w)
    eng_status eng_weights_info(const eng_weights *w, int64_t index, eng_tensor_info *out,
                                eng_error *err)
    eng_status eng_weights_find(const eng_weights *w, const char *name, eng_tensor_info *out,
                                eng_error *err)
    eng_status eng_weights_read_f32(const eng_weights *w, const char *name, float *out,
                                    size_t out_bytes, eng_error *err)

    void eng_f32_to_bf16(uint16_t *dst, const float *src, int64_t n)
    void eng_bf16_to_f32(float *dst, const uint16_t *src, int64_t n)
    void eng_f32_to_f16(uint16_t *dst, const float *src, int64_t n)
    void eng_f16_to_f32(float *dst, const uint16_t *src, int64_t n)

    ctypedef struct eng_step_info:
        int32_t step
        int32_t n_steps
        float sigma
        const float *latent
        int32_t latent_c, latent_h, latent_w
    ctypedef int (*eng_step_fn)(const eng_step_info *info, void *user) noexcept
    ctypedef struct eng_request:
        const eng_cancel *cancel
        eng_step_fn on_step
        void *on_step_user

    ctypedef struct eng_model:
        pass
    ctypedef struct eng_transformer_info:
        int32_t n_layers, n_heads, head_dim, dim
        int32_t in_channels, out_channels, patch_size
        int32_t joint_dim
        int32_t rope_axes[3]
        eng_dtype weight_dtype
    eng_status eng_model_open(eng_runtime *rt, const char *dir, eng_model **out, eng_error *err)
    void eng_model_free(eng_model *m)
    int eng_model_has(const eng_model *m, const char *component)
    eng_status eng_model_load_transformer(eng_model *m, eng_error *err)
    eng_status eng_transformer_release(eng_model *m, eng_error *err)
    eng_status eng_transformer_get_info(eng_model *m, eng_transformer_info *out, eng_error *err)
    eng_status eng_transformer_activation_bytes(eng_model *m, int64_t n_img, int64_t n_txt,
                                                size_t *out, eng_error *err)
    eng_status eng_transformer_forward(eng_model *m, const float *latents, int64_t n_img,
                                       const float *txt, int64_t n_txt, const uint8_t *txt_mask,
                                       float sigma, int32_t height, int32_t width, float *out,
                                       size_t out_bytes, const eng_request *req, eng_error *err)

    void eng_randn(uint64_t seed, uint64_t offset, float *out, int64_t n)
    eng_status eng_randn_parallel(eng_runtime *rt, uint64_t seed, uint64_t offset, float *out,
                                  int64_t n, eng_error *err)
    ctypedef struct eng_denoise_params:
        const float *txt
        int64_t n_txt
        int64_t txt_dim
        const uint8_t *txt_mask
        const float *neg_txt
        int64_t n_neg
        const uint8_t *neg_mask
        float cfg_scale
        const float *sigmas
        int32_t n_steps
        int32_t height, width
    eng_status eng_denoise(eng_model *m, const eng_denoise_params *p, float *latents,
                           size_t latents_bytes, const eng_request *req, eng_error *err)

    ctypedef int (*eng_progress_fn)(const char *stage, int64_t done, int64_t total, void *user) noexcept
    void eng_model_set_progress(eng_model *m, eng_progress_fn fn, void *user)
    eng_status eng_model_set_lora(eng_model *m, const char *path, float scale, eng_error *err)
