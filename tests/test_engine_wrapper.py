"""The Cython wrapper: ops against numpy references on every ISA, dtype/shape/contiguity
checks, the exception hierarchy, ISA forcing and GIL release."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import rel_err

from edge_server import _engine


def ref_linear(x, w, b=None):
    y = x.astype(np.float64) @ w.astype(np.float64).T
    return y if b is None else y + b


def bf16_round(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bits = _engine.to_bf16(w)
    return bits, _engine.from_bf16(bits)


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 33, 5), (64, 96, 300), (130, 257, 70)])
@pytest.mark.parametrize("wdt", ["f32", "bf16", "f16"])
def test_linear_matches_numpy(isa, rng, shape, wdt):
    m, n, k = shape
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32) * 0.1
    b = rng.standard_normal(n, dtype=np.float32)
    if wdt == "bf16":
        w_in, w_ref = bf16_round(w)
    elif wdt == "f16":
        w_in = w.astype(np.float16)
        w_ref = w_in.astype(np.float32)
    else:
        w_in = w_ref = w
    y = _engine.linear(x, w_in, b, isa=isa, threads=2)
    assert y.shape == (m, n) and y.dtype == np.float32
    assert rel_err(y, ref_linear(x, w_ref, b)) < 1e-5
    y2 = _engine.linear(x, w_in, isa=isa, threads=1)
    assert rel_err(y2, ref_linear(x, w_ref)) < 1e-5


def test_linear_bf16_rounding_is_nearest_even():
    vals = np.array([1.0, 1.00390625, 1.01171875, -2.5, 3.0e38, np.inf, -np.inf], np.float32)
    # 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties to even (1.0)
    bits = _engine.to_bf16(vals)
    back = _engine.from_bf16(bits)
    assert back[0] == 1.0 and back[1] == 1.0 and back[2] == 1.015625
    assert back[3] == -2.5 and np.isinf(back[5]) and np.isinf(back[6])
    assert np.isnan(_engine.from_bf16(_engine.to_bf16(np.array([np.nan], np.float32))))[0]


def ref_attention(q, k, v, mask=None, causal=False, scale=None):
    hq, sq, d = q.shape
    hkv, sk, _ = k.shape
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    out = np.zeros((hq, sq, d))
    for h in range(hq):
        g = h // (hq // hkv)
        s = q[h].astype(np.float64) @ k[g].astype(np.float64).T * scale
        vis = np.ones((sq, sk), bool)
        if mask is not None:
            vis &= mask[None, :].astype(bool)
        if causal:
            vis &= np.arange(sk)[None, :] <= np.arange(sq)[:, None]
        s = np.where(vis, s, -np.inf)
        mx = s.max(axis=1, keepdims=True)
        p = np.where(vis, np.exp(s - np.where(np.isfinite(mx), mx, 0)), 0)
        tot = p.sum(axis=1, keepdims=True)
        out[h] = np.where(tot > 0, (p @ v[g].astype(np.float64)) / np.where(tot > 0, tot, 1), 0)
    return out


@pytest.mark.parametrize(
    "hq,hkv,sq,sk,d",
    [(1, 1, 1, 1, 8), (4, 2, 37, 53, 16), (7, 1, 65, 65, 128), (3, 3, 130, 17, 72)],
)
def test_attention_matches_reference(isa, rng, hq, hkv, sq, sk, d):
    q = rng.standard_normal((hq, sq, d), dtype=np.float32)
    k = rng.standard_normal((hkv, sk, d), dtype=np.float32)
    v = rng.standard_normal((hkv, sk, d), dtype=np.float32)
    o = _engine.attention(q, k, v, isa=isa, threads=2)
    assert o.shape == (hq, sq, d)
    assert rel_err(o, ref_attention(q, k, v)) < 1e-5
    mask = rng.random(sk) > 0.3
    mask[0] = True
    o = _engine.attention(q, k, v, mask=mask, isa=isa)
    assert rel_err(o, ref_attention(q, k, v, mask=mask)) < 1e-5
    if sq == sk:
        o = _engine.attention(q, k, v, causal=True, scale=0.5, isa=isa)
        assert rel_err(o, ref_attention(q, k, v, causal=True, scale=0.5)) < 1e-5


def test_attention_fully_masked_rows_are_zero(rng):
    q = rng.standard_normal((2, 5, 8), dtype=np.float32)
    k = rng.standard_normal((2, 6, 8), dtype=np.float32)
    o = _engine.attention(q, k, k, mask=np.zeros(6, bool))
    assert np.all(o == 0)


def ref_conv(x, w, b=None):
    _, h, wd = x.shape
    cout, _, ks, _ = w.shape
    p = (ks - 1) // 2
    xp = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p)))
    y = np.zeros((cout, h, wd))
    for ky in range(ks):
        for kx in range(ks):
            patch = xp[:, ky : ky + h, kx : kx + wd]
            y += np.einsum("oc,chw->ohw", w[:, :, ky, kx].astype(np.float64), patch)
    return y if b is None else y + b[:, None, None]


@pytest.mark.parametrize("ks", [1, 3])
def test_conv2d_matches_reference(isa, rng, ks):
    x = rng.standard_normal((13, 9, 21), dtype=np.float32)
    w = rng.standard_normal((20, 13, ks, ks), dtype=np.float32) * 0.2
    b = rng.standard_normal(20, dtype=np.float32)
    y = _engine.conv2d(x, w, b, isa=isa)
    assert y.shape == (20, 9, 21)
    assert rel_err(y, ref_conv(x, w, b)) < 1e-5
    bits, wr = bf16_round(w)
    assert rel_err(_engine.conv2d(x, bits, isa=isa), ref_conv(x, wr)) < 1e-5


# ---- errors ------------------------------------------------------------------------------


def test_exception_hierarchy():
    assert issubclass(_engine.InvalidArgument, ValueError)
    assert issubclass(_engine.InvalidArgument, _engine.EngineError)
    assert issubclass(_engine.OutOfMemory, MemoryError)
    assert issubclass(_engine.EngineIOError, OSError)
    for cls in (_engine.FormatError, _engine.Unsupported, _engine.Cancelled, _engine.BackendError):
        assert issubclass(cls, _engine.EngineError)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: (np.zeros((2, 3)), np.zeros((4, 3), np.float32)), "x must be float32"),
        (lambda: (np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32)), "input features"),
        (
            lambda: (np.zeros((2, 3), np.float32), np.zeros((4, 3), np.int32)),
            "must be float32, float16",
        ),
        (
            lambda: (np.zeros((2, 3), np.float32)[:, ::2], np.zeros((4, 2), np.float32)),
            "C-contiguous",
        ),
        (lambda: (np.zeros(3, np.float32), np.zeros((4, 3), np.float32)), "2 dimensions"),
        (lambda: ([[1.0]], np.zeros((1, 1), np.float32)), "numpy array"),
        (lambda: (np.zeros((0, 3), np.float32), np.zeros((4, 3), np.float32)), "empty"),
    ],
)
def test_linear_rejects_bad_input(make, match):
    x, w = make()
    with pytest.raises(_engine.InvalidArgument, match=match):
        _engine.linear(x, w)


def test_linear_rejects_bad_bias():
    x = np.zeros((2, 3), np.float32)
    w = np.zeros((4, 3), np.float32)
    with pytest.raises(_engine.InvalidArgument, match="b has 3 values, expected 4"):
        _engine.linear(x, w, np.zeros(3, np.float32))


def test_attention_rejects_bad_input():
    q = np.zeros((3, 4, 8), np.float32)
    k = np.zeros((2, 4, 8), np.float32)
    with pytest.raises(_engine.InvalidArgument, match="multiple of 2 kv heads"):
        _engine.attention(q, k, k)
    with pytest.raises(_engine.InvalidArgument, match="shape mismatch"):
        _engine.attention(q, np.zeros((3, 4, 9), np.float32), np.zeros((3, 4, 9), np.float32))
    with pytest.raises(_engine.InvalidArgument, match="mask has 3 entries"):
        _engine.attention(q, q, q, mask=np.ones(3, bool))
    with pytest.raises(_engine.InvalidArgument, match="scale"):
        _engine.attention(q, q, q, scale=-1.0)


def test_isa_and_thread_arguments():
    x = np.ones((2, 2), np.float32)
    with pytest.raises(_engine.InvalidArgument, match="unknown ISA 'sse9'"):
        _engine.linear(x, x, isa="sse9")
    with pytest.raises(_engine.InvalidArgument, match="threads"):
        _engine.linear(x, x, threads=0)
    missing = [i for i in ("avx2", "avx512", "neon") if i not in _engine.supported_isas()]
    for name in missing:
        with pytest.raises(_engine.Unsupported, match=name):
            _engine.linear(x, x, isa=name)
    assert _engine.get_runtime("scalar", 1).isa == "scalar"


def test_cancelled_attention_raises():
    tok = _engine.CancelToken()
    tok.cancel()
    assert tok.cancelled
    q = np.zeros((2, 8, 8), np.float32)
    with pytest.raises(_engine.Cancelled):
        _engine.attention(q, q, q, cancel=tok)


def test_eng_isa_env_forces_isa_and_rejects_missing(tmp_path):
    env = dict(os.environ, ENG_ISA="scalar")
    code = "from edge_server import _engine; print(_engine.get_runtime().isa)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0 and out.stdout.strip() == "scalar", out.stderr
    missing = [i for i in ("avx2", "avx512", "neon") if i not in _engine.supported_isas()]
    env["ENG_ISA"] = missing[0] if missing else "bogus"
    code = (
        "from edge_server import _engine\n"
        "try:\n    _engine.get_runtime()\nexcept _engine.EngineError as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0
    assert out.stdout.startswith(("Unsupported", "InvalidArgument")), out.stdout
    assert "ENG_ISA" in out.stdout


def test_gil_is_released_during_long_calls():
    """A second Python thread keeps running while linear() computes on the scalar path."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((384, 1024), dtype=np.float32)
    w = rng.standard_normal((1024, 1024), dtype=np.float32)
    _engine.linear(x[:4], w, isa="scalar", threads=1)  # warm the runtime cache
    t0 = time.perf_counter()
    _engine.linear(x, w, isa="scalar", threads=1)
    single = time.perf_counter() - t0
    ticks = 0
    done = threading.Event()

    def spin():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    th = threading.Thread(target=spin)
    th.start()
    time.sleep(0.01)
    before = ticks
    _engine.linear(x, w, isa="scalar", threads=1)
    during = ticks - before
    done.set()
    th.join()
    # With the GIL held the spinner could not tick at all during the call.
    assert single > 0.02, "call too short to observe"
    assert during >= max(3, int(single * 1000 * 0.2)), (during, single)
