/* engine.h - the one public C API of the qwen-edge inference engine. C11, no dependencies.
 *
 * Conventions
 *  - Every fallible function returns eng_status and, on failure, fills the caller's eng_error
 *    with a message that carries context (file, tensor, expected vs actual). The library never
 *    prints, exits or aborts on bad input.
 *  - Outputs go to caller-provided buffers whose capacity (in bytes) is passed alongside.
 *  - Shapes are numpy order (outermost first) and are documented at every parameter.
 *  - Callbacks return nonzero to stop. Cancellation is a per-request token (eng_cancel).
 *
 * Threading
 *  - An eng_runtime (thread pool + kernel table + scratch) serialises the ops run on it: calls
 *    from several threads are safe but run one after another. Use one runtime per concurrent
 *    worker.
 *  - eng_weights is immutable after open and may be shared between threads.
 *  - eng_cancel_request() may be called from any thread (it is a relaxed atomic store).
 */
#ifndef ENG_ENGINE_H
#define ENG_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ENG_API_VERSION 1
#define ENG_MAX_DIMS 8          /* highest tensor rank the loader accepts */
#define ENG_ERROR_CAP 1024      /* bytes of message in eng_error */

typedef enum eng_status {
    ENG_OK = 0,
    ENG_ERR_INVALID_ARG,   /* caller error: NULL, bad size, out-of-range parameter          */
    ENG_ERR_IO,            /* open/mmap/read failed; message has the path and strerror      */
    ENG_ERR_FORMAT,        /* malformed or unexpected weights (file, tensor, dtype, shape)  */
    ENG_ERR_OOM,           /* allocation failed or a size overflowed                        */
    ENG_ERR_UNSUPPORTED,   /* dtype / ISA / backend not compiled in or not on this CPU      */
    ENG_ERR_CANCELLED,     /* cancel token fired or a callback returned nonzero             */
    ENG_ERR_BACKEND,       /* accelerator backend failure                                   */
    ENG_STATUS_COUNT
} eng_status;

typedef enum eng_isa {
    ENG_ISA_AUTO = 0,      /* best supported; ENG_ISA env var may force one                 */
    ENG_ISA_SCALAR,        /* portable C: the specification every other ISA is tested against */
    ENG_ISA_AVX2,          /* x86-64 AVX2 + FMA + F16C                                      */
    ENG_ISA_AVX512,        /* x86-64 AVX-512 F/BW/DQ/VL (+ the AVX2 set)                    */
    ENG_ISA_NEON,          /* AArch64 Advanced SIMD                                         */
    ENG_ISA_COUNT
} eng_isa;

typedef enum eng_backend {
    ENG_BACKEND_AUTO = 0,  /* CPU unless a CUDA build finds a device                        */
    ENG_BACKEND_CPU,
    ENG_BACKEND_CUDA,      /* only in builds with -DENG_CUDA=ON                             */
    ENG_BACKEND_COUNT
} eng_backend;

typedef enum eng_dtype {
    ENG_F32 = 0,
    ENG_F16,
    ENG_BF16,
    ENG_F8_E4M3,           /* read from files; converted to f32/bf16 on load                */
    ENG_I64,               /* accepted by the loader so files with index tensors still open */
    ENG_I32,
    ENG_U8,
    ENG_BOOL,
    ENG_F64,               /* the remaining safetensors dtypes, so any valid file opens     */
    ENG_F8_E5M2,           /* OCP FP8 E5M2 (IEEE-like: has inf and NaN)                     */
    ENG_I16,
    ENG_I8,
    ENG_U16,
    ENG_U32,
    ENG_U64,
    ENG_DTYPE_COUNT
} eng_dtype;

typedef struct eng_error {
    eng_status status;
    char message[ENG_ERROR_CAP];
} eng_error;

/* ---- version, build and CPU facts --------------------------------------------------- */
const char *eng_version(void);                 /* "0.1.0"                                   */
const char *eng_build_info(void);              /* compiler, arch, compiled ISAs, options    */
const char *eng_status_name(eng_status s);     /* "ENG_ERR_FORMAT"                          */
const char *eng_isa_name(eng_isa isa);         /* "avx512"                                  */
const char *eng_dtype_name(eng_dtype dt);      /* "bf16"                                    */
size_t      eng_dtype_size(eng_dtype dt);      /* bytes per element, 0 if unknown           */
/* Parses "scalar|avx2|avx512|neon|auto" (case-insensitive). */
eng_status  eng_isa_parse(const char *name, eng_isa *out, eng_error *err);
int         eng_isa_compiled(eng_isa isa);     /* kernels for it are in this binary         */
int         eng_isa_supported(eng_isa isa);    /* compiled and the CPU/OS can run it        */
eng_isa     eng_isa_best(void);                /* what AUTO picks when ENG_ISA is unset     */
/* Writes the CPU features the engine looks at, e.g. "avx2 fma f16c avx512f ...". */
void        eng_cpu_features(char *buf, size_t cap);
/* Resolves an ISA request: AUTO -> ENG_ISA env var if set, else the best; an explicit
 * request the CPU lacks is ENG_ERR_UNSUPPORTED (never a silent fallback). */
eng_status  eng_isa_resolve(eng_isa requested, eng_isa *chosen, eng_error *err);

/* ---- cancellation and per-request callbacks ------------------------------------------ */
typedef struct eng_cancel eng_cancel;          /* opaque, thread-safe                       */
eng_cancel *eng_cancel_create(void);           /* NULL on out-of-memory                     */
void        eng_cancel_request(eng_cancel *c); /* NULL-safe; any thread                     */
int         eng_cancel_requested(const eng_cancel *c); /* 0 for NULL                         */
void        eng_cancel_free(eng_cancel *c);    /* NULL-safe                                 */

typedef struct eng_step_info {
    int32_t      step;                         /* 1-based                                   */
    int32_t      n_steps;
    float        sigma;
    const float *latent;                       /* (c, h, w) float32, BORROWED for the call  */
    int32_t      latent_c, latent_h, latent_w;
} eng_step_info;

/* Called on the computing thread after each denoising step; nonzero = stop (the call then
 * returns ENG_ERR_CANCELLED). */
typedef int (*eng_step_fn)(const eng_step_info *info, void *user);

typedef struct eng_request {
    const eng_cancel *cancel;                  /* optional; polled at block granularity     */
    eng_step_fn       on_step;                 /* optional                                  */
    void             *on_step_user;
} eng_request;

/* ---- runtime: kernel table + thread pool + scratch + backend ------------------------ */
typedef struct eng_runtime eng_runtime;        /* opaque */

typedef struct eng_runtime_params {
    eng_isa     isa;                           /* AUTO: ENG_ISA env var, else best          */
    eng_backend backend;                       /* AUTO: CPU in this build                   */
    int32_t     n_threads;                     /* 0: online CPUs (ENG_THREADS env overrides) */
} eng_runtime_params;

eng_runtime_params eng_runtime_params_default(void);
eng_status  eng_runtime_create(const eng_runtime_params *p, eng_runtime **out, eng_error *err);
void        eng_runtime_free(eng_runtime *rt);                   /* NULL-safe */
eng_isa     eng_runtime_isa(const eng_runtime *rt);
eng_backend eng_runtime_backend(const eng_runtime *rt);
int32_t     eng_runtime_threads(const eng_runtime *rt);
/* The pool's idle workers stop spinning now (they spin ~1 ms after each op so that the next
 * op starts at once): call it when a burst of ops ends, e.g. after a generation, so the
 * caller's other threads get the cores. The next op wakes them. NULL-safe. */
void        eng_runtime_park(eng_runtime *rt);
/* Ops keep their activation memory for the next op (the transformer, VAE and text encoder
 * share it: the largest of their eng_*_activation_bytes); this frees it, e.g. when a server
 * goes idle. The next op allocates it again. Waits for a running op. NULL-safe. */
void        eng_runtime_trim(eng_runtime *rt);

/* ---- ops (used by tests, benchmarks and the model code) ------------------------------ */

/* y = x . w^T + b.
 *   y: (m, n) float32, y_bytes >= m*n*4      x: (m, k) float32 row-major
 *   w: (n, k) in PyTorch Linear layout, dtype f32, f16 or bf16   b: (n) float32 or NULL */
eng_status eng_linear(eng_runtime *rt, float *y, size_t y_bytes, const float *x, const void *w,
                      eng_dtype w_dtype, const float *b, int64_t m, int64_t n, int64_t k,
                      eng_error *err);

/* Flash-style attention, softmax(q k^T * scale + mask) v, never materialising (sq, sk).
 *   o: (hq, sq, d)   q: (hq, sq, d)   k, v: (hkv, sk, d); hq % hkv == 0 (GQA: q head h reads
 *   kv head h / (hq/hkv)).  key_mask: (sk) uint8, nonzero = may attend, or NULL.
 *   causal: query i sees keys j <= i (top-left aligned, as torch is_causal).  scale <= 0
 *   means 1/sqrt(d).  A query row with no visible key gets zeros.  cancel: polled per head. */
eng_status eng_attention(eng_runtime *rt, float *o, size_t o_bytes, const float *q,
                         const float *k, const float *v, const uint8_t *key_mask, int causal,
                         int64_t hq, int64_t hkv, int64_t sq, int64_t sk, int64_t d, float scale,
                         const eng_cancel *cancel, eng_error *err);

/* 2-D convolution, stride 1, zero padding (ksize-1)/2, ksize 1 or 3.
 *   y: (cout, h, w)   x: (cin, h, w)   w: (cout, cin, ksize, ksize) f32/f16/bf16   b: (cout)|NULL */
eng_status eng_conv2d(eng_runtime *rt, float *y, size_t y_bytes, const float *x, const void *w,
                      eng_dtype w_dtype, const float *b, int64_t cin, int64_t cout, int64_t h,
                      int64_t w_, int32_t ksize, eng_error *err);

/* ---- weights: safetensors files and sharded *.safetensors.index.json ----------------- */
typedef struct eng_weights eng_weights;        /* opaque; immutable after open */

typedef struct eng_tensor_info {
    const char *name;                          /* valid while the eng_weights lives         */
    const char *file;                          /* the shard that holds it                   */
    eng_dtype   dtype;
    int32_t     ndim;                          /* 0 for a scalar                            */
    int64_t     shape[ENG_MAX_DIMS];
    int64_t     numel;
    size_t      nbytes;
    const void *data;                          /* into the read-only mmap                   */
} eng_tensor_info;

/* path: a .safetensors file, or a *.safetensors.index.json whose weight_map names shards in
 * the same folder. Every structural problem is ENG_ERR_FORMAT naming the file and tensor. */
eng_status eng_weights_open(const char *path, eng_weights **out, eng_error *err);
void       eng_weights_free(eng_weights *w);                     /* NULL-safe */
int64_t    eng_weights_count(const eng_weights *w);
/* index in [0, count): tensors are in name order. */
eng_status eng_weights_info(const eng_weights *w, int64_t index, eng_tensor_info *out,
                            eng_error *err);
/* ENG_ERR_FORMAT "tensor 'x' not found in '<path>'" when absent. */
eng_status eng_weights_find(const eng_weights *w, const char *name, eng_tensor_info *out,
                            eng_error *err);
/* Converts any float dtype (f64/f32/f16/bf16/f8_e4m3/f8_e5m2) to float32; other dtypes are
 * ENG_ERR_UNSUPPORTED. out_bytes >= numel*4. */
eng_status eng_weights_read_f32(const eng_weights *w, const char *name, float *out,
                                size_t out_bytes, eng_error *err);

/* ---- models: a diffusers folder (model_index.json, transformer/, vae/, text_encoder/ ...) */
typedef struct eng_model eng_model;            /* opaque; owns the components it loads      */

/* Opens a model folder: checks that it is a readable directory and records which component
 * subfolders exist. Components load on first use (or with eng_model_load_*); a missing one is
 * an error only when used: "model '<dir>' has no transformer/ folder". The runtime must
 * outlive the model; calls on one model are serialised by the runtime. */
eng_status eng_model_open(eng_runtime *rt, const char *dir, eng_model **out, eng_error *err);
void       eng_model_free(eng_model *m);       /* NULL-safe */
/* 1 if the component's folder exists ("transformer", "vae", "text_encoder", "tokenizer",
 * "scheduler"), else 0. */
int        eng_model_has(const eng_model *m, const char *component);

typedef struct eng_transformer_info {
    int32_t   n_layers, n_heads, head_dim, dim;      /* dim = n_heads * head_dim            */
    int32_t   in_channels, out_channels, patch_size; /* packed in = patch^2 * latent ch     */
    int32_t   joint_dim;                             /* text embedding width               */
    int32_t   rope_axes[3];                          /* (frame, height, width) head-dim split */
    eng_dtype weight_dtype;                          /* dtype of the block weights          */
} eng_transformer_info;

/* Loading progress: stage ("transformer", "lora"), units done of total; nonzero = abort
 * (the load then fails with ENG_ERR_CANCELLED). Called on the loading thread. */
typedef int (*eng_progress_fn)(const char *stage, int64_t done, int64_t total, void *user);
void eng_model_set_progress(eng_model *m, eng_progress_fn fn, void *user);

/* A LoRA to merge into the transformer when it loads (before its first use): a safetensors
 * file with `<module>.lora_down.weight` (r, in), `.lora_up.weight` (out, r), optional `.alpha`
 * (scalar; default r), an optional `diffusion_model.` or `transformer.` prefix, or the
 * `lora_A` / `lora_B` naming. W += scale * (alpha / r) * up @ down is computed in f32 and stored
 * back in W's dtype, for the affected tensors only; the rest stays mmapped. Unknown, missing
 * or mis-shaped keys give one ENG_ERR_FORMAT listing them. */
eng_status eng_model_set_lora(eng_model *m, const char *path, float scale, eng_error *err);

eng_status eng_model_load_transformer(eng_model *m, eng_error *err);
eng_status eng_transformer_get_info(eng_model *m, eng_transformer_info *out, eng_error *err);
/* Edge memory mode: drop the transformer's resident weight pages (madvise DONTNEED on the
 * read-only mmap; re-read from disk on next use) and the runtime's kept activation memory
 * (eng_runtime_trim). LoRA-merged tensors are private memory and stay resident. No-op when
 * the transformer is not loaded. */
eng_status eng_transformer_release(eng_model *m, eng_error *err);
/* Bytes of activation memory one forward needs for n_img image and n_txt text tokens. */
eng_status eng_transformer_activation_bytes(eng_model *m, int64_t n_img, int64_t n_txt,
                                            size_t *out, eng_error *err);

/* One QwenImageTransformer2DModel forward for batch 1 (diffusers semantics):
 *   latents (n_img, in_channels) packed; n_img = (height/16) * (width/16)
 *   txt (n_txt, joint_dim) text-encoder embeddings; txt_mask (n_txt) nonzero = real token, or
 *   NULL (no masking); sigma in [0, 1] (what diffusers passes as `timestep`); height, width in
 *   pixels (multiples of 16).  out (n_img, patch^2 * out_channels).
 *   req->cancel is polled before every block (ENG_ERR_CANCELLED within one block). */
eng_status eng_transformer_forward(eng_model *m, const float *latents, int64_t n_img,
                                   const float *txt, int64_t n_txt, const uint8_t *txt_mask,
                                   float sigma, int32_t height, int32_t width, float *out,
                                   size_t out_bytes, const eng_request *req, eng_error *err);

/* ---- sampling (sampler.c): noise and the flow-matching denoising loop ---------------- */

/* Counter-based Gaussian noise, identical on every ISA, thread count and backend:
 * out[i] for i in [offset, offset + n) of the stream for `seed`. Philox4x32-10 (Salmon et al.
 * 2011) with key = (seed low 32 bits, seed high 32 bits) and counter = (block low, block high,
 * 0, 0) for block = i / 4 gives 4 uint32 u0..u3; uniforms a = (u + 0.5) / 2^32 in (0, 1);
 * Box-Muller in double: r = sqrt(-2 ln a0), out = r cos(2 pi a1), r sin(2 pi a1) for lanes 0, 1
 * and the same with (a2, a3) for lanes 2, 3; rounded to float32. */
void eng_randn(uint64_t seed, uint64_t offset, float *out, int64_t n);
/* The same numbers, computed on rt's thread pool (bit-identical for any thread count). */
eng_status eng_randn_parallel(eng_runtime *rt, uint64_t seed, uint64_t offset, float *out,
                              int64_t n, eng_error *err);

typedef struct eng_denoise_params {
    const float   *txt;         /* (n_txt, txt_dim) prompt embeddings                      */
    int64_t        n_txt;
    int64_t        txt_dim;     /* width of txt and neg_txt rows: must be the transformer's
                                 * joint_attention_dim (eng_transformer_info.joint_dim)   */
    const uint8_t *txt_mask;    /* (n_txt) | NULL                                          */
    const float   *neg_txt;     /* (n_neg, txt_dim) negative prompt, or NULL: no CFG       */
    int64_t        n_neg;
    const uint8_t *neg_mask;    /* (n_neg) | NULL                                          */
    float          cfg_scale;   /* true CFG when > 1 and neg_txt is given                  */
    const float   *sigmas;      /* (n_steps + 1): FlowMatchEuler sigmas, last = terminal   */
    int32_t        n_steps;
    int32_t        height, width; /* pixels, multiples of 16                               */
} eng_denoise_params;

/* The denoising loop in C (diffusers QwenImagePipeline semantics, fp32): for each step i,
 * t = sigma_i * 1000, v = transformer(latents, t / 1000) (and with CFG
 * v = comb * |v_cond| / |comb|, comb = v_neg + s (v_cond - v_neg), norms per token), then
 * x0 = latents - sigma_i v is handed to req->on_step unpacked as (c, h, w), and
 * latents += (sigma_{i+1} - sigma_i) v.
 *   latents (n_img, in_channels) packed: the initial noise in, the final latents out.
 * Cancel is polled before every transformer block; a callback returning nonzero stops. */
eng_status eng_denoise(eng_model *m, const eng_denoise_params *p, float *latents,
                       size_t latents_bytes, const eng_request *req, eng_error *err);

/* ---- VAE decoder (vae.c; AutoencoderKLQwenImage decode path) ------------------------ */
/* The VAE section is owned by vae.c; vae_tile.c's header comment documents tiling and the
 * activation-memory formula. */
typedef struct eng_vae_options {
    int32_t tiling;          /* -1: automatic from memory_budget, 0: never, 1: always      */
    int32_t tile;            /* tile side in latent pixels (0: automatic)                  */
    int32_t overlap;         /* tile overlap in latent pixels (0: automatic)               */
    size_t  memory_budget;   /* activation bytes allowed (0: default 1.5 GB)               */
} eng_vae_options;

eng_vae_options eng_vae_options_default(void);
eng_status eng_model_load_vae(eng_model *m, eng_error *err);

typedef struct eng_vae_info {
    int32_t   z_dim;          /* latent channels (16)                                      */
    int32_t   scale;          /* output pixels per latent pixel, 2^(len(dim_mult)-1) (8)   */
    int32_t   out_channels;   /* image channels (3)                                        */
    int32_t   base_dim, n_levels, n_res_blocks;
    int32_t   dim_mult[8];    /* n_levels entries                                          */
    int32_t   halo;           /* latent pixels a tile needs beyond its core (exact tiles)  */
    eng_dtype weight_dtype;   /* dtype of the decoder weights in the file                  */
    size_t    weight_bytes;   /* packed f32 decoder weights held in memory                 */
} eng_vae_info;
eng_status eng_vae_get_info(eng_model *m, eng_vae_info *out, eng_error *err);

/* What eng_vae_decode would do for an h x w latent under opt (NULL: defaults). */
typedef struct eng_vae_plan {
    int32_t tiled;            /* 0 or 1                                                    */
    int32_t tile, overlap;    /* latent pixels: tile window side, overlap of neighbours    */
    int32_t n_tiles_y, n_tiles_x;
    size_t  activation_bytes; /* peak activation memory of the decode (see vae_tile.c)     */
} eng_vae_plan;
eng_status eng_vae_plan_decode(eng_model *m, int32_t h, int32_t w, const eng_vae_options *opt,
                               eng_vae_plan *out, eng_error *err);
/* latents (z_dim, h, w): normalised latents (transformer space, unpacked); the decoder
 * un-normalises them with latents_mean/std as the pipeline does, decodes one frame and
 * clamps: rgb (3, 8h, 8w) float32 in [-1, 1] (generally (out_channels, scale*h, scale*w)).
 * req->cancel is polled per stage and tile. */
eng_status eng_vae_decode(eng_model *m, const float *latents, int32_t z_dim, int32_t h,
                          int32_t w, float *rgb, size_t rgb_bytes, const eng_vae_options *opt,
                          const eng_request *req, eng_error *err);

/* Decoded planes -> 8-bit pixels as diffusers' VaeImageProcessor.postprocess makes them
 * (pixels.c): out[y, x, ch] = round_half_even(clamp(x[ch, y, x] * 0.5 + 0.5, 0, 1) * 255),
 * NaN -> 0. x (c, h, w) float32, c in 1..4, sides 1..65536; out (h, w, c) uint8. */
eng_status eng_to_rgb8(eng_runtime *rt, const float *x, int64_t c, int64_t h, int64_t w,
                       uint8_t *out, size_t out_bytes, eng_error *err);

/* A per-pixel linear map, then eng_to_rgb8's conversion (pixels.c; the server's latent
 * previews): out[y, x, ch] = to_rgb8(b[ch] + sum_i x[i, y, x] m[i, ch]). x (cin, h, w) float32,
 * cin 1..1024; m (cin, c) and b (c) float32, c 1..4; out (h, w, c) uint8; sides 1..65536. */
eng_status eng_project_rgb8(eng_runtime *rt, const float *x, int64_t cin, int64_t h, int64_t w,
                            const float *m, const float *b, int64_t c, uint8_t *out,
                            size_t out_bytes, eng_error *err);

/* The zlib stream of a PNG's image data (png.c): rows (h, row_bytes) of 8-bit pixels of bpp
 * (1..4) bytes, Up-filtered and deflated on rt's pool (see png.c). out needs
 * eng_png_zlib_bound(h, row_bytes) bytes, 0 when the size is out of range (rows up to 16 MiB,
 * 2^40 bytes in all); *out_len receives the stream's length. */
size_t eng_png_zlib_bound(int64_t h, int64_t row_bytes);
eng_status eng_png_zlib(eng_runtime *rt, const uint8_t *px, int64_t h, int64_t row_bytes,
                        int bpp, uint8_t *out, size_t out_cap, size_t *out_len, eng_error *err);

/* ---- text encoder (textenc.c; Qwen2.5-VL language model) ----------------------------- */
/* text_encoder/config.json: flat keys or transformers 5's "text_config" nesting; weights
 * model.safetensors[.index.json] named model.* (as Qwen-Image ships) or
 * model.language_model.* (transformers 5); visual.* and lm_head are never read. */
typedef struct eng_text_encoder_info {
    int32_t   hidden, n_layers, n_heads, n_kv_heads, head_dim, intermediate, vocab;
    float     rms_eps, rope_theta;
    eng_dtype weight_dtype;                    /* dtype of the layer weights               */
    eng_dtype embed_dtype;                     /* dtype of embed_tokens                    */
    int32_t   max_tokens;                      /* longest input accepted (max positions)   */
} eng_text_encoder_info;

eng_status eng_model_load_text_encoder(eng_model *m, eng_error *err);
eng_status eng_text_encoder_get_info(eng_model *m, eng_text_encoder_info *out, eng_error *err);
/* Bytes of activation memory one forward of n tokens allocates (besides the output). */
eng_status eng_text_encoder_activation_bytes(eng_model *m, int64_t n, size_t *out,
                                             eng_error *err);
/* ids (n) token ids in [0, vocab) -> out (n, hidden) float32 = transformers' hidden_states[-1]
 * (after the final norm) for batch 1, causal attention, positions 0..n-1.
 * req->cancel (req may be NULL) is polled before every layer. */
eng_status eng_text_encoder_forward(eng_model *m, const int32_t *ids, int64_t n, float *out,
                                    size_t out_bytes, const eng_request *req, eng_error *err);
/* Edge memory mode: drop the encoder's resident weight pages (madvise DONTNEED on the
 * read-only mmap); they are re-read from the page cache or disk on the next use. A no-op
 * when the encoder is not loaded. */
eng_status eng_text_encoder_release(eng_model *m, eng_error *err);

/* ---- dtype conversion (round-to-nearest-even, NaN/Inf preserved) --------------------- */
void eng_f32_to_bf16(uint16_t *dst, const float *src, int64_t n);
void eng_bf16_to_f32(float *dst, const uint16_t *src, int64_t n);
void eng_f32_to_f16(uint16_t *dst, const float *src, int64_t n);
void eng_f16_to_f32(float *dst, const uint16_t *src, int64_t n);

#ifdef __cplusplus
}
#endif
#endif /* ENG_ENGINE_H */
