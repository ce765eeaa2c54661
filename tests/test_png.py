"""The fast PNG writer: standard PNGs (Pillow decodes them losslessly), text chunks, errors."""

from __future__ import annotations

import io
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from edge_server import png


def _decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 13, 3), (64, 48, 4), (33, 17), (256, 256, 3)])
def test_roundtrip_lossless(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    a[: shape[0] // 2] //= 7  # a compressible half and an incompressible half
    img = _decode(png.encode_png(a))
    assert img.size == (shape[1], shape[0])
    np.testing.assert_array_equal(np.asarray(img), a)


def test_non_contiguous_input() -> None:
    a = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    view = a[::2, ::3]
    np.testing.assert_array_equal(np.asarray(_decode(png.encode_png(view))), view)


def test_text_chunks_latin1_and_utf8() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    text = [("prompt", "a red bicycle, café"), ("negative_prompt", "模糊"), ("seed", "42")]
    img = _decode(png.encode_png(a, text))
    assert img.text == dict(text)
    data = png.encode_png(a, text)
    assert b"tEXtprompt\0" in data and b"iTXtnegative_prompt\0" in data


def test_filter_rows_is_png_up_filter() -> None:
    a = np.array([[[10, 200, 3]], [[5, 250, 3]]], np.uint8)  # (2, 1, 3)
    f = png.filter_rows(a)
    assert f.tolist() == [[2, 10, 200, 3], [2, 251, 50, 0]]


def test_smaller_than_raw_on_smooth_images() -> None:
    y, x = np.mgrid[0:128, 0:128]
    a = np.stack([x * 2, y * 2, (x + y)], -1).astype(np.uint8)
    data = png.encode_png(a)
    assert len(data) < a.size / 4
    # the IDAT chunks hold one standard zlib stream
    assert len(zlib.decompress(_idat_stream(data))) == 128 * (1 + 128 * 3)


def _idat_stream(data: bytes) -> bytes:
    """The concatenated IDAT data of a PNG, every chunk's CRC checked."""
    pos, out = 8, b""
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        crc = int.from_bytes(data[pos + 8 + n:pos + 12 + n], "big")
        assert zlib.crc32(kind + body) == crc, kind
        out += body if kind == b"IDAT" else b""
        pos += 12 + n
    return out


def test_adler32_combine() -> None:
    rng = np.random.default_rng(3)
    for n1, n2 in [(0, 0), (0, 5), (5, 0), (1, 1), (70000, 3), (5552, 5552), (1 << 20, 123457)]:
        a = rng.integers(0, 256, n1, np.uint8).tobytes()
        b = rng.integers(0, 256, n2, np.uint8).tobytes()
        assert png.adler32_combine(zlib.adler32(a), zlib.adler32(b), n2) == zlib.adler32(a + b)
    b = b"\xff" * 100000  # the largest sums
    assert png.adler32_combine(zlib.adler32(b), zlib.adler32(b), len(b)) == zlib.adler32(b + b)


def test_parts_are_the_file() -> None:
    a = np.random.default_rng(4).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert b"".join(png.encode_png_parts(a, [("k", "v")])) == png.encode_png(a, [("k", "v")])


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 2), np.uint8),
                                 np.zeros((0, 4, 3), np.uint8), np.zeros(5, np.uint8)])
def test_bad_input_is_a_clear_error(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        png.encode_png(bad)


@pytest.mark.parametrize("key", ["", "k" * 80, "bad\nkey", "ключ"])
def test_bad_text_key(key: str) -> None:
    with pytest.raises(ValueError, match="key"):
        png.encode_png(np.zeros((2, 2, 3), np.uint8), [(key, "v")])


def test_zlib_fallback_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(png, "_isal", None)
    a = np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(_decode(png.encode_png(a))), a)


class _CountingPool(ThreadPoolExecutor):
    submitted = 0

    def submit(self, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        self.submitted += 1
        return super().submit(*args, **kwargs)


@pytest.mark.parametrize("isal", [True, False])
@pytest.mark.parametrize("shape", [(257, 129, 3), (2, 40000, 3), (700, 600, 3)])
def test_parallel_halves_make_one_valid_stream(
    monkeypatch: pytest.MonkeyPatch, isal: bool, shape: tuple[int, ...]
) -> None:
    if not isal:
        monkeypatch.setattr(png, "_isal", None)
    if shape[0] * shape[1] * shape[2] < png.PARALLEL_MIN_BYTES:
        monkeypatch.setattr(png, "PARALLEL_MIN_BYTES", 1 << 12)
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    a[: shape[0] // 3] = 17  # compressible rows in the first piece
    with _CountingPool(1) as pool:
        data = png.encode_png(a, [("k", "v")], pool=pool)
        assert pool.submitted == 1  # the second half did go to the pool
    np.testing.assert_array_equal(np.asarray(_decode(data)), a)
    rows = zlib.decompress(_idat_stream(data))  # one zlib stream over both halves
    assert rows == png.filter_rows(a).tobytes()
