# _textenc.pxi - text encoder bindings (included by _engine.pyx): module-level functions that
# take a Model. The Qwen2.5-VL language model runs in C (textenc.c); the tokenizer and the
# prompt template are Python (edge_server/tokenizer.py).

cdef extern from "engine.h" nogil:
    ctypedef struct eng_text_encoder_info:
        int32_t hidden, n_layers, n_heads, n_kv_heads, head_dim, intermediate, vocab
        float rms_eps, rope_theta
        eng_dtype weight_dtype
        eng_dtype embed_dtype
        int32_t max_tokens

    eng_status eng_model_load_text_encoder(eng_model *m, eng_error *err)
    eng_status eng_text_encoder_get_info(eng_model *m, eng_text_encoder_info *out, eng_error *err)
    eng_status eng_text_encoder_activation_bytes(eng_model *m, int64_t n, size_t *out,
                                                 eng_error *err)
    eng_status eng_text_encoder_forward(eng_model *m, const int32_t *ids, int64_t n, float *out,
                                        size_t out_bytes, const eng_request *req, eng_error *err)
    eng_status eng_text_encoder_release(eng_model *m, eng_error *err)


def text_encoder_load(Model m):
    """Load text_encoder/ (config + mmapped weights) now instead of on first use."""
    cdef eng_error err
    cdef eng_status st
    _clear(&err)
    with nogil:
        st = eng_model_load_text_encoder(m._m, &err)
    _check(st, &err)


def text_encoder_info(Model m):
    """dict: hidden, n_layers, n_heads, n_kv_heads, head_dim, intermediate, vocab, rms_eps,
    rope_theta, weight_dtype, embed_dtype, max_tokens (loads the encoder if needed)."""
    cdef eng_text_encoder_info info
    cdef eng_error err
    cdef eng_status st
    _clear(&err)
    with nogil:
        st = eng_text_encoder_get_info(m._m, &info, &err)
    _check(st, &err)
    return {
        "hidden": info.hidden, "n_layers": info.n_layers, "n_heads": info.n_heads,
        "n_kv_heads": info.n_kv_heads, "head_dim": info.head_dim,
        "intermediate": info.intermediate, "vocab": info.vocab, "rms_eps": info.rms_eps,
        "rope_theta": info.rope_theta,
        "weight_dtype": eng_dtype_name(info.weight_dtype).decode(),
        "embed_dtype": eng_dtype_name(info.embed_dtype).decode(),
        "max_tokens": info.max_tokens,
    }


def text_encoder_activation_bytes(Model m, int64_t n):
    """Activation bytes one forward of n tokens allocates (besides its output)."""
    cdef size_t out = 0
    cdef eng_error err
    cdef eng_status st
    _clear(&err)
    with nogil:
        st = eng_text_encoder_activation_bytes(m._m, n, &out, &err)
    _check(st, &err)
    return out


def text_encoder_forward(Model m, ids, CancelToken cancel=None):
    """Token ids (L,) int32/int64 (any integer array or sequence) -> float32 (L, hidden): the
    last hidden state after the final norm (transformers' hidden_states[-1], batch 1).
    The GIL is released while it runs; `cancel` is polled before every layer."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise _invalid(f"ids must be 1-D, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise _invalid("ids must not be empty")
    if arr.dtype.kind not in "iu":
        raise _invalid(f"ids must be integers, got {arr.dtype}")
    info = text_encoder_info(m)
    vocab = info["vocab"]
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= vocab:
        bad = lo if lo < 0 else hi
        raise _invalid(f"token id {bad} is outside [0, {vocab})")
    ids32 = np.ascontiguousarray(arr, dtype=np.int32)
    cdef int64_t n = ids32.shape[0]
    out = np.empty((n, info["hidden"]), dtype=np.float32)
    cdef const int32_t[::1] iv = ids32
    cdef float[:, ::1] ov = out
    cdef size_t obytes = out.nbytes
    cdef eng_request req
    memset(&req, 0, sizeof(req))
    if cancel is not None:
        req.cancel = cancel._c
    cdef eng_error err
    cdef eng_status st
    _clear(&err)
    with nogil:
        st = eng_text_encoder_forward(m._m, &iv[0], n, &ov[0, 0], obytes, &req, &err)
    _check(st, &err)
    return out


def text_encoder_release(Model m):
    """Edge memory mode: drop the encoder's resident weight pages (madvise DONTNEED); they are
    read again from the page cache or disk on the next forward. No-op when not loaded."""
    cdef eng_error err
    cdef eng_status st
    _clear(&err)
    with nogil:
        st = eng_text_encoder_release(m._m, &err)
    _check(st, &err)
