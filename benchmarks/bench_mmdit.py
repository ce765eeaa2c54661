"""MMDiT benchmark: one full-width Qwen-Image transformer block (24 heads x 128, joint dim 3584,
in_channels 64) at 512x512 (1024 image tokens) and 1024x1024 (4096) with 32 text tokens:
qwen-edge (f32 and bf16 weights) against diffusers in torch fp32 and torch bf16, same run.

    python benchmarks/bench_mmdit.py [--sizes 512,1024] [--threads 2] [--json]

Prints seconds per forward, the speed ratio to torch fp32 (> 1 = qwen-edge faster), achieved
GFLOP/s against the FLOP count of qwen-image-spec section 1.7, peak RSS and the engine's
activation memory. Model weights are random (diffusers init) and written once to a temporary
folder in the real diffusers layout.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _common import (
    alternate,
    best_time,
    dump_json,
    limit_threads,
    peak_rss_mb,
    print_table,
    reexec_without_openblas_overrides,
)

D, HEADS, HEAD_DIM, JOINT, IN_CH, N_TXT = 3072, 24, 128, 3584, 64, 32


def block_flops(n_img: int, n_txt: int) -> float:
    """One block plus the in/out projections (spec 1.7 with 1 layer)."""
    s = n_img + n_txt
    return (
        24 * D * D * s + 4 * D * s * s + 24 * D * D + 2 * 64 * D * n_img * 2 + 2 * JOINT * D * n_txt
    )


def main() -> int:
    reexec_without_openblas_overrides()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)  # best of 3: the VM is noisy
    ap.add_argument("--no-torch-bf16", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import numpy as np
    import torch
    from diffusers import QwenImageTransformer2DModel

    import edge_server

    torch.manual_seed(0)
    cfg = dict(
        patch_size=2,
        in_channels=IN_CH,
        out_channels=16,
        num_layers=1,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS,
        joint_attention_dim=JOINT,
        guidance_embeds=False,
        axes_dims_rope=(16, 56, 56),
    )
    ref = QwenImageTransformer2DModel(**cfg).eval()
    tmp = tempfile.mkdtemp(prefix="qe-bench-mmdit-")
    ref.save_pretrained(os.path.join(tmp, "f32", "transformer"))
    ref.to(torch.bfloat16).save_pretrained(os.path.join(tmp, "bf16", "transformer"))
    ref_bf16 = ref
    ref = QwenImageTransformer2DModel.from_pretrained(
        os.path.join(tmp, "f32", "transformer")
    ).eval()
    ours = {
        dt: edge_server.load_model(os.path.join(tmp, dt), threads=args.threads)
        for dt in ("f32", "bf16")
    }

    rows = []
    rng = np.random.default_rng(0)
    for size in (int(s) for s in args.sizes.split(",")):
        h = w = size // 16
        n_img = h * w
        lat = rng.standard_normal((n_img, IN_CH), dtype=np.float32)
        txt = rng.standard_normal((N_TXT, JOINT), dtype=np.float32)
        tl, tt = torch.from_numpy(lat)[None], torch.from_numpy(txt)[None]
        sigma = torch.tensor([0.75])
        flops = block_flops(n_img, N_TXT)

        def run_torch(model, dtype, tl=tl, tt=tt, sigma=sigma, h=h, w=w):
            with torch.inference_mode():
                return model(
                    hidden_states=tl.to(dtype),
                    encoder_hidden_states=tt.to(dtype),
                    timestep=sigma.to(dtype),
                    img_shapes=[[(1, h, w)]],
                    return_dict=False,
                )[0]

        with limit_threads(args.threads):
            t_ref = None
            for dt in ("f32", "bf16"):
                m = ours[dt]
                t_ours, t_t = alternate(
                    lambda m=m: m.transformer_forward(lat, txt, 0.75, size, size),
                    lambda: run_torch(ref, torch.float32),
                    rounds=args.rounds,
                    reps=1,
                )
                t_ref = t_t if t_ref is None else min(t_ref, t_t)
                rows.append(
                    {
                        "size": size,
                        "impl": f"qwen-edge {dt} weights",
                        "sec": t_ours,
                        "ratio": 0.0,
                        "gflops": flops / t_ours / 1e9,
                        "act_mb": m.transformer_activation_bytes(n_img, N_TXT) / 2**20,
                    }
                )
            rows.append(
                {
                    "size": size,
                    "impl": "torch fp32",
                    "sec": t_ref,
                    "ratio": 1.0,
                    "gflops": flops / t_ref / 1e9,
                    "act_mb": float("nan"),
                }
            )
            if not args.no_torch_bf16:
                t_b = best_time(lambda: run_torch(ref_bf16, torch.bfloat16), 1)
                rows.append(
                    {
                        "size": size,
                        "impl": "torch bf16",
                        "sec": t_b,
                        "ratio": 0.0,
                        "gflops": flops / t_b / 1e9,
                        "act_mb": float("nan"),
                    }
                )
        for r in rows:
            if r["size"] == size:
                r["ratio"] = t_ref / r["sec"]
        largest = 5 * (n_img + N_TXT) * D * 4 / 2**20
        print(
            f"# {size}x{size}: largest live tensors (residual + q, k, v, attention out) "
            f"{largest:.0f} MB",
            file=sys.stderr,
        )
    meta = {
        "threads": args.threads,
        "isa": ours["f32"].isa,
        "peak_rss_mb": peak_rss_mb(),
        "torch": torch.__version__,
    }
    if args.json:
        dump_json(rows, meta)
    else:
        print(
            f"one full-width block, {N_TXT} text tokens, {args.threads} threads, "
            f"isa={meta['isa']}, "
            f"torch {meta['torch']}"
        )
        print_table(
            rows,
            [
                ("size", "px", "d"),
                ("impl", "implementation", ""),
                ("sec", "s/forward", ".3f"),
                ("ratio", "speed vs torch fp32", ".2f"),
                ("gflops", "GFLOP/s", ".1f"),
                ("act_mb", "activations MB", ".0f"),
            ],
        )
        print(f"peak RSS {meta['peak_rss_mb']:.0f} MB (whole process: both torch models + engine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
