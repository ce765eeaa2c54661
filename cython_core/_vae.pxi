# _vae.pxi - VAE decoder bindings (included at the end of _engine.pyx): module-level functions
# taking a Model. The C side is the "VAE decoder" section of engine.h (vae.c, vae_tile.c).

cdef extern from "engine.h" nogil:
    ctypedef struct eng_vae_options:
        int32_t tiling
        int32_t tile
        int32_t overlap
        size_t memory_budget

    ctypedef struct eng_vae_info:
        int32_t z_dim
        int32_t scale
        int32_t out_channels
        int32_t base_dim
        int32_t n_levels
        int32_t n_res_blocks
        int32_t dim_mult[8]
        int32_t halo
        eng_dtype weight_dtype
        size_t weight_bytes

    ctypedef struct eng_vae_plan:
        int32_t tiled
        int32_t tile
        int32_t overlap
        int32_t n_tiles_y
        int32_t n_tiles_x
        size_t activation_bytes

    eng_vae_options eng_vae_options_default()
    eng_status eng_model_load_vae(eng_model *m, eng_error *err)
    eng_status eng_vae_get_info(eng_model *m, eng_vae_info *out, eng_error *err)
    eng_status eng_vae_plan_decode(eng_model *m, int32_t h, int32_t w, const eng_vae_options *opt,
                                   eng_vae_plan *out, eng_error *err)
    eng_status eng_vae_decode(eng_model *m, const float *latents, int32_t z_dim, int32_t h,
                              int32_t w, float *rgb, size_t rgb_bytes, const eng_vae_options *opt,
                              const eng_request *req, eng_error *err)
    eng_status eng_to_rgb8(eng_runtime *rt, const float *x, int64_t c, int64_t h, int64_t w,
                           uint8_t *out, size_t out_bytes, eng_error *err)
    eng_status eng_project_rgb8(eng_runtime *rt, const float *x, int64_t cin, int64_t h,
                                int64_t w, const float *m, const float *b, int64_t c,
                                uint8_t *out, size_t out_bytes, eng_error *err)


def _vae_int(name, v, lo, hi):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
        raise _invalid(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
    return int(v)


cdef eng_vae_options _vae_options(tiling, tile, overlap, memory_budget) except *:
    """tiling: None/"auto" (from the memory budget; a given tile implies tiling), True/1
    (always), False/0 (never); tile (window side), overlap: latent pixels or None (automatic);
    memory_budget: activation bytes or None (1.5 GB)."""
    cdef eng_vae_options o = eng_vae_options_default()
    if tiling is None or (isinstance(tiling, str) and tiling == "auto"):
        o.tiling = 1 if tile is not None else -1
    elif isinstance(tiling, (bool, np.bool_, int, np.integer)) and tiling in (0, 1):
        o.tiling = 1 if tiling else 0
    else:
        raise _invalid(f"tiling must be None/'auto', True or False, got {tiling!r}")
    if tile is not None:
        o.tile = _vae_int("tile", tile, 1, 65536)
    if overlap is not None:
        o.overlap = _vae_int("overlap", overlap, 0, 65536)
    if memory_budget is not None:
        o.memory_budget = _vae_int("memory_budget", memory_budget, 1, 2**62)
    return o


def load_vae(Model m):
    """Load (and pack) the VAE decoder now instead of on first use."""
    cdef eng_error err
    cdef eng_status st
    _clear(&err)
    with nogil:
        st = eng_model_load_vae(m._m, &err)
    _check(st, &err)


def vae_info(Model m):
    """The decoder's configuration: z_dim, scale (pixels per latent pixel), out_channels,
    base_dim, dim_mult, n_res_blocks, halo (latent pixels a tile needs beyond its core),
    weight_dtype (in the file) and weight_bytes (packed f32 held in memory)."""
    cdef eng_vae_info info
    cdef eng_error err
    cdef eng_status st
    _clear(&err)
    with nogil:
        st = eng_vae_get_info(m._m, &info, &err)
    _check(st, &err)
    return {
        "z_dim": info.z_dim, "scale": info.scale, "out_channels": info.out_channels,
        "base_dim": info.base_dim, "n_levels": info.n_levels,
        "dim_mult": [info.dim_mult[i] for i in range(info.n_levels)],
        "n_res_blocks": info.n_res_blocks, "halo": info.halo,
        "weight_dtype": eng_dtype_name(info.weight_dtype).decode(),
        "weight_bytes": info.weight_bytes,
    }


def vae_plan(Model m, int height, int width, *, tiling=None, tile=None, overlap=None,
             memory_budget=None):
    """What vae_decode would do for a (height, width) latent: tiled, tile, overlap (latent
    pixels), n_tiles (y, x) and activation_bytes (peak activation memory)."""
    cdef eng_vae_options o = _vae_options(tiling, tile, overlap, memory_budget)
    cdef eng_vae_plan p
    cdef eng_error err
    cdef eng_status st
    _clear(&err)
    with nogil:
        st = eng_vae_plan_decode(m._m, height, width, &o, &p, &err)
    _check(st, &err)
    return {
        "tiled": bool(p.tiled), "tile": p.tile, "overlap": p.overlap,
        "n_tiles": (p.n_tiles_y, p.n_tiles_x), "activation_bytes": p.activation_bytes,
    }


def vae_decode(Model m, latents, *, tiling=None, tile=None, overlap=None, memory_budget=None,
               CancelToken cancel=None):
    """Normalised latents float32 (z_dim, h, w) -> image float32 (3, scale*h, scale*w) in
    [-1, 1]: what diffusers' pipeline gets from vae.decode after un-normalising (the C side
    un-normalises with latents_mean/std). The GIL is released while it runs."""
    cdef eng_vae_options o = _vae_options(tiling, tile, overlap, memory_budget)
    info = vae_info(m)
    _f32("latents", latents, 3)
    if latents.shape[0] != info["z_dim"]:
        raise _invalid(f"latents must be (z_dim={info['z_dim']}, h, w), got {latents.shape}")
    if latents.shape[1] == 0 or latents.shape[2] == 0:
        raise _invalid(f"latents are empty: {latents.shape}")
    if latents.shape[1] > 65536 or latents.shape[2] > 65536:
        raise _invalid(f"latents too large: {latents.shape}")
    cdef int32_t z = latents.shape[0], h = latents.shape[1], w = latents.shape[2]
    s = info["scale"]
    out = np.empty((info["out_channels"], s * h, s * w), dtype=np.float32)
    cdef float[:, :, ::1] ov = out
    cdef const float[:, :, ::1] lv = latents
    cdef size_t obytes = out.nbytes
    cdef eng_request req
    memset(&req, 0, sizeof(req))
    if cancel is not None:
        req.cancel = cancel._c
    cdef eng_error err
    cdef eng_status st
    _clear(&err)
    with nogil:
        st = eng_vae_decode(m._m, &lv[0, 0, 0], z, h, w, &ov[0, 0, 0], obytes, &o, &req, &err)
    _check(st, &err)
    return out


def to_rgb8(x, Runtime runtime=None):
    """Decoded planes float32 (c, h, w), c in 1..4, nominally in [-1, 1] -> uint8 (h, w, c):
    round_half_even(clamp(x * 0.5 + 0.5, 0, 1) * 255), exactly what diffusers'
    VaeImageProcessor.postprocess gives (NaN -> 0). Runs on runtime's pool (default: the
    default runtime) with the GIL released."""
    _f32("x", x, 3)
    cdef int64_t c = x.shape[0], h = x.shape[1], w = x.shape[2]
    if not 1 <= c <= 4 or not 1 <= h <= 65536 or not 1 <= w <= 65536:
        raise _invalid(f"x must be (1..4, 1..65536, 1..65536), got {x.shape}")
    rt = runtime if runtime is not None else get_runtime()
    out = np.empty((h, w, c), dtype=np.uint8)
    cdef uint8_t[:, :, ::1] ov = out
    cdef const float[:, :, ::1] xv = x
    cdef size_t obytes = out.nbytes
    cdef eng_runtime *r = (<Runtime>rt)._rt
    cdef eng_error err
    cdef eng_status st
    _clear(&err)
    with nogil:
        st = eng_to_rgb8(r, &xv[0, 0, 0], c, h, w, &ov[0, 0, 0], obytes, &err)
    _check(st, &err)
    return out


def project_rgb8(x, m, b, Runtime runtime=None):
    """float32 x (cin, h, w), m (cin, c), b (c), c in 1..4 -> uint8 (h, w, c): the per-pixel map
    v = x^T m + b converted as to_rgb8 converts (round_half_even(clamp(v * 0.5 + 0.5, 0, 1) *
    255)). The server's latent previews; no BLAS (see pixels.c). Runs on runtime's pool
    (default: the default runtime) with the GIL released."""
    _f32("x", x, 3)
    _f32("m", m, 2)
    _f32("b", b, 1)
    cdef int64_t cin = x.shape[0], h = x.shape[1], w = x.shape[2], c = m.shape[1]
    if m.shape[0] != cin or b.shape[0] != c or not 1 <= c <= 4:
        raise _invalid(f"m must be ({cin}, 1..4) and b (m.shape[1],), got m {m.shape}, "
                       f"b {b.shape}")
    if not 1 <= cin <= 1024 or not 1 <= h <= 65536 or not 1 <= w <= 65536:
        raise _invalid(f"x must be (1..1024, 1..65536, 1..65536), got {x.shape}")
    rt = runtime if runtime is not None else get_runtime()
    out = np.empty((h, w, c), dtype=np.uint8)
    cdef uint8_t[:, :, ::1] ov = out
    cdef const float[:, :, ::1] xv = x
    cdef const float[:, ::1] mv = m
    cdef const float[::1] bv = b
    cdef size_t obytes = out.nbytes
    cdef eng_runtime *r = (<Runtime>rt)._rt
    cdef eng_error err
    cdef eng_status st
    _clear(&err)
    with nogil:
        st = eng_project_rgb8(r, &xv[0, 0, 0], cin, h, w, &mv[0, 0], &bv[0], c, &ov[0, 0, 0],
                              obytes, &err)
    _check(st, &err)
    return out
