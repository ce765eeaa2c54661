"""Fast PNG writer for the server's final images and PNG previews.

Pillow's PNG encoder tries every row filter on every row (adaptive filtering) and then runs
zlib's LZ77 matcher; on a 256x256 image that is 4-9 ms even at compress level 0/1, more than
the whole server overhead budget for a step of the demo model. This writer does what the fast
PNG encoders do (fpnge, fpng): the image data comes from the engine's C encoder
(`_engine.png_zlib`, cython_core/png.c: every row Up-filtered, then deflated in bands on the
runtime's pool with the GIL released, pixel repeats as the only matches and one Huffman code
per band), and this module only frames it: signature, IHDR, text chunks, IDAT, IEND, each
chunk's CRC (ISA-L's CRC-32 where python-isal is installed, zlib's otherwise).
The result is a standard PNG (any decoder reads it, pixels are lossless). At 256x256 it takes
0.07-0.35 ms on 2 threads (noise .. photograph, benchmarks/bench_png.py); on photographs it is
as small as ISA-L level 1 and a few % smaller than zlib level 1 after the same filter.

Text metadata goes into tEXt chunks (Latin-1) or iTXt chunks (UTF-8), as Pillow writes them.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from edge_server import _engine

try:  # ISA-L's CRC-32: ~15x faster than zlib's (3 vs 45 us on 200 KB)
    from isal import isal_zlib as _isal
except ImportError:  # pragma: no cover - isal has wheels for x86-64 and aarch64
    _isal = None


def _crc32(data: bytes | memoryview, value: int = 0) -> int:
    """CRC-32 as zlib computes it."""
    return (_isal or zlib).crc32(data, value)


SIGNATURE = b"\x89PNG\r\n\x1a\n"
FILTER_UP = 2
MAX_IDAT = 1 << 30  # bytes per IDAT chunk (a chunk holds at most 2^31 - 1)
_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (grey, RGB, RGBA)


def _chunk(kind: bytes, *data: bytes | memoryview) -> list[bytes | memoryview]:
    """A chunk as pieces for one final b"".join (no copy of a large payload here)."""
    crc = _crc32(kind)
    for d in data:
        crc = _crc32(d, crc)
    size = sum(len(d) for d in data)
    return [struct.pack(">I", size) + kind, *data, struct.pack(">I", crc & 0xFFFFFFFF)]


_IEND = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))  # no data


@functools.lru_cache(maxsize=256)
def _text_head(key: str) -> tuple[bytes, int, bytes, int]:
    """The type and key of key's tEXt and iTXt chunks, each with its CRC so far (the keys are
    the same few for every image: checked and summed once)."""
    if not 1 <= len(key) <= 79 or not key.isprintable():
        raise ValueError(f"PNG text key must be 1-79 printable characters, got {key!r}")
    try:
        kb = key.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"PNG text key must be Latin-1, got {key!r}") from None
    text, itxt = b"tEXt" + kb + b"\0", b"iTXt" + kb + b"\0\0\0\0\0"
    return text, _crc32(text), itxt, _crc32(itxt)


def _text_chunk(key: str, value: str) -> bytes:
    """tEXt when key and value are Latin-1, else iTXt (UTF-8, uncompressed)."""
    text, text_crc, itxt, itxt_crc = _text_head(key)
    try:
        v, head, crc = value.encode("latin-1"), text, text_crc
    except UnicodeEncodeError:
        v, head, crc = value.encode("utf-8"), itxt, itxt_crc
    return b"".join((struct.pack(">I", len(head) - 4 + len(v)), head, v,
                     struct.pack(">I", _crc32(v, crc) & 0xFFFFFFFF)))


def filter_rows(pixels: np.ndarray) -> np.ndarray:
    """uint8 (h, w, c) -> uint8 (h, 1 + w*c): the Up-filtered rows, each prefixed by its filter
    type and holding the byte-wise difference to the row above (the first row is its own
    bytes). The numpy statement of what png.c filters (the tests compare the two)."""
    h = pixels.shape[0]
    rows = pixels.reshape(h, -1)
    out = np.empty((h, 1 + rows.shape[1]), np.uint8)  # (h, 1 + w*c)
    out[:, 0] = FILTER_UP
    out[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=out[1:, 1:])  # uint8 arithmetic wraps mod 256
    return out


def encode_png(
    pixels: np.ndarray, text: Iterable[tuple[str, str]] = (), runtime: Any = None
) -> bytes:
    """uint8 (h, w, 3) RGB, (h, w, 4) RGBA or (h, w) grey -> PNG bytes with the text chunks.
    runtime: the _engine.Runtime whose pool compresses the bands (default: this thread only)."""
    return b"".join(encode_png_parts(pixels, text, runtime))


def png_head(width: int, height: int, channels: int = 3,
             text: Iterable[tuple[str, str]] = ()) -> bytes:
    """What comes before a PNG's image data: signature, IHDR and the text chunks. It needs only
    the size and the text, so the server makes it while the engine still runs."""
    if channels not in _COLOR_TYPES:
        raise ValueError(f"PNG channels must be 1, 3 or 4, got {channels}")
    if not (1 <= height < 2**31 and 1 <= width < 2**31):
        raise ValueError(f"PNG sides must be 1 .. 2^31-1, got {width}x{height}")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[channels], 0, 0, 0)
    return b"".join([SIGNATURE, *_chunk(b"IHDR", ihdr), *(_text_chunk(k, v) for k, v in text)])


def encode_png_parts(
    pixels: np.ndarray, text: Iterable[tuple[str, str]] = (), runtime: Any = None,
    head: bytes | None = None,
) -> list[bytes | memoryview]:
    """encode_png as pieces whose concatenation is the file (the server sends them without
    joining them first). head: png_head() of this image made earlier (text is then unused)."""
    a = np.asarray(pixels)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in _COLOR_TYPES:
        raise ValueError(f"encode_png takes uint8 (h, w), (h, w, 3) or (h, w, 4), "
                         f"got {a.dtype} {a.shape}")
    h, w, c = a.shape
    if head is None:
        head = png_head(w, h, c, text)
    elif head[16:26] != struct.pack(">IIBB", w, h, 8, _COLOR_TYPES[c]):
        raise ValueError(f"the PNG head was made for another image than {w}x{h}x{c}")
    parts: list[bytes | memoryview] = [head]
    stream = _engine.png_zlib(a, runtime if runtime is not None else _engine.get_runtime(threads=1))
    for off in range(0, len(stream), MAX_IDAT):
        parts += _chunk(b"IDAT", stream[off:off + MAX_IDAT])
    parts.append(_IEND)
    return parts
