"""Kernel benchmarks: qwen-edge GEMM (f32 / bf16 / f16 weights) against numpy.matmul (f32),
and flash attention against torch scaled_dot_product_attention, in the same run.

    python benchmarks/bench_kernels.py            # table
    python benchmarks/bench_kernels.py --json     # machine-readable
    python benchmarks/bench_kernels.py --quick    # fewer repetitions

Both sides use the same thread count (numpy/torch through threadpoolctl / set_num_threads) and
are timed in alternating rounds; every row reports the ratio (ours / theirs in speed, so
> 1.0 means qwen-edge is faster). Run it alone on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _common import (
    alternate,
    dump_json,
    limit_threads,
    print_table,
    reexec_without_openblas_overrides,
)

GEMM_SHAPES = [(1088, 3072, 3072), (1088, 3072, 12288), (1088, 12288, 3072), (64, 3584, 3072)]
ATTN_SEQ = [1088, 4128]


def bench_gemm(threads_list, dtypes, rounds, reps):
    import numpy as np

    from edge_server import _engine

    rng = np.random.default_rng(0)
    rows = []
    for m, k, n in GEMM_SHAPES:
        x = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((n, k), dtype=np.float32) * 0.02
        weights = {"f32": w, "bf16": _engine.to_bf16(w), "f16": w.astype(np.float16)}
        flops = 2.0 * m * n * k
        for threads in threads_list:
            with limit_threads(threads):
                rt = _engine.get_runtime(None, threads)
                for dt in dtypes:
                    wi = weights[dt]
                    t_ours, t_np = alternate(
                        lambda wi=wi: _engine.linear(x, wi, threads=threads),
                        lambda: np.matmul(x, w.T),
                        rounds,
                        reps,
                    )
                    rows.append(
                        {
                            "op": "gemm",
                            "shape": f"{m}x{k}x{n}",
                            "threads": threads,
                            "dtype": dt,
                            "isa": rt.isa,
                            "ours_ms": t_ours * 1e3,
                            "ref_ms": t_np * 1e3,
                            "ours_gflops": flops / t_ours / 1e9,
                            "ref_gflops": flops / t_np / 1e9,
                            "ratio": t_np / t_ours,
                            "ref": "numpy f32",
                        }
                    )
                    print_progress(rows[-1])
    return rows


def bench_attention(threads_list, rounds, reps):
    import numpy as np

    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("# torch not installed: attention rows skipped (pip install torch)", file=sys.stderr)
        return []
    from edge_server import _engine

    rows = []
    heads, d = 24, 128
    rng = np.random.default_rng(1)
    for s in ATTN_SEQ:
        q, k, v = (rng.standard_normal((heads, s, d), dtype=np.float32) for _ in range(3))
        tq, tk, tv = (torch.from_numpy(a)[None] for a in (q, k, v))
        flops = 4.0 * s * s * d * heads
        for threads in threads_list:
            with limit_threads(threads), torch.inference_mode():
                rt = _engine.get_runtime(None, threads)
                t_ours, t_torch = alternate(
                    lambda: _engine.attention(q, k, v, threads=threads),
                    lambda: F.scaled_dot_product_attention(tq, tk, tv),
                    rounds,
                    max(1, reps // 2),
                )
            rows.append(
                {
                    "op": "attention",
                    "shape": f"{heads}x{s}x{d}",
                    "threads": threads,
                    "dtype": "f32",
                    "isa": rt.isa,
                    "ours_ms": t_ours * 1e3,
                    "ref_ms": t_torch * 1e3,
                    "ours_gflops": flops / t_ours / 1e9,
                    "ref_gflops": flops / t_torch / 1e9,
                    "ratio": t_torch / t_ours,
                    "ref": "torch sdpa f32",
                }
            )
            print_progress(rows[-1])
    return rows


_JSON = False


def print_progress(row):
    if not _JSON:
        print(
            f"# {row['op']} {row['shape']} {row['dtype']} {row['threads']}T: "
            f"{row['ours_gflops']:.1f} vs {row['ref_gflops']:.1f} GFLOPS "
            f"(ratio {row['ratio']:.2f})",
            file=sys.stderr,
        )


def main() -> int:
    global _JSON
    reexec_without_openblas_overrides()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="fewer rounds (noisier)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--only", choices=["gemm", "attention"], default=None)
    args = ap.parse_args()
    _JSON = args.json
    threads = [int(t) for t in args.threads.split(",")]
    rounds, reps = (2, 2) if args.quick else (3, 3)

    from threadpoolctl import threadpool_info

    from edge_server import _engine

    rows = []
    if args.only in (None, "gemm"):
        rows += bench_gemm(threads, ["f32", "bf16", "f16"], rounds, reps)
    if args.only in (None, "attention"):
        rows += bench_attention(threads, rounds, reps)
    meta = {
        "machine": platform.machine(),
        "cpu_features": _engine.cpu_features(),
        "isa": _engine.resolve_isa(None),
        "build": _engine.build_info(),
        "blas": [
            {k: i.get(k) for k in ("internal_api", "version", "architecture")}
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        ],
    }
    if args.json:
        dump_json(rows, meta)
    else:
        print(f"qwen-edge {_engine.version()} isa={meta['isa']}  numpy BLAS: {meta['blas']}")
        print_table(
            rows,
            [
                ("op", "op", ""),
                ("shape", "shape (MxKxN | HxSxd)", ""),
                ("threads", "thr", "d"),
                ("dtype", "w", ""),
                ("ours_ms", "ours ms", ".2f"),
                ("ref_ms", "ref ms", ".2f"),
                ("ours_gflops", "ours GF/s", ".1f"),
                ("ref_gflops", "ref GF/s", ".1f"),
                ("ratio", "speed ratio", ".2f"),
                ("ref", "reference", ""),
            ],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
