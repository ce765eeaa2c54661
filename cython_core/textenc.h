/* textenc.h - the Qwen2.5-VL language model (transformers Qwen2_5_VLTextModel) as Qwen-Image's
 * text encoder: token ids -> last hidden state (after the final RMSNorm), batch 1, causal,
 * f32 activations, weights f32/f16/bf16 read in place from the mmap. No lm_head, no vision
 * tower, no sampling. Spec: shared/reference/qwen-image-spec.md section 3. */
#ifndef ENG_TEXTENC_H
#define ENG_TEXTENC_H

#include "runtime.h"

typedef struct textenc_config {
    int32_t vocab;         /* 152064: rows of embed_tokens */
    int32_t hidden;        /* 3584 */
    int32_t n_layers;      /* 28 */
    int32_t n_heads;       /* 28 query heads */
    int32_t n_kv_heads;    /* 4 (GQA 7:1) */
    int32_t head_dim;      /* hidden / n_heads = 128 */
    int32_t intermediate;  /* 18944: SwiGLU width */
    int32_t max_positions; /* max_position_embeddings (longest input accepted) */
    float eps;             /* rms_norm_eps (1e-6 in Qwen-Image) */
    double theta;          /* RoPE base (1e6) */
} textenc_config;

/* y = x W^T (+ b): weight view (out, in) into the mmap; bias converted to f32 (owned) or NULL. */
typedef struct textenc_linear {
    eng_tensor w;   /* (n_out, n_in) */
    const float *b; /* (n_out) | NULL */
    int64_t n_out, n_in;
} textenc_linear;

typedef struct textenc_layer {
    const float *ln_attn;    /* (hidden) input_layernorm */
    textenc_linear q, k, v;  /* (heads*hd, hidden), (kv*hd, hidden) x2, with biases */
    textenc_linear o;        /* (hidden, heads*hd), no bias */
    const float *ln_mlp;     /* (hidden) post_attention_layernorm */
    textenc_linear gate, up; /* (intermediate, hidden) */
    textenc_linear down;     /* (hidden, intermediate) */
} textenc_layer;

typedef struct textenc_model {
    textenc_config cfg;
    eng_weights *weights;  /* the whole checkpoint is mapped; visual.* and lm_head are never
                              touched, so their pages are never read */
    char prefix[32];       /* "model." (as Qwen-Image ships) or "model.language_model." */
    eng_tensor embed;      /* (vocab, hidden) embed_tokens, any float dtype, never copied */
    textenc_layer *layers; /* [n_layers] */
    const float *norm;     /* (hidden) final RMSNorm */
    float *inv_freq;       /* (head_dim / 2) RoPE inverse frequencies, fp32 as transformers */
    float *owned;          /* biases, norm weights, inv_freq: one allocation */
} textenc_model;

/* dir: the text_encoder/ folder (config.json + model.safetensors[.index.json]). */
eng_status textenc_load(const char *dir, textenc_model **out, eng_error *err);
void textenc_free(textenc_model *m);
/* Bytes of activation memory one forward of n tokens needs. */
size_t textenc_activation_bytes(const textenc_config *c, int64_t n);

/* ids (n) -> out (n, hidden). The caller holds the runtime lock and has checked the ids.
 * cancel is polled before every layer. */
eng_status textenc_forward(eng_runtime *rt, const textenc_model *m, const int32_t *ids, int64_t n,
                           float *out, const eng_cancel *cancel, eng_error *err);

#endif /* ENG_TEXTENC_H */
