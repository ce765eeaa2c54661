"""VAE decode benchmark: qwen-edge's C decoder against diffusers' AutoencoderKLQwenImage (torch
CPU fp32) in the same run, same thread count, on the real Qwen-Image VAE config.

    python benchmarks/bench_vae.py             # 256 and 512 (+ 1024: ours tiled, torch untiled)
    python benchmarks/bench_vae.py --sizes 256 --no-1024 --quick
    python benchmarks/bench_vae.py --model /path/to/Qwen-Image    # real weights (vae/ folder)
    python benchmarks/bench_vae.py --json

Without --model a random-weight VAE with the real config is built with diffusers and saved with
save_pretrained (the real layout, ~0.5 GB) under --work-dir, once. Latents are N(0, 1) in the
transformer's (normalised) space; both sides un-normalise them as the pipeline does.

Timing: 256 and 512 are timed in this process in alternating rounds (benchmarks/_common.py
alternate: best of all rounds), so drift in machine load hits both sides. 1024 is one decode per
side per --rounds-1024 (alternating; best time). Peak RSS: every (side, size) also runs in a
fresh child process that imports only what its side needs, and reports that process's peak RSS
(VmHWM: interpreter, libraries, weights and activations). ratio = ours / torch (time or RSS):
< 1 means qwen-edge is faster / smaller. Targets (issue 4, 2 threads): time ratio <= 0.5 at 256
and 512; peak RSS at 1024 tiled below half of torch's untiled decode."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import (
    alternate,
    dump_json,
    limit_threads,
    print_table,
    reexec_without_openblas_overrides,
)


def make_latents(size: int, z_dim: int = 16):
    import numpy as np

    return np.random.default_rng(0).standard_normal((z_dim, size // 8, size // 8)).astype("f4")


def ensure_model(args) -> Path:
    """A folder with vae/ (config.json + diffusion_pytorch_model.safetensors)."""
    if args.model:
        return Path(args.model)
    folder = Path(args.work_dir) / "qwen-image-vae-random"
    if not (folder / "vae" / "config.json").exists():
        import torch
        from diffusers import AutoencoderKLQwenImage

        print(f"# building a random real-config VAE in {folder}", file=sys.stderr)
        torch.manual_seed(0)
        AutoencoderKLQwenImage().save_pretrained(folder / "vae")
    return folder


def torch_decoder(folder: Path, threads: int):
    import torch
    from diffusers import AutoencoderKLQwenImage

    torch.set_num_threads(threads)
    vae = AutoencoderKLQwenImage.from_pretrained(folder / "vae", torch_dtype=torch.float32).eval()
    cfg = vae.config
    mean = torch.tensor(cfg.latents_mean).view(1, cfg.z_dim, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(cfg.latents_std).view(1, cfg.z_dim, 1, 1, 1)

    def decode(lat):
        with torch.inference_mode():
            x = torch.from_numpy(lat)[None, :, None] / inv_std + mean
            return vae.decode(x, return_dict=False)[0][0, :, 0].numpy()

    return decode


def ours_decoder(folder: Path, threads: int, tiled: bool):
    import edge_server

    model = edge_server.load_model(folder, threads=threads)
    model.load_vae()
    opts = {"tiling": True} if tiled else {"tiling": False}
    return model, (lambda lat: model.vae_decode(lat, **opts))


def _status_mb(key: str) -> float | None:
    """VmRSS / VmHWM of this process from /proc (Linux), MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a
    child would report its parent's peak."""
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(args) -> int:
    """One decode in this fresh process; prints a JSON line (seconds, peak and base RSS)."""
    folder, size = Path(args.child_folder), args.child_size
    lat = make_latents(size)
    if args.child == "torch":
        decode = torch_decoder(folder, args.threads)
    else:
        _, decode = ours_decoder(folder, args.threads, args.child == "ours-tiled")
    base = _status_mb("VmRSS") or float("nan")
    t0 = time.perf_counter()
    decode(lat)
    dt = time.perf_counter() - t0
    peak = peak_rss_mb()
    print(json.dumps({"seconds": dt, "peak_rss_mb": peak, "base_rss_mb": base}))
    return 0


def run_child(side: str, folder: Path, size: int, threads: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        side,
        "--child-folder",
        str(folder),
        "--child-size",
        str(size),
        "--threads",
        str(threads),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"child {side} {size} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    reexec_without_openblas_overrides()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="256,512", help="image sides timed in-process")
    ap.add_argument("--no-1024", action="store_true", help="skip the 1024 tiled-vs-untiled row")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds-1024", type=int, default=1, help="alternating 1024 runs per side")
    ap.add_argument("--quick", action="store_true", help="fewer rounds (noisier)")
    ap.add_argument("--model", default=None, help="a Qwen-Image folder with vae/ (real weights)")
    ap.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "qwen-edge-bench"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", choices=["ours", "ours-tiled", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--child-folder", help=argparse.SUPPRESS)
    ap.add_argument("--child-size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    import numpy as np

    from edge_server import _engine

    folder = ensure_model(args)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows = []
    with limit_threads(args.threads):
        model, ours = ours_decoder(folder, args.threads, tiled=False)
        theirs = torch_decoder(folder, args.threads)
        for size in sizes:
            lat = make_latents(size)
            diff = float(np.abs(ours(lat) - theirs(lat)).max())
            rounds = 2 if args.quick or size >= 512 else 3
            reps = 1 if args.quick or size >= 512 else 2
            t_ours, t_torch = alternate(
                lambda lat=lat: ours(lat), lambda lat=lat: theirs(lat), rounds, reps
            )
            c_ours = run_child("ours", folder, size, args.threads)
            c_torch = run_child("torch", folder, size, args.threads)
            rows.append(
                _row(
                    size,
                    "untiled",
                    t_ours,
                    t_torch,
                    c_ours,
                    c_torch,
                    diff,
                    model.vae_plan(size // 8, size // 8, tiling=False),
                )
            )
            _progress(rows[-1], args.json)
    if not args.no_1024:
        c_ours, c_torch = {}, {}
        for _ in range(args.rounds_1024):  # alternating fresh processes; best time, max RSS
            for side, acc in (("ours-tiled", c_ours), ("torch", c_torch)):
                r = run_child(side, folder, 1024, args.threads)
                acc["seconds"] = min(acc.get("seconds", float("inf")), r["seconds"])
                acc["peak_rss_mb"] = max(acc.get("peak_rss_mb", 0.0), r["peak_rss_mb"])
                acc["base_rss_mb"] = r["base_rss_mb"]
        import edge_server

        plan = edge_server.load_model(folder).vae_plan(128, 128, tiling=True)
        rows.append(
            _row(
                1024,
                "ours tiled",
                c_ours["seconds"],
                c_torch["seconds"],
                c_ours,
                c_torch,
                float("nan"),
                plan,
            )
        )
        _progress(rows[-1], args.json)

    meta = {
        "machine": platform.machine(),
        "threads": args.threads,
        "isa": _engine.resolve_isa(None),
        "build": _engine.build_info(),
        "model": str(folder),
        "torch": __import__("torch").__version__,
        "diffusers": __import__("diffusers").__version__,
    }
    if args.json:
        dump_json(rows, meta)
    else:
        print(
            f"qwen-edge {_engine.version()} isa={meta['isa']} threads={args.threads} "
            f"torch {meta['torch']} diffusers {meta['diffusers']} (fp32 CPU)"
        )
        print_table(
            rows,
            [
                ("size", "size", "d"),
                ("mode", "qwen-edge", ""),
                ("ours_s", "ours s", ".2f"),
                ("torch_s", "torch s", ".2f"),
                ("time_ratio", "time ratio", ".3f"),
                ("ours_rss_mb", "ours RSS MB", ".0f"),
                ("torch_rss_mb", "torch RSS MB", ".0f"),
                ("rss_ratio", "RSS ratio", ".3f"),
                ("act_mb", "ours act MB", ".0f"),
                ("tiles", "tiles", ""),
                ("max_diff", "max|diff|", ".2g"),
            ],
        )
    return 0


def _row(size, mode, t_ours, t_torch, c_ours, c_torch, diff, plan) -> dict:
    return {
        "size": size,
        "mode": mode,
        "ours_s": t_ours,
        "torch_s": t_torch,
        "time_ratio": t_ours / t_torch,
        "ours_rss_mb": c_ours["peak_rss_mb"],
        "torch_rss_mb": c_torch["peak_rss_mb"],
        "rss_ratio": c_ours["peak_rss_mb"] / c_torch["peak_rss_mb"],
        "ours_base_rss_mb": c_ours["base_rss_mb"],
        "torch_base_rss_mb": c_torch["base_rss_mb"],
        "act_mb": plan["activation_bytes"] / 2**20,
        "tiles": "x".join(str(n) for n in plan["n_tiles"]),
        "max_diff": diff,
    }


def _progress(row: dict, quiet: bool) -> None:
    if not quiet:
        print(
            f"# {row['size']} {row['mode']}: ours {row['ours_s']:.2f}s vs torch "
            f"{row['torch_s']:.2f}s (ratio {row['time_ratio']:.3f}); peak RSS "
            f"{row['ours_rss_mb']:.0f} vs {row['torch_rss_mb']:.0f} MB",
            file=sys.stderr,
        )


if __name__ == "__main__":
    sys.exit(main())
