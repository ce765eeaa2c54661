"""Fast PNG writer for the server's final images and PNG previews.

Pillow's PNG encoder tries every row filter on every row (adaptive filtering) and then runs
zlib's LZ77 matcher; on a 256x256 image that is 4-9 ms even at compress level 0/1, more than
the whole server overhead budget for a step of the demo model. This writer does what the fast
PNG encoders do (fpng, fpnge, OpenCV's fast settings): one fixed filter for every row, computed
with numpy (the "Up" filter: each byte minus the byte above it), then one fast deflate pass:
ISA-L (python-isal) level 1 where it is installed, zlib's Huffman-only strategy otherwise,
optionally split in two halves on two threads (pigz-style sync-flushed pieces of one deflate
stream; each thread also filters its rows, sums their Adler-32 and CRCs its own IDAT chunk).
The result is a standard PNG (any decoder reads it, pixels are lossless), written in about
0.5 ms at 256x256 instead of ~9 ms. On photographic content it is about the size of Pillow's
level-1 output; on flat synthetic gradients, where Pillow's per-row filter choice pays off,
it is larger.

Text metadata goes into tEXt chunks (Latin-1) or iTXt chunks (UTF-8), as Pillow writes them.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from concurrent.futures import Executor

import numpy as np

try:  # ISA-L's deflate: ~4x faster than zlib at the same ratio on filtered image rows
    from isal import isal_zlib as _isal
except ImportError:  # pragma: no cover - isal has wheels for x86-64 and aarch64
    _isal = None


def _crc32(data: bytes | memoryview, value: int = 0) -> int:
    """CRC-32 as zlib computes it; ISA-L's is ~15x faster (45 vs 3 us on 200 KB)."""
    return (_isal or zlib).crc32(data, value)


def _adler32(data: bytes | memoryview, value: int = 1) -> int:
    return (_isal or zlib).adler32(data, value)

SIGNATURE = b"\x89PNG\r\n\x1a\n"
FILTER_UP = 2
ISAL_MEM_LEVEL = 9  # faster than the default 8 on 256² .. 1024² images, same size (±0.1 %)
PARALLEL_MIN_BYTES = 1 << 19  # below this the hop to a second thread costs what it saves
_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (grey, RGB, RGBA)


def _chunk(kind: bytes, *data: bytes | memoryview) -> list[bytes | memoryview]:
    """A chunk as pieces for one final b"".join (no copy of a large payload here)."""
    crc = _crc32(kind)
    for d in data:
        crc = _crc32(d, crc)
    size = sum(len(d) for d in data)
    return [struct.pack(">I", size) + kind, *data, struct.pack(">I", crc & 0xFFFFFFFF)]


def _text_chunk(key: str, value: str) -> list[bytes | memoryview]:
    """tEXt when key and value are Latin-1, else iTXt (UTF-8, uncompressed)."""
    if not 1 <= len(key) <= 79 or not key.isprintable():
        raise ValueError(f"PNG text key must be 1-79 printable characters, got {key!r}")
    try:
        kb = key.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"PNG text key must be Latin-1, got {key!r}") from None
    try:
        return _chunk(b"tEXt", kb + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return _chunk(b"iTXt", kb + b"\0\0\0\0\0" + value.encode("utf-8"))


def _deflate_part(data: memoryview, last: bool) -> bytes:
    """Raw deflate of one piece of the stream; pieces before the last end on a byte boundary
    (sync flush) so that they concatenate into one valid deflate stream (as pigz does)."""
    if _isal is not None:  # memLevel 9 (the largest hash): 0.21 ms vs 0.34 ms at 256x256
        c = _isal.compressobj(1, _isal.DEFLATED, -15, ISAL_MEM_LEVEL)
        return c.compress(data) + c.flush(_isal.Z_FINISH if last else _isal.Z_SYNC_FLUSH)
    c = zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_HUFFMAN_ONLY)
    return c.compress(data) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


ADLER_BASE = 65521


def adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """Adler-32 of A + B from adler32(A), adler32(B) and len(B) (zlib's adler32_combine)."""
    rem = len2 % ADLER_BASE
    sum1 = adler1 & 0xFFFF
    sum2 = rem * sum1 % ADLER_BASE
    sum1 = (sum1 + (adler2 & 0xFFFF) + ADLER_BASE - 1) % ADLER_BASE
    sum2 = (sum2 + (adler1 >> 16) + (adler2 >> 16) + ADLER_BASE - rem) % ADLER_BASE
    return sum1 | (sum2 << 16)


def _filtered(rows: np.ndarray, r0: int, r1: int) -> np.ndarray:
    """Rows [r0, r1) of the Up-filtered image: rows (h, w*c) -> uint8 (r1 - r0, 1 + w*c), each
    row prefixed by its filter type and holding the byte-wise difference to the row above (the
    image's first row is its own bytes)."""
    out = np.empty((r1 - r0, 1 + rows.shape[1]), np.uint8)  # (r1 - r0, 1 + w*c)
    out[:, 0] = FILTER_UP
    if r0 == 0:
        out[0, 1:] = rows[0]
    else:
        np.subtract(rows[r0], rows[r0 - 1], out=out[0, 1:])  # uint8 arithmetic wraps mod 256
    np.subtract(rows[r0 + 1:r1], rows[r0:r1 - 1], out=out[1:, 1:])
    return out


def filter_rows(pixels: np.ndarray) -> np.ndarray:
    """uint8 (h, w, c) -> uint8 (h, 1 + w*c): the Up-filtered rows (see _filtered)."""
    h = pixels.shape[0]
    return _filtered(pixels.reshape(h, -1), 0, h)


def _idat_band(rows: np.ndarray, r0: int, r1: int, first: bool,
               last: bool) -> tuple[list[bytes | memoryview], int, int]:
    """One IDAT chunk holding the deflate piece of rows [r0, r1) (after the zlib header when
    first), with the Adler-32 of the filtered rows and their length."""
    filtered = memoryview(_filtered(rows, r0, r1).reshape(-1))
    adler = _adler32(filtered)
    head = (b"\x78\x01",) if first else ()
    return _chunk(b"IDAT", *head, _deflate_part(filtered, last)), adler, filtered.nbytes


def _idat(rows: np.ndarray, pool: Executor | None) -> list[bytes | memoryview]:
    """The zlib stream of the filtered rows (header, deflate, Adler-32) as IDAT chunks: one
    per band of rows, then one for the Adler-32. With a pool the second half of the rows is
    done on a pool thread while this thread does the first (deflate and CRC release the GIL)."""
    h = rows.shape[0]
    split = h // 2 if pool is not None and rows.size >= PARALLEL_MIN_BYTES else 0
    fut = pool.submit(_idat_band, rows, split, h, False, True) if split and pool else None
    if fut is None:
        chunks, adler, _ = _idat_band(rows, 0, h, True, True)
    else:
        chunks, adler, _ = _idat_band(rows, 0, split, True, False)
        tail, adler2, n2 = fut.result()
        chunks += tail
        adler = adler32_combine(adler, adler2, n2)
    return chunks + _chunk(b"IDAT", struct.pack(">I", adler))


def encode_png(
    pixels: np.ndarray, text: Iterable[tuple[str, str]] = (), pool: Executor | None = None
) -> bytes:
    """uint8 (h, w, 3) RGB, (h, w, 4) RGBA or (h, w) grey -> PNG bytes with the text chunks.
    pool (optional): a thread pool that compresses half of a large image in parallel."""
    return b"".join(encode_png_parts(pixels, text, pool))


def encode_png_parts(
    pixels: np.ndarray, text: Iterable[tuple[str, str]] = (), pool: Executor | None = None
) -> list[bytes | memoryview]:
    """encode_png as pieces whose concatenation is the file (the server sends them without
    joining them first)."""
    a = np.asarray(pixels)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in _COLOR_TYPES:
        raise ValueError(f"encode_png takes uint8 (h, w), (h, w, 3) or (h, w, 4), "
                         f"got {a.dtype} {a.shape}")
    h, w, c = a.shape
    if not (1 <= h < 2**31 and 1 <= w < 2**31):
        raise ValueError(f"PNG sides must be 1 .. 2^31-1, got {w}x{h}")
    a = np.ascontiguousarray(a)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPES[c], 0, 0, 0)
    parts = [SIGNATURE, *_chunk(b"IHDR", ihdr)]
    for k, v in text:
        parts += _text_chunk(k, v)
    parts += _idat(a.reshape(h, -1), pool)
    parts += _chunk(b"IEND")
    return parts
