"""Final-image PNG benchmark: qwen-edge's writer (edge_server.png over the engine's C encoder,
cython_core/png.c) against Pillow (compress_level=1, its fastest compressing level), and against
zlib and ISA-L level 1 deflating the same Up-filtered rows (numpy filter; what a Python PNG writer
built on those libraries does), in the same run, on the same thread budget.

    python benchmarks/bench_png.py [--sizes 256 512 1024] [--threads 2] [--json]

Content: "noise" (uniform random bytes: the worst case for every encoder; the demo model's
images compress to about 83%) and "smooth" (a photograph-like image: a 1/16-size random image
upscaled bicubically plus +-2 of grain). Times are the best of alternating rounds
(benchmarks/_common.py alternate); ratio = ours / theirs (< 1: qwen-edge is faster), bytes are
the whole PNG file (zlib and ISA-L: the IDAT stream only)."""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import zlib

sys.path.insert(0, os.path.dirname(__file__))
from _common import alternate, dump_json, print_table, reexec_without_openblas_overrides


def images(size: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(size)
    small = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
    up = np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC), dtype=np.int16)
    smooth = np.clip(up + rng.integers(-2, 3, up.shape), 0, 255).astype(np.uint8)
    return {"noise": rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "smooth": smooth}


def main() -> int:
    reexec_without_openblas_overrides()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--threads", type=int, default=2, help="ours: the runtime's pool size")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from PIL import Image

    from edge_server import _engine, png

    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover
        isal_zlib = None
    rt = _engine.Runtime(None, args.threads)
    rows = []
    for size in args.sizes:
        for kind, img in images(size).items():
            def ours(img=img):
                return png.encode_png(img, runtime=rt)

            def pillow(img=img):
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, "PNG", compress_level=1)
                return buf.getvalue()

            def zlib1(img=img):
                return zlib.compress(png.filter_rows(img), 1)

            others = {"pillow-1": pillow, "zlib-1": zlib1}
            if isal_zlib is not None:
                others["isal-1"] = lambda img=img: isal_zlib.compress(png.filter_rows(img), 1)
            for name, theirs in others.items():
                t_ours, t_theirs = alternate(ours, theirs, rounds=args.rounds, reps=5)
                rows.append({"size": size, "content": kind, "vs": name,
                             "ours_ms": t_ours * 1e3, "theirs_ms": t_theirs * 1e3,
                             "ratio": t_ours / t_theirs, "ours_bytes": len(ours()),
                             "theirs_bytes": len(theirs())})
    meta = {"threads": args.threads, "machine": platform.machine(), "cpus": os.cpu_count(),
            "engine": _engine.build_info() if hasattr(_engine, "build_info") else ""}
    if args.json:
        dump_json(rows, meta)
    else:
        print(f"# PNG encode, ours on {args.threads} threads; ratio = ours / theirs")
        print_table(rows, [("size", "size", "d"), ("content", "content", "s"), ("vs", "vs", "s"),
                           ("ours_ms", "ours ms", ".3f"), ("theirs_ms", "theirs ms", ".3f"),
                           ("ratio", "ratio", ".3f"), ("ours_bytes", "ours B", "d"),
                           ("theirs_bytes", "theirs B", "d")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
