# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""edge_server._engine - the Cython wrapper over the C engine (cython_core/engine.h).

Translation only: argument checks with clear messages, buffers, the GIL released around every
engine call, and one exception hierarchy mapped from eng_status. Outputs are numpy arrays that
own their memory."""

import os
import threading

import numpy as np

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint64_t
from libc.stddef cimport size_t
from libc.string cimport memset
from libc.stdlib cimport malloc, free

from cengine cimport *


# ---- errors ------------------------------------------------------------------------------

class EngineError(RuntimeError):
    """An engine call failed. ``code`` is the eng_status value, ``status_name`` its name."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = int(code)
        self.status_name = eng_status_name(<eng_status>code).decode()


class InvalidArgument(EngineError, ValueError):
    """Bad argument: shape, dtype, size or range."""


class EngineIOError(EngineError, OSError):
    """A file could not be opened, mapped or read."""


class FormatError(EngineError):
    """Malformed or unexpected weights (names the file and tensor)."""


class OutOfMemory(EngineError, MemoryError):
    """An allocation failed or a size overflowed."""


class Unsupported(EngineError):
    """A dtype, ISA or backend that this build or CPU does not have."""


class Cancelled(EngineError):
    """The cancel token fired or a callback asked to stop."""


class BackendError(EngineError):
    """An accelerator backend failed."""


_ERRORS = {
    ENG_ERR_INVALID_ARG: InvalidArgument,
    ENG_ERR_IO: EngineIOError,
    ENG_ERR_FORMAT: FormatError,
    ENG_ERR_OOM: OutOfMemory,
    ENG_ERR_UNSUPPORTED: Unsupported,
    ENG_ERR_CANCELLED: Cancelled,
    ENG_ERR_BACKEND: BackendError,
}


cdef inline void _clear(eng_error *err) noexcept nogil:
    err.status = ENG_OK
    err.message[0] = 0


cdef int _check(eng_status st, eng_error *err) except -1:
    if st == ENG_OK:
        return 0
    msg = err.message.decode("utf-8", "replace") or eng_status_name(st).decode()
    raise _ERRORS.get(st, EngineError)(st, msg)


def _invalid(msg):
    return InvalidArgument(ENG_ERR_INVALID_ARG, msg)


# ---- build / CPU facts -------------------------------------------------------------------

def version():
    """Engine version string."""
    return eng_version().decode()


def build_info():
    """Compiler, architecture, compiled ISAs and build options."""
    return eng_build_info().decode()


def cpu_features():
    """CPU features the engine looks at, as a list of names."""
    cdef char buf[512]
    eng_cpu_features(buf, sizeof(buf))
    return buf.decode().split()


_ISA_NAMES = ("auto", "scalar", "avx2", "avx512", "neon")


cdef eng_isa _parse_isa(object isa) except *:
    cdef eng_error err
    cdef eng_isa out = ENG_ISA_AUTO
    if isa is None:
        return ENG_ISA_AUTO
    if not isinstance(isa, str):
        raise _invalid(f"isa must be a string ({', '.join(_ISA_NAMES)}), got {type(isa).__name__}")
    _clear(&err)
    b = isa.encode()
    _check(eng_isa_parse(b, &out, &err), &err)
    return out


def compiled_isas():
    """ISAs whose kernels are in this binary."""
    return [n for i, n in enumerate(_ISA_NAMES) if i and eng_isa_compiled(<eng_isa>i)]


def supported_isas():
    """ISAs this CPU can run (compiled and supported by CPU and OS)."""
    return [n for i, n in enumerate(_ISA_NAMES) if i and eng_isa_supported(<eng_isa>i)]


def best_isa():
    """What ``isa=None`` picks when the ENG_ISA environment variable is unset."""
    return eng_isa_name(eng_isa_best()).decode()


def resolve_isa(isa=None):
    """The ISA a runtime would use for this request (honours ENG_ISA for ``None``)."""
    cdef eng_error err
    cdef eng_isa chosen = ENG_ISA_AUTO
    cdef eng_isa req = _parse_isa(isa)
    _clear(&err)
    _check(eng_isa_resolve(req, &chosen, &err), &err)
    return eng_isa_name(chosen).decode()


# ---- runtime -----------------------------------------------------------------------------

cdef class Runtime:
    """Kernel table + thread pool + scratch. Ops on one runtime run one at a time."""

    cdef eng_runtime *_rt

    def __cinit__(self, isa=None, threads=None):
        cdef eng_runtime_params p = eng_runtime_params_default()
        cdef eng_error err
        cdef eng_status st
        p.isa = _parse_isa(isa)
        if threads is not None:
            if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 1024:
                raise _invalid(f"threads must be an integer in [1, 1024], got {threads!r}")
            p.n_threads = threads
        _clear(&err)
        with nogil:
            st = eng_runtime_create(&p, &self._rt, &err)
        _check(st, &err)

    def __dealloc__(self):
        if self._rt != NULL:
            eng_runtime_free(self._rt)
            self._rt = NULL

    @property
    def isa(self):
        return eng_isa_name(eng_runtime_isa(self._rt)).decode()

    @property
    def threads(self):
        return eng_runtime_threads(self._rt)

    @property
    def backend(self):
        return ("auto", "cpu", "cuda")[<int>eng_runtime_backend(self._rt)]

    def park(self):
        """Idle worker threads stop spinning now (call after a burst of ops, e.g. at the end
        of a generation, so other threads get the cores); the next op wakes them."""
        eng_runtime_park(self._rt)

    def trim(self):
        """Free the activation memory that ops keep for the next op (the transformer, VAE and
        text encoder share it); the next op allocates it again. Waits for a running op."""
        with nogil:
            eng_runtime_trim(self._rt)


_runtimes = {}
_runtimes_lock = threading.Lock()


def get_runtime(isa=None, threads=None):
    """A cached Runtime for (isa, threads); created on first use."""
    key = (resolve_isa(isa), threads)
    with _runtimes_lock:
        rt = _runtimes.get(key)
        if rt is None:
            rt = _runtimes[key] = Runtime(key[0], threads)
        return rt


cdef class CancelToken:
    """Per-request cancellation flag; ``cancel()`` may be called from any thread."""

    cdef eng_cancel *_c

    def __cinit__(self):
        self._c = eng_cancel_create()
        if self._c == NULL:
            raise MemoryError("cannot allocate a cancel token")

    def __dealloc__(self):
        eng_cancel_free(self._c)
        self._c = NULL

    def cancel(self):
        eng_cancel_request(self._c)

    @property
    def cancelled(self):
        return bool(eng_cancel_requested(self._c))


# ---- argument helpers --------------------------------------------------------------------

def _array(name, x, ndim):
    if not isinstance(x, np.ndarray):
        raise _invalid(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.ndim != ndim:
        raise _invalid(f"{name} must have {ndim} dimensions, got shape {x.shape}")
    if not x.flags.c_contiguous:
        raise _invalid(f"{name} must be C-contiguous (use np.ascontiguousarray)")
    return x


def _f32(name, x, ndim):
    _array(name, x, ndim)
    if x.dtype != np.float32:
        raise _invalid(f"{name} must be float32, got {x.dtype}")
    return x


def _weight(name, w):
    """float32 / float16 / uint16 (= bfloat16 bits) -> (eng_dtype, bytes view of the buffer)."""
    if w.dtype == np.float32:
        return int(ENG_F32), w.reshape(-1).view(np.uint8)
    if w.dtype == np.float16:
        return int(ENG_F16), w.reshape(-1).view(np.uint8)
    if w.dtype == np.uint16:
        return int(ENG_BF16), w.reshape(-1).view(np.uint8)
    raise _invalid(f"{name} must be float32, float16, or bfloat16 given as uint16; got {w.dtype}")


# ---- ops ---------------------------------------------------------------------------------

def linear(x, w, b=None, *, isa=None, threads=None):
    """y = x @ w.T + b.

    x: float32 (M, K); w: (N, K) float32, float16, or bfloat16 bits as uint16; b: float32 (N,)
    or None. Returns float32 (M, N). The GIL is released while it runs."""
    _f32("x", x, 2)
    _array("w", w, 2)
    wdt_i, wbytes = _weight("w", w)
    cdef eng_dtype wdt = <eng_dtype>wdt_i
    cdef int64_t m = x.shape[0], k = x.shape[1], n = w.shape[0]
    if w.shape[1] != k:
        raise _invalid(f"w has {w.shape[1]} input features but x has {k} (x {x.shape}, w {w.shape})")
    if b is not None:
        _f32("b", b, 1)
        if b.shape[0] != n:
            raise _invalid(f"b has {b.shape[0]} values, expected {n}")
    if m == 0 or n == 0 or k == 0:
        raise _invalid(f"empty operand: x {x.shape}, w {w.shape}")
    rt = get_runtime(isa, threads)
    y = np.empty((m, n), dtype=np.float32)
    cdef float[:, ::1] yv = y
    cdef const float[:, ::1] xv = x
    cdef const uint8_t[::1] wb = wbytes
    cdef const float[::1] bv
    cdef const float *bp = NULL
    if b is not None:
        bv = b
        bp = &bv[0]
    cdef eng_runtime *r = (<Runtime>rt)._rt
    cdef size_t ybytes = y.nbytes
    cdef eng_error err
    cdef eng_status st
    _clear(&err)
    with nogil:
        st = eng_linear(r, &yv[0, 0], ybytes, &xv[0, 0], &wb[0], wdt, bp, m, n, k, &err)
    _check(st, &err)
    return y


def attention(q, k, v, *, mask=None, causal=False, scale=None, isa=None, threads=None,
              CancelToken cancel=None):
    """softmax(q k^T * scale + mask) v, flash-style (never materialises the score matrix).

    q: float32 (Hq, Sq, d); k, v: float32 (Hkv, Sk, d) with Hq % Hkv == 0 (GQA); mask: bool or
    uint8 (Sk,) key mask (True = may attend) or None; causal: key j visible to query i iff
    j <= i; scale: default 1/sqrt(d). Returns float32 (Hq, Sq, d)."""
    _f32("q", q, 3)
    _f32("k", k, 3)
    _f32("v", v, 3)
    cdef int64_t hq = q.shape[0], sq = q.shape[1], d = q.shape[2]
    cdef int64_t hkv = k.shape[0], sk = k.shape[1]
    if k.shape[2] != d or v.shape != k.shape:
        raise _invalid(f"shape mismatch: q {q.shape}, k {k.shape}, v {v.shape} "
                       "(expected k and v (Hkv, Sk, d) with q's d)")
    if hq == 0 or sq == 0 or d == 0 or hkv == 0 or sk == 0:
        raise _invalid(f"empty operand: q {q.shape}, k {k.shape}")
    if hq % hkv:
        raise _invalid(f"{hq} query heads is not a multiple of {hkv} kv heads")
    cdef const uint8_t[::1] mv
    cdef const uint8_t *mp = NULL
    if mask is not None:
        _array("mask", mask, 1)
        if mask.dtype not in (np.bool_, np.uint8):
            raise _invalid(f"mask must be bool or uint8, got {mask.dtype}")
        if mask.shape[0] != sk:
            raise _invalid(f"mask has {mask.shape[0]} entries, expected Sk = {sk}")
        mv = mask.view(np.uint8)
        mp = &mv[0]
    cdef float sc = 0.0
    if scale is not None:
        sc = float(scale)
        if not sc > 0.0 or sc == float("inf"):
            raise _invalid(f"scale must be a positive finite number, got {scale!r}")
    rt = get_runtime(isa, threads)
    o = np.empty((hq, sq, d), dtype=np.float32)
    cdef float[:, :, ::1] ov = o
    cdef const float[:, :, ::1] qv = q
    cdef const float[:, :, ::1] kv = k
    cdef const float[:, :, ::1] vv = v
    cdef eng_runtime *r = (<Runtime>rt)._rt
    cdef size_t obytes = o.nbytes
    cdef int c = 1 if causal else 0
    cdef const eng_cancel *cp = cancel._c if cancel is not None else NULL
    cdef eng_error err
    cdef eng_status st
    _clear(&err)
    with nogil:
        st = eng_attention(r, &ov[0, 0, 0], obytes, &qv[0, 0, 0], &kv[0, 0, 0], &vv[0, 0, 0], mp,
                           c, hq, hkv, sq, sk, d, sc, cp, &err)
    _check(st, &err)
    return o


def conv2d(x, w, b=None, *, isa=None, threads=None):
    """Stride-1 'same' 2-D convolution (kernel 1x1 or 3x3).

    x: float32 (Cin, H, W); w: (Cout, Cin, k, k) float32 / float16 / bfloat16-as-uint16;
    b: float32 (Cout,) or None. Returns float32 (Cout, H, W)."""
    _f32("x", x, 3)
    _array("w", w, 4)
    wdt_i, wbytes = _weight("w", w)
    cdef eng_dtype wdt = <eng_dtype>wdt_i
    cdef int64_t cin = x.shape[0], h = x.shape[1], wd = x.shape[2], cout = w.shape[0]
    cdef int ks = w.shape[2]
    if w.shape[1] != cin or w.shape[3] != ks or ks not in (1, 3):
        raise _invalid(f"w must be (Cout, {cin}, k, k) with k in (1, 3), got {w.shape}")
    if b is not None:
        _f32("b", b, 1)
        if b.shape[0] != cout:
            raise _invalid(f"b has {b.shape[0]} values, expected {cout}")
    if cin == 0 or h == 0 or wd == 0 or cout == 0:
        raise _invalid(f"empty operand: x {x.shape}, w {w.shape}")
    rt = get_runtime(isa, threads)
    y = np.empty((cout, h, wd), dtype=np.float32)
    cdef float[:, :, ::1] yv = y
    cdef const float[:, :, ::1] xv = x
    cdef const uint8_t[::1] wb = wbytes
    cdef const float[::1] bv
    cdef const float *bp = NULL
    if b is not None:
        bv = b
        bp = &bv[0]
    cdef eng_runtime *r = (<Runtime>rt)._rt
    cdef size_t ybytes = y.nbytes
    cdef eng_error err
    cdef eng_status st
    _clear(&err)
    with nogil:
        st = eng_conv2d(r, &yv[0, 0, 0], ybytes, &xv[0, 0, 0], &wb[0], wdt, bp, cin, cout, h, wd,
                        ks, &err)
    _check(st, &err)
    return y


# ---- dtype conversion --------------------------------------------------------------------

def to_bf16(x):
    """float32 array -> bfloat16 bits (uint16), round-to-nearest-even."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(x.shape, dtype=np.uint16)
    cdef const float[::1] xv = x.reshape(-1)
    cdef uint16_t[::1] ov = out.reshape(-1)
    cdef int64_t n = x.size
    if n:
        with nogil:
            eng_f32_to_bf16(&ov[0], &xv[0], n)
    return out


def from_bf16(h):
    """bfloat16 bits (uint16 array) -> float32."""
    if not isinstance(h, np.ndarray) or h.dtype != np.uint16:
        raise _invalid("from_bf16 expects a uint16 numpy array")
    h = np.ascontiguousarray(h)
    out = np.empty(h.shape, dtype=np.float32)
    cdef const uint16_t[::1] hv = h.reshape(-1)
    cdef float[::1] ov = out.reshape(-1)
    cdef int64_t n = h.size
    if n:
        with nogil:
            eng_bf16_to_f32(&ov[0], &hv[0], n)
    return out


# ---- weights -----------------------------------------------------------------------------

cdef bytes _name_bytes(name):
    """A tensor name as the C string the lookups take (a NUL would cut it short)."""
    b = str(name).encode()
    if b"\0" in b:
        raise _invalid(f"tensor name {name!r} contains a NUL byte")
    return b


cdef bytes _path_bytes(path, str what):
    """A file system path (str, bytes or os.PathLike) as the C string the loaders take."""
    try:
        b = os.fsencode(os.fspath(path))
    except TypeError:
        raise _invalid(f"{what}: a path is a str, bytes or os.PathLike, got "
                       f"{type(path).__name__}") from None
    if b"\0" in b:
        raise _invalid(f"{what}: the path {path!r} contains a NUL byte")
    return b


cdef class Weights:
    """A safetensors file or a sharded ``*.safetensors.index.json``, memory-mapped."""

    cdef eng_weights *_w
    cdef readonly str path

    def __cinit__(self, path):
        cdef eng_error err
        cdef eng_status st
        b = _path_bytes(path, "weights")
        self.path = os.fsdecode(b)
        cdef const char *cp = b
        _clear(&err)
        with nogil:
            st = eng_weights_open(cp, &self._w, &err)
        _check(st, &err)

    def __dealloc__(self):
        if self._w != NULL:
            eng_weights_free(self._w)
            self._w = NULL

    def __len__(self):
        return eng_weights_count(self._w)

    def __contains__(self, name):
        cdef eng_tensor_info info
        cdef eng_error err
        _clear(&err)
        b = _name_bytes(name)
        return eng_weights_find(self._w, b, &info, &err) == ENG_OK

    cdef dict _info_dict(self, eng_tensor_info *info):
        return {
            "name": info.name.decode(),
            "file": info.file.decode(),
            "dtype": eng_dtype_name(info.dtype).decode(),
            "shape": tuple(info.shape[i] for i in range(info.ndim)),
            "nbytes": info.nbytes,
        }

    def names(self):
        """Tensor names in sorted order."""
        cdef eng_tensor_info info
        cdef eng_error err
        out = []
        for i in range(eng_weights_count(self._w)):
            _clear(&err)
            _check(eng_weights_info(self._w, i, &info, &err), &err)
            out.append(info.name.decode())
        return out

    def info(self, name):
        """dict(name, file, dtype, shape, nbytes) for one tensor."""
        cdef eng_tensor_info info
        cdef eng_error err
        _clear(&err)
        b = _name_bytes(name)
        _check(eng_weights_find(self._w, b, &info, &err), &err)
        return self._info_dict(&info)

    def read(self, name):
        """The tensor converted to float32 (any float dtype), with its shape."""
        cdef eng_tensor_info info
        cdef eng_error err
        cdef eng_status st
        _clear(&err)
        b = _name_bytes(name)
        cdef const char *cp = b
        _check(eng_weights_find(self._w, cp, &info, &err), &err)
        shape = tuple(info.shape[i] for i in range(info.ndim))
        if info.dtype not in (ENG_F32, ENG_F16, ENG_BF16, ENG_F8_E4M3, ENG_F8_E5M2, ENG_F64):
            raise Unsupported(int(ENG_ERR_UNSUPPORTED), f"{self.path}: tensor {name!r} has dtype "
                              f"{eng_dtype_name(info.dtype).decode()}, which does not convert "
                              "to f32 (float dtypes only)")
        try:
            out = np.empty(shape, dtype=np.float32)
        except (MemoryError, ValueError):  # ValueError: more bytes than numpy can address
            raise OutOfMemory(int(ENG_ERR_OOM), f"{self.path}: tensor {name!r} {shape} as f32: "
                              "out of memory") from None
        cdef float[::1] ov = out.reshape(-1)
        cdef float *op = &ov[0] if out.size else NULL
        cdef size_t nbytes = out.nbytes
        cdef float dummy = 0
        if op == NULL:
            op = &dummy
        _clear(&err)
        with nogil:
            st = eng_weights_read_f32(self._w, cp, op, nbytes, &err)
        _check(st, &err)
        return out


# ---- models ------------------------------------------------------------------------------

cdef int _on_progress(const char *stage, int64_t done, int64_t total, void *user) noexcept with gil:
    cdef Model m = <Model>user
    try:
        return 1 if m._progress(stage.decode(), done, total) else 0
    except BaseException as e:  # never unwind through C
        m._progress_exc = e
        return 1


cdef class Model:
    """A diffusers model folder opened on a Runtime; components load on first use."""

    cdef eng_model *_m
    cdef readonly Runtime runtime
    cdef readonly str path
    cdef object _progress
    cdef object _progress_exc

    def __cinit__(self, Runtime runtime, path):
        cdef eng_error err
        cdef eng_status st
        self.runtime = runtime
        b = _path_bytes(path, "model")
        self.path = os.fsdecode(b)
        cdef const char *cp = b
        _clear(&err)
        with nogil:
            st = eng_model_open(runtime._rt, cp, &self._m, &err)
        _check(st, &err)

    def __dealloc__(self):
        if self._m != NULL:
            eng_model_free(self._m)
            self._m = NULL

    def set_lora(self, path, float scale=1.0):
        """Merge this LoRA into the transformer when it loads (call before first use)."""
        cdef eng_error err
        _clear(&err)
        b = _path_bytes(path, "lora")
        _check(eng_model_set_lora(self._m, b, scale, &err), &err)

    def set_progress(self, callback):
        """callback(stage, done, total) during component loads; a truthy return aborts."""
        self._progress = callback
        if callback is None:
            eng_model_set_progress(self._m, NULL, NULL)
        else:
            eng_model_set_progress(self._m, _on_progress, <void *>self)

    def _raise_progress_exc(self):
        exc, self._progress_exc = self._progress_exc, None
        if exc is not None:
            raise exc

    def has(self, component):
        """True if the component's folder exists (transformer, vae, text_encoder, ...)."""
        b = str(component).encode()
        return bool(eng_model_has(self._m, b))

    def load_transformer(self):
        cdef eng_error err
        cdef eng_status st
        _clear(&err)
        with nogil:
            st = eng_model_load_transformer(self._m, &err)
        self._raise_progress_exc()
        _check(st, &err)

    def transformer_release(self):
        """Drop the transformer's resident weight pages and activation memory (edge memory
        mode)."""
        cdef eng_error err
        cdef eng_status st
        _clear(&err)
        with nogil:
            st = eng_transformer_release(self._m, &err)
        _check(st, &err)

    def transformer_info(self):
        cdef eng_transformer_info info
        cdef eng_error err
        cdef eng_status st
        _clear(&err)
        with nogil:
            st = eng_transformer_get_info(self._m, &info, &err)
        _check(st, &err)
        return {
            "n_layers": info.n_layers, "n_heads": info.n_heads, "head_dim": info.head_dim,
            "dim": info.dim, "in_channels": info.in_channels, "out_channels": info.out_channels,
            "patch_size": info.patch_size, "joint_dim": info.joint_dim,
            "rope_axes": (info.rope_axes[0], info.rope_axes[1], info.rope_axes[2]),
            "weight_dtype": eng_dtype_name(info.weight_dtype).decode(),
        }

    def transformer_activation_bytes(self, int64_t n_img, int64_t n_txt):
        cdef size_t out = 0
        cdef eng_error err
        _clear(&err)
        _check(eng_transformer_activation_bytes(self._m, n_img, n_txt, &out, &err), &err)
        return out

    def transformer_forward(self, latents, prompt_embeds, float sigma, int height, int width,
                            prompt_mask=None, CancelToken cancel=None):
        """Packed latents (N_img, in_channels) + text (N_txt, joint_dim) -> (N_img, out)."""
        info = self.transformer_info()
        _f32("latents", latents, 2)
        _f32("prompt_embeds", prompt_embeds, 2)
        if latents.shape[1] != info["in_channels"]:
            raise _invalid(f"latents must be (N_img, {info['in_channels']}), got {latents.shape}")
        if prompt_embeds.shape[1] != info["joint_dim"]:
            raise _invalid(f"prompt_embeds must be (N_txt, {info['joint_dim']}), got {prompt_embeds.shape}")
        if latents.shape[0] == 0 or prompt_embeds.shape[0] == 0:
            raise _invalid("latents and prompt_embeds must be non-empty")
        cdef int64_t n_img = latents.shape[0], n_txt = prompt_embeds.shape[0]
        cdef const uint8_t[::1] mv
        cdef const uint8_t *mp = NULL
        if prompt_mask is not None:
            _array("prompt_mask", prompt_mask, 1)
            if prompt_mask.shape[0] != n_txt:
                raise _invalid(f"prompt_mask has {prompt_mask.shape[0]} entries, expected {n_txt}")
            if prompt_mask.dtype == np.bool_ or prompt_mask.dtype == np.uint8:
                mv = prompt_mask.view(np.uint8)
            elif np.issubdtype(prompt_mask.dtype, np.integer):
                mv = (prompt_mask != 0).astype(np.uint8)
            else:
                raise _invalid(f"prompt_mask must be bool or integer, got {prompt_mask.dtype}")
            mp = &mv[0]
        out_dim = info["patch_size"] ** 2 * info["out_channels"]
        out = np.empty((n_img, out_dim), dtype=np.float32)
        cdef float[:, ::1] ov = out
        cdef const float[:, ::1] lv = latents
        cdef const float[:, ::1] tv = prompt_embeds
        cdef size_t obytes = out.nbytes
        cdef eng_request req
        memset(&req, 0, sizeof(req))
        if cancel is not None:
            req.cancel = cancel._c
        cdef eng_error err
        cdef eng_status st
        _clear(&err)
        with nogil:
            st = eng_transformer_forward(self._m, &lv[0, 0], n_img, &tv[0, 0], n_txt, mp, sigma,
                                         height, width, &ov[0, 0], obytes, &req, &err)
        _check(st, &err)
        return out


# ---- sampling ----------------------------------------------------------------------------

def randn(seed, shape, offset=0, Runtime runtime=None):
    """Counter-based standard normal noise (Philox4x32-10 + Box-Muller, see engine.h): the same
    seed gives the same numbers on every ISA, thread count and backend. With a runtime the
    work is spread over its threads (same numbers)."""
    if not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise _invalid(f"seed must be an integer in [0, 2^64), got {seed!r}")
    out = np.empty(shape, dtype=np.float32)
    cdef float[::1] ov = out.reshape(-1)
    cdef uint64_t s = seed, off = offset
    cdef int64_t n = out.size
    cdef eng_runtime *r = runtime._rt if runtime is not None else NULL
    cdef eng_error err
    cdef eng_status st = ENG_OK
    _clear(&err)
    if n:
        with nogil:
            if r != NULL:
                st = eng_randn_parallel(r, s, off, &ov[0], n, &err)
            else:
                eng_randn(s, off, &ov[0], n)
    _check(st, &err)
    return out


cdef class _StepState:
    cdef object callback
    cdef object exc


cdef int _on_step(const eng_step_info *info, void *user) noexcept with gil:
    cdef _StepState st = <_StepState>user
    cdef int64_t n
    try:
        n = <int64_t>info.latent_c * info.latent_h * info.latent_w
        x0 = np.asarray(<const float[:n]>info.latent).reshape(
            info.latent_c, info.latent_h, info.latent_w).copy()   # borrowed -> owned
        return 1 if st.callback(info.step, info.n_steps, info.sigma, x0) else 0
    except BaseException as e:  # never unwind through C
        st.exc = e
        return 1


def _opt_mask(name, mask, n):
    if mask is None:
        return None
    _array(name, mask, 1)
    if mask.shape[0] != n:
        raise _invalid(f"{name} has {mask.shape[0]} entries, expected {n}")
    return np.ascontiguousarray(mask != 0, dtype=np.uint8)


def denoise(Model m, latents, txt, sigmas, int height, int width, *, txt_mask=None, neg_txt=None,
            neg_mask=None, float cfg_scale=1.0, on_step=None, CancelToken cancel=None):
    """The flow-matching Euler loop in C (engine.h eng_denoise). latents: packed float32
    (N_img, in_channels) initial noise; sigmas: float32 (steps + 1,). Returns the final packed
    latents. on_step(step, n_steps, sigma, x0) gets the denoised estimate (C, h, w) after each
    step; a truthy return stops (Cancelled)."""
    _f32("latents", latents, 2)
    _f32("txt", txt, 2)
    _f32("sigmas", sigmas, 1)
    if sigmas.shape[0] < 2:
        raise _invalid("sigmas needs at least 2 values (steps + terminal)")
    if txt.shape[0] == 0:
        raise _invalid("txt is empty")
    width_in = m.transformer_info()["in_channels"]
    if latents.shape[1] != width_in:
        raise _invalid(f"latents must be packed (N_img, {width_in}), got {latents.shape}")
    x = latents.copy()
    cdef float[:, ::1] xv = x
    cdef const float[:, ::1] tv = txt
    cdef const float[::1] sv = sigmas
    cdef eng_denoise_params p
    memset(&p, 0, sizeof(p))
    p.txt = &tv[0, 0]
    p.n_txt = txt.shape[0]
    p.txt_dim = txt.shape[1]
    tm = _opt_mask("txt_mask", txt_mask, txt.shape[0])
    cdef const uint8_t[::1] tmv
    if tm is not None:
        tmv = tm
        p.txt_mask = &tmv[0]
    cdef const float[:, ::1] nv
    cdef const uint8_t[::1] nmv
    if neg_txt is not None:
        _f32("neg_txt", neg_txt, 2)
        if neg_txt.shape[0] == 0 or neg_txt.shape[1] != txt.shape[1]:
            raise _invalid(f"neg_txt must be (N_neg, {txt.shape[1]}), got {neg_txt.shape}")
        nv = neg_txt
        p.neg_txt = &nv[0, 0]
        p.n_neg = neg_txt.shape[0]
        nm = _opt_mask("neg_mask", neg_mask, neg_txt.shape[0])
        if nm is not None:
            nmv = nm
            p.neg_mask = &nmv[0]
    p.cfg_scale = cfg_scale
    p.sigmas = &sv[0]
    p.n_steps = sigmas.shape[0] - 1
    p.height = height
    p.width = width
    cdef eng_request req
    memset(&req, 0, sizeof(req))
    cdef _StepState state = _StepState()
    if on_step is not None:
        state.callback = on_step
        req.on_step = _on_step
        req.on_step_user = <void *>state
    if cancel is not None:
        req.cancel = cancel._c
    cdef size_t nbytes = x.nbytes
    cdef eng_error err
    cdef eng_status st
    _clear(&err)
    with nogil:
        st = eng_denoise(m._m, &p, &xv[0, 0], nbytes, &req, &err)
    if state.exc is not None:
        raise state.exc
    _check(st, &err)
    return x


# ---- components implemented in their own include files (one concern each) -------------
include "_vae.pxi"
include "_png.pxi"
include "_textenc.pxi"
