# _png.pxi - PNG image-data bindings (included at the end of _engine.pyx). The C side is
# eng_png_zlib in engine.h (png.c).

cdef extern from "engine.h" nogil:
    size_t eng_png_zlib_bound(int64_t h, int64_t row_bytes)
    eng_status eng_png_zlib(eng_runtime *rt, const uint8_t *px, int64_t h, int64_t row_bytes,
                            int bpp, uint8_t *out, size_t out_cap, size_t *out_len,
                            eng_error *err)


def png_zlib(pixels, Runtime runtime=None):
    """uint8 pixels (h, w, c), c in 1..4, or (h, w) -> the zlib stream a PNG's IDAT chunks
    carry: every row Up-filtered, then deflated in bands on runtime's pool (default: the
    default runtime) with the GIL released (see png.c). Returns a memoryview of the bytes."""
    a = np.asarray(pixels)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.dtype != np.uint8 or a.ndim != 3 or not 1 <= a.shape[2] <= 4 or a.size == 0:
        raise _invalid(f"pixels must be uint8 (h, w) or (h, w, 1..4) with h, w >= 1, got "
                       f"{a.dtype} {a.shape}")
    a = np.ascontiguousarray(a)
    cdef int64_t h = a.shape[0], row_bytes = a.shape[1] * a.shape[2]
    cdef int bpp = a.shape[2]
    cdef size_t bound = eng_png_zlib_bound(h, row_bytes)
    if bound == 0:
        raise _invalid(f"pixels {a.shape} are too large for png_zlib (rows up to 16 MiB, "
                       f"2^40 bytes in all)")
    rt = runtime if runtime is not None else get_runtime()
    out = np.empty(bound, dtype=np.uint8)
    cdef uint8_t[::1] ov = out
    cdef const uint8_t[:, :, ::1] av = a
    cdef eng_runtime *r = (<Runtime>rt)._rt
    cdef size_t n = 0
    cdef eng_error err
    cdef eng_status st
    _clear(&err)
    with nogil:
        st = eng_png_zlib(r, &av[0, 0, 0], h, row_bytes, bpp, &ov[0], bound, &n, &err)
    _check(st, &err)
    return memoryview(out)[:n]
