"""Shared benchmark helpers: same-run timing of two implementations, thread control, output."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable

# OpenBLAS reads these at load time; some machines set them to work around old OpenBLAS bugs
# and they slow a current numpy. Benchmarks re-exec themselves without them (tests and CI keep
# them as they are).
_OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def reexec_without_openblas_overrides() -> None:
    if any(v in os.environ for v in _OPENBLAS_VARS) and "QE_BENCH_KEEP_ENV" not in os.environ:
        env = {k: v for k, v in os.environ.items() if k not in _OPENBLAS_VARS}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def limit_threads(n: int):
    """Context manager limiting BLAS/OpenMP pools (numpy, torch) to n threads."""
    from threadpoolctl import threadpool_limits

    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass
    return threadpool_limits(n)


def best_time(fn: Callable[[], object], reps: int, min_time: float = 0.0) -> float:
    """Best wall time of `reps` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    t_start = time.perf_counter()
    for i in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        if i >= 1 and min_time and time.perf_counter() - t_start > min_time:
            break
    return best


def alternate(
    ours: Callable[[], object], theirs: Callable[[], object], rounds: int = 3, reps: int = 3
) -> tuple[float, float]:
    """Times both sides in alternating rounds (so drift in machine load hits both); best of all."""
    t_ours = t_theirs = float("inf")
    for _ in range(rounds):
        # a pause between the sides lets the other library's worker threads stop spinning
        # (OpenBLAS and OpenMP pools busy-wait after a call and would steal a core)
        time.sleep(0.2)
        t_ours = min(t_ours, best_time(ours, reps))
        time.sleep(0.2)
        t_theirs = min(t_theirs, best_time(theirs, reps))
    return t_ours, t_theirs


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """columns: (key, header, format spec)."""
    widths = [max(len(h), *(len(format(r[k], f)) for r in rows)) for k, h, f in columns]
    print("  ".join(h.rjust(w) for (_, h, _), w in zip(columns, widths, strict=True)))
    for r in rows:
        print(
            "  ".join(
                format(r[k], f).rjust(w) for (k, _, f), w in zip(columns, widths, strict=True)
            )
        )


def dump_json(rows: list[dict], meta: dict) -> None:
    print(json.dumps({"meta": meta, "results": rows}, indent=2))
