/* mmdit.h - Qwen-Image MMDiT (diffusers QwenImageTransformer2DModel), batch 1, f32
 * activations, weights f32/f16/bf16 read in place from the mmap. */
#ifndef ENG_MMDIT_H
#define ENG_MMDIT_H

#include "runtime.h"

typedef struct mmdit_config {
    int32_t patch_size;      /* 2 */
    int32_t in_channels;     /* 64: packed latent width */
    int32_t out_channels;    /* 16: proj_out gives patch^2 * out_channels */
    int32_t n_layers;        /* 60 */
    int32_t head_dim;        /* 128 */
    int32_t n_heads;         /* 24 */
    int32_t dim;             /* n_heads * head_dim = 3072 */
    int32_t joint_dim;       /* 3584 */
    int32_t axes[3];         /* RoPE head-dim split (16, 56, 56); sum = head_dim */
    float theta;             /* 10000 */
} mmdit_config;

/* y = x W^T + b: weight view (out, in) into the mmap; bias converted to f32 (owned). */
typedef struct mmdit_linear {
    eng_tensor w;            /* (out, in) */
    const float *b;          /* (out) */
    int64_t n_out, n_in;
} mmdit_linear;

typedef struct mmdit_block {
    mmdit_linear img_mod, txt_mod;              /* (6*dim, dim) */
    mmdit_linear to_q, to_k, to_v, to_out;      /* image stream (dim, dim) */
    mmdit_linear add_q, add_k, add_v, add_out;  /* text stream (dim, dim) */
    mmdit_linear img_fc1, img_fc2;              /* (4*dim, dim), (dim, 4*dim) */
    mmdit_linear txt_fc1, txt_fc2;
    const float *norm_q, *norm_k;               /* (head_dim) RMSNorm weights */
    const float *norm_added_q, *norm_added_k;
} mmdit_block;

typedef struct mmdit_model {
    mmdit_config cfg;
    eng_weights *weights;
    mmdit_linear img_in;     /* (dim, in_channels) */
    mmdit_linear txt_in;     /* (dim, joint_dim) */
    mmdit_linear t_lin1;     /* (dim, 256) */
    mmdit_linear t_lin2;     /* (dim, dim) */
    mmdit_linear norm_out;   /* (2*dim, dim): scale then shift */
    mmdit_linear proj_out;   /* (patch^2*out_channels, dim) */
    const float *txt_norm;   /* (joint_dim) */
    mmdit_block *blocks;     /* [n_layers] */
    float *owned;            /* all f32 biases and norm weights, one allocation */
    void **merged;           /* LoRA-merged weight copies (lora.c), freed with the model */
    int32_t n_merged;
} mmdit_model;

typedef struct mmdit_progress {
    eng_progress_fn fn;
    void *user;
} mmdit_progress;

/* dir: the transformer/ folder (config.json + weights). */
eng_status mmdit_load(const char *dir, const mmdit_progress *progress, mmdit_model **out,
                      eng_error *err);
/* The linear whose weight is `<module>.weight` (e.g. "transformer_blocks.3.attn.to_q"), or NULL. */
mmdit_linear *mmdit_find_linear(mmdit_model *m, const char *module);
/* lora.c: merge a LoRA file into the loaded model (see eng_model_set_lora). */
eng_status lora_apply(eng_runtime *rt, mmdit_model *m, const char *path, float scale,
                      const mmdit_progress *progress, eng_error *err);
void mmdit_free(mmdit_model *m);
size_t mmdit_activation_bytes(const mmdit_config *c, int64_t n_img, int64_t n_txt);

typedef struct mmdit_inputs {
    const float *latents;    /* (n_img, in_channels) */
    int64_t n_img;
    const float *txt;        /* (n_txt, joint_dim) */
    int64_t n_txt;
    const uint8_t *txt_mask; /* (n_txt) | NULL */
    float sigma;
    int32_t height, width;   /* pixels */
} mmdit_inputs;

/* out (n_img, patch^2 * out_channels). The caller holds the runtime lock. */
eng_status mmdit_forward(eng_runtime *rt, const mmdit_model *m, const mmdit_inputs *in,
                         float *out, const eng_cancel *cancel, eng_error *err);

#endif /* ENG_MMDIT_H */
