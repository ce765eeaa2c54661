"""The fast PNG writer: standard PNGs (Pillow decodes them losslessly), text chunks, errors."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from edge_server import _engine, png


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


def test_parts_are_the_file() -> None:
    a = np.random.default_rng(4).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert b"".join(png.encode_png_parts(a, [("k", "v")])) == png.encode_png(a, [("k", "v")])


def test_head_made_beforehand() -> None:
    a = np.random.default_rng(5).integers(0, 256, (40, 50, 4), dtype=np.uint8)
    text = [("k", "v"), ("prompt", "ünïcode")]
    head = png.png_head(50, 40, 4, text)
    assert b"".join(png.encode_png_parts(a, head=head)) == png.encode_png(a, text)
    for w, h, c in ((40, 50, 4), (50, 40, 3), (51, 40, 4)):
        with pytest.raises(ValueError, match="another image"):
            png.encode_png_parts(a, head=png.png_head(w, h, c))
    with pytest.raises(ValueError, match="channels"):
        png.png_head(4, 4, 2)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 2), np.uint8),
                                 np.zeros((0, 4, 3), np.uint8), np.zeros(5, np.uint8)])
def test_bad_input_is_a_clear_error(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        png.encode_png(bad)


@pytest.mark.parametrize("key", ["", "k" * 80, "bad\nkey", "ключ"])
def test_bad_text_key(key: str) -> None:
    with pytest.raises(ValueError, match="key"):
        png.encode_png(np.zeros((2, 2, 3), np.uint8), [(key, "v")])


def test_zlib_crc_fallback_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(png, "_isal", None)
    a = np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(_decode(png.encode_png(a))), a)


def test_runtime_pool_makes_the_same_file() -> None:
    """The bands are cut by size, not by thread count: any runtime gives the same bytes."""
    a = np.random.default_rng(5).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    a[100:200] = 9
    one = png.encode_png(a, [("k", "v")])
    two = png.encode_png(a, [("k", "v")], runtime=_engine.Runtime(None, 2))
    assert one == two
    np.testing.assert_array_equal(np.asarray(_decode(two)), a)


def test_large_stream_is_split_into_idat_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(png, "MAX_IDAT", 1000)
    a = np.random.default_rng(6).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = png.encode_png(a)
    assert data.count(b"IDAT") == -(-len(_idat_stream(data)) // 1000) > 1
    np.testing.assert_array_equal(np.asarray(_decode(data)), a)
