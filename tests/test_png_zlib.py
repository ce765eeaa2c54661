"""The engine's PNG image-data encoder (_engine.png_zlib, cython_core/png.c) against zlib, the
reference inflater: every stream inflates to exactly the Up-filtered rows (numpy's
png.filter_rows), with a valid Adler-32, for every kind of content, size and channel count,
both block kinds (Huffman-coded and stored) and any number of bands."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from edge_server import _engine
from edge_server.png import filter_rows

RT2 = _engine.Runtime(None, 2)


def _images(h: int, w: int, c: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    grad = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256,
                     (x * y) % 256], -1)[:, :, :c].astype(np.uint8)
    smooth = np.clip(grad.astype(np.int16) + rng.integers(-3, 4, (h, w, c)), 0, 255)
    runs = np.repeat(rng.integers(0, 4, (h, (w + 6) // 7, c), dtype=np.uint8), 7, axis=1)[:, :w]
    return {
        "noise": rng.integers(0, 256, (h, w, c), dtype=np.uint8),
        "flat": np.full((h, w, c), 77, np.uint8),
        "gradient": grad,
        "smooth": smooth.astype(np.uint8),
        "runs": np.ascontiguousarray(runs),  # repeats of every length, ending anywhere
    }


def _inflate(img: np.ndarray, runtime: _engine.Runtime = RT2) -> tuple[bytes, int]:
    z = bytes(_engine.png_zlib(img, runtime))
    assert z[:2] == b"\x78\x01"
    return zlib.decompress(z), len(z)  # zlib checks the Adler-32 trailer


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 1, 3), (2, 3, 4), (7, 5, 3), (3, 9, 2),
                                   (256, 256, 3), (300, 1000, 3), (64, 4000, 4), (1, 70000, 1),
                                   (70000, 1, 1), (513, 257, 3)])
def test_inflates_to_the_filtered_rows(shape: tuple[int, int, int]) -> None:
    for name, img in _images(*shape, seed=sum(shape)).items():
        raw, _ = _inflate(img)
        assert raw == filter_rows(img).tobytes(), (shape, name)


def test_grey_2d_input_is_one_channel() -> None:
    img = np.random.default_rng(1).integers(0, 256, (20, 30), dtype=np.uint8)
    want = filter_rows(img[:, :, None]).tobytes()
    assert zlib.decompress(bytes(_engine.png_zlib(img, RT2))) == want


def test_compresses_like_zlib_level_1_or_better() -> None:
    """Huffman-coded where that pays (smooth, flat, repeated content), stored for noise, which
    then costs 5 bytes per 64 KiB block over the raw rows."""
    for name, img in _images(256, 256, 3, seed=7).items():
        ref = filter_rows(img).tobytes()
        raw, n = _inflate(img)
        assert raw == ref
        if name == "noise":
            assert len(ref) < n <= len(ref) + 5 * (len(ref) // 65535 + 1) + 2 + 4 + 5 * 4
        else:
            assert n <= len(zlib.compress(ref, 1)) * 1.05, name


def _from_filtered(v: np.ndarray) -> np.ndarray:
    """The grey image whose Up-filtered rows are v (h, w) (row y = row y-1 + v[y], mod 256)."""
    return np.cumsum(v, axis=0, dtype=np.uint64).astype(np.uint8)


@pytest.mark.parametrize("h", [16, 64, 70])
def test_code_fitted_to_a_sample_of_the_band(h: int) -> None:
    """The code is fitted to every 4th 4096-byte segment of a band (grey rows of 4095 pixels:
    every 4th row). Content unlike the sample still inflates exactly: bytes the sample never
    had (it had 0..127, the rest is noise: the band outgrows its stored size while being
    coded and is rewritten stored), match lengths the sample never had (runs of every length
    outside it), and the other way round (noise sampled, zeros elsewhere: stored). With 70
    rows the bands are 14 rows long, so the sample falls elsewhere: it must inflate all the
    same."""
    rng = np.random.default_rng(h)
    noise = rng.integers(0, 256, (h, 4095), dtype=np.uint8)
    sampled = (np.arange(h) % 4 == 0)[:, None]
    runs = (np.arange(4095)[None, :] // (1 + np.arange(h)[:, None] * 7 % 300) * 37) % 256
    cases = {
        "unseen bytes": np.where(sampled, noise & 127, noise),
        "unseen lengths": np.where(sampled, noise & 15, runs),
        "noise sampled": np.where(sampled, noise, 0),
    }
    for name, v in cases.items():
        img = _from_filtered(v.astype(np.uint8))
        ref = filter_rows(img[:, :, None]).tobytes()
        assert ref == bytes(np.insert(v.astype(np.uint8), 0, 2, axis=1))  # the premise
        raw, n = _inflate(img)
        assert raw == ref, name
        stored = len(ref) + 5 * (len(ref) // 65535 + 1) + 2 + 4 + 5 * (h // 16 + 1)
        if name == "unseen lengths":
            assert n < len(ref) // 2, name
        elif h % 16 == 0:
            assert len(ref) < n <= stored, name  # the stored size, never more


def test_same_bytes_on_one_or_two_threads() -> None:
    img = _images(700, 300, 3, seed=3)["smooth"]
    assert bytes(_engine.png_zlib(img, _engine.Runtime(None, 1))) == bytes(
        _engine.png_zlib(img, RT2))


def test_same_bytes_on_every_isa() -> None:
    """The band coder is compiled per ISA (png_band_*.c); the scalar one is the specification."""
    isas = [i for i in ("avx2", "avx512", "neon") if i in _engine.supported_isas()]
    scalar = _engine.Runtime("scalar", 2)
    for name, img in _images(300, 257, 3, seed=5).items():
        want = bytes(_engine.png_zlib(img, scalar))
        for isa in isas:
            assert bytes(_engine.png_zlib(img, _engine.Runtime(isa, 2))) == want, (name, isa)


def test_non_contiguous_input_is_copied() -> None:
    a = np.random.default_rng(2).integers(0, 256, (40, 60, 3), dtype=np.uint8)[::2, ::3]
    assert zlib.decompress(bytes(_engine.png_zlib(a, RT2))) == filter_rows(
        np.ascontiguousarray(a)).tobytes()


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 5), np.uint8),
                                 np.zeros((0, 4, 3), np.uint8), np.zeros(5, np.uint8),
                                 np.zeros((1, 1 << 23, 3), np.uint8)])
def test_bad_input_is_a_clear_error(bad: np.ndarray) -> None:
    with pytest.raises(_engine.InvalidArgument, match="pixels"):
        _engine.png_zlib(bad, RT2)
