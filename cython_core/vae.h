/* vae.h - Qwen-Image VAE decoder (diffusers AutoencoderKLQwenImage, decode path only), batch 1,
 * one frame, f32 activations in CHW layout. Internal to the engine; the public entry points are
 * the "VAE decoder" section of engine.h. Spec: shared/reference/qwen-image-spec.md section 2.
 *
 * Files: vae.c (config, weights, public API), vae_tile.c (forward pass, tiling, memory plan),
 * vae_conv.c (the convolution driver and the channel-wise ops this decoder needs). */
#ifndef ENG_VAE_H
#define ENG_VAE_H

#include "runtime.h"

#define VAE_MAX_LEVELS 6     /* len(dim_mult)                                            */
#define VAE_MAX_RES 8        /* num_res_blocks                                           */
#define VAE_MAX_Z 64         /* z_dim                                                    */
#define VAE_MAX_CH 4096      /* widest channel count accepted                            */
#define VAE_NORM_EPS 1e-12f  /* F.normalize eps                                          */

typedef struct vae_config {
    int32_t base_dim;                       /* 96                                          */
    int32_t z_dim;                          /* 16                                          */
    int32_t n_levels;                       /* len(dim_mult) = 4                           */
    int32_t dim_mult[VAE_MAX_LEVELS];       /* [1, 2, 4, 4]                                */
    int32_t n_res;                          /* num_res_blocks = 2 (3 resnets per up block) */
    int32_t out_channels;                   /* input_channels = 3                          */
    int32_t n_attn_scales;                  /* len(attn_scales): the decoder ignores them  */
    int32_t scale;                          /* 2^(n_levels - 1) = 8 pixels per latent px   */
    int32_t dims[VAE_MAX_LEVELS + 1];       /* decoder widths [384, 384, 384, 192, 96]     */
    float latents_mean[VAE_MAX_Z];          /* fp32, as torch.tensor(config list)          */
    float latents_std[VAE_MAX_Z];
} vae_config;

/* A convolution with stride 1, kernel ks x ks (1, 2 or 3), zero padding (ks-1)/2, whose weight is
 * held pre-packed in the GEMM micro-kernel's A-panel layout (rows = output channels):
 *   a (n_panels, K, mr) with a[p][k][i] = W[p*mr + i][k] (0 for rows >= cout),
 *   K = cin*ks*ks in PyTorch order k = (ci*ks + ky)*ks + kx.
 * For a CausalConv3d k=3 only the last temporal tap W[:, :, 2] is kept (single frame, empty
 * cache: the other taps see zero padding). */
typedef struct vae_conv {
    int32_t cin, cout, ks;
    int32_t mr;              /* panel height (the runtime's gemm_mr at load)                */
    int64_t K, n_panels;
    const float *a;          /* (n_panels, K, mr)                                           */
    const float *bias;       /* (n_panels * mr), zero-padded                                */
} vae_conv;

/* One application of a vae_conv on a window. Output pixel (Y, X) reads the (virtual) input at
 * (Y + oy + ky - pad, X + ox + kx - pad); positions outside the (virtual) input are zero. With
 * up = 1 the input is read through a nearest-2x upsample that is never materialised (the direct
 * form of the upsamplers' conv: the reference that vae_upconv, which the decoder runs, is
 * tested against). */
typedef struct vae_conv_io {
    const float *x;          /* (cin, hi, wi)                                               */
    int64_t hi, wi;
    int up;                  /* 1: virtual input is (cin, 2 hi, 2 wi), v[y][x] = x[y/2][x/2] */
    float *y;                /* (cout, ho, wo)                                              */
    int64_t ho, wo;
    int64_t oy, ox;          /* window offset (negative: the output starts in the padding)   */
    int accumulate;          /* 1: y += conv + bias; 0: y = conv + bias                     */
    int pad_planes;          /* 1: y has room for n_panels*mr planes; the planes past cout
                                take garbage and the last A panel skips the edge path       */
} vae_conv_io;

/* The upsamplers' conv: a 3x3 conv over a nearest-2x upsampled input, run on the source as
 * four 2x2 convs, one per output phase (a, b) = (row, column) parity. For output row
 * Y = 2u + a the taps ky = 0, 1, 2 read source rows u-1, u, u (a = 0) or u, u, u+1 (a = 1), so
 * each phase's kernel sums the 3x3 weights that land on the same source pixel:
 *   a = 0: ty = 0 <- {ky 0}, ty = 1 <- {ky 1, 2}     a = 1: ty = 0 <- {ky 0, 1}, ty = 1 <- {ky 2}
 * (the same for columns), and zero padding of the upsampled image is zero padding of the source.
 * 4/9 of the multiply-adds of the 3x3 conv on the 4x larger upsampled image. */
typedef struct vae_upconv {
    int32_t cin, cout;
    vae_conv phase[4];       /* [2a + b]: (cout, cin, 2, 2) as ks = 2 convs                  */
} vae_upconv;

/* QwenImageResidualBlock: y = conv2(silu(norm2(conv1(silu(norm1(x)))))) + shortcut(x) */
typedef struct vae_resblock {
    int32_t cin, cout;
    const float *g1, *g2;    /* (cin), (cout) RMS_norm gammas                               */
    vae_conv conv1, conv2;   /* 3x3 cin->cout, cout->cout                                   */
    vae_conv shortcut;       /* 1x1 cin->cout; shortcut.cout == 0 when cin == cout (identity) */
} vae_resblock;

/* QwenImageAttentionBlock (single head over the h*w latent pixels) */
typedef struct vae_attn {
    int32_t c;
    const float *g;          /* (c)                                                         */
    const float *w_qkv;      /* (3c, c): rows [0,c) q, [c,2c) k, [2c,3c) v                   */
    const float *b_qkv;      /* (3c)                                                        */
    const float *w_proj;     /* (c, c)                                                      */
    const float *b_proj;     /* (c)                                                         */
} vae_attn;

typedef struct vae_up_block {
    int32_t n_res;           /* num_res_blocks + 1                                          */
    vae_resblock res[VAE_MAX_RES + 1];
    int32_t has_up;          /* upsample2d / upsample3d (identical for one frame)           */
    vae_upconv up;           /* resample.1: 3x3 C -> C/2 after a nearest 2x upsample         */
} vae_up_block;

typedef struct vae_model {
    vae_config cfg;
    int32_t mr;              /* A-panel height of every packed conv                         */
    int32_t halo;            /* latent pixels one tile's window needs beyond its core       */
    eng_dtype weight_dtype;  /* of the file's decoder weights                               */
    vae_conv post_quant;     /* 1x1 z -> z                                                  */
    vae_conv conv_in;        /* 3x3 z -> dims[0]                                            */
    vae_resblock mid_res[2];
    vae_attn attn;
    vae_up_block up[VAE_MAX_LEVELS];
    const float *g_out;      /* (dims[n_levels]) norm_out gamma                             */
    vae_conv conv_out;       /* 3x3 dims[n_levels] -> out_channels                          */
    float *pool;             /* every packed weight, bias and gamma: one allocation          */
    size_t pool_floats;
} vae_model;

/* dir: the vae/ folder. Packs for the runtime's micro-kernel (rt->kern.gemm_mr). */
eng_status vae_load(const char *dir, const eng_runtime *rt, vae_model **out, eng_error *err);
void vae_free(vae_model *m);

/* What a decode of an h x w latent does under the given options (vae_tile.c). */
typedef struct vae_plan {
    int32_t tiled;
    int32_t tile, overlap, halo;     /* latent pixels: window side, window overlap, halo   */
    int32_t ny, nx;                  /* tiles per axis (1 x 1 when untiled)                */
    int64_t region_floats;           /* each of the 3 work regions                         */
    size_t arena_bytes;              /* the decode's arena                                 */
    size_t attn_bytes;               /* packed K of the mid-block attention                */
    size_t scratch_bytes;            /* per-thread scratch of all threads                  */
    size_t total_bytes;              /* activation memory: the sum of the three            */
} vae_plan;

eng_status vae_make_plan(const vae_model *m, const eng_runtime *rt, int64_t h, int64_t w,
                         const eng_vae_options *opt, vae_plan *out, eng_error *err);
/* latents (z_dim, h, w) normalised -> rgb (out_channels, scale*h, scale*w) in [-1, 1].
 * The caller holds the runtime lock. */
eng_status vae_decode(eng_runtime *rt, const vae_model *m, const float *latents, int64_t h,
                      int64_t w, float *rgb, const vae_plan *plan, const eng_cancel *cancel,
                      eng_error *err);


/* Bytes of per-thread scratch vae_conv_run needs (reserved by the caller's plan). */
size_t vae_conv_scratch_bytes(const eng_runtime *rt);
/* Floats of packed storage for a conv (panels + padded bias). */
int64_t vae_conv_packed_floats(int32_t cin, int32_t cout, int32_t ks, int32_t mr);
/* Packs w (cout, K) f32 into dst (vae_conv_packed_floats) and sets c's fields. */
void vae_conv_pack(vae_conv *c, int32_t cin, int32_t cout, int32_t ks, int32_t mr,
                   const float *w, const float *bias, float *dst);
/* Runs the convolution; the caller holds the runtime lock. ks 1, 2 or 3 (pad (ks-1)/2). */
eng_status vae_conv_run(eng_runtime *rt, const vae_conv *c, const vae_conv_io *io,
                        eng_error *err);

int64_t vae_upconv_packed_floats(int32_t cin, int32_t cout, int32_t mr);
/* w (cout, cin, 3, 3) f32, bias (cout) -> the four phase convs, packed into dst
 * (vae_upconv_packed_floats); scratch: cout * cin * 4 floats. */
void vae_upconv_pack(vae_upconv *u, int32_t cin, int32_t cout, int32_t mr, const float *w,
                     const float *bias, float *scratch, float *dst);
/* The same result as vae_conv_run of the 3x3 conv with io->up = 1 (up to rounding): each phase
 * into tmp, then interleaved into io->y. tmp: >= round_up(cout, mr) * ho * wo floats, apart from
 * x and y. io->accumulate must be 0. */
eng_status vae_upconv_run(eng_runtime *rt, const vae_upconv *u, const vae_conv_io *io,
                          float *tmp, eng_error *err);

/* y (C, P) = silu?( ((x / max(||x[:, p]||_2, eps)) * sqrt(C)) * gamma[c] ): the channel RMS
 * norm of QwenImageRMS_norm (F.normalize over channels) on CHW data, P pixels per plane,
 * optionally followed by SiLU. y may equal x. */
void vae_channel_norm(eng_runtime *rt, float *y, const float *x, int64_t C, int64_t P,
                      const float *gamma, int silu);
/* dst (P, C) <- src (C, P) */
void vae_chw_to_hwc(eng_runtime *rt, float *dst, const float *src, int64_t C, int64_t P);
/* dst (C, P) += src (P, C) */
void vae_hwc_add_to_chw(eng_runtime *rt, float *dst, const float *src, int64_t C, int64_t P);
/* dst (C, ho, wo) <- src (C, hi, wi)[:, oy:oy+ho, ox:ox+wo] (no overlap between dst and src) */
void vae_crop(eng_runtime *rt, float *dst, const float *src, int64_t C, int64_t hi, int64_t wi,
              int64_t ho, int64_t wo, int64_t oy, int64_t ox);

#endif /* ENG_VAE_H */
