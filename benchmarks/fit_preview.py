"""Measure the latent-to-RGB preview fits against the real VAE, and fit a better one.

    python benchmarks/fit_preview.py /models/Qwen-Image --lora ...Lightning-8steps....safetensors \\
        [--prompts prompts.txt] [--size 512] [--steps 8]

For each prompt it generates an image, keeps every step's x0 (the denoised estimate the preview
is made from), decodes each x0 with the full VAE, averages the decode down to the latent grid
(8x8 pixel blocks) and reports, per published fit (edge_server.previews.FITS), the PSNR of the
projection against that decode. It also fits a least-squares 16x3 matrix + bias on all
samples and reports it the same way (hold-out: the last prompt), printing its constants.

It needs the real weights: on the random-weight demo model the numbers mean nothing. Also
prints the projection's cost at 1024x1024 (a 128x128 latent) next to a transformer step.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

DEFAULT_PROMPTS = [
    "a red tram in the rain at night, reflections on the street",
    "a bowl of fresh fruit on a wooden table, soft window light",
    "a snowy mountain lake at sunrise, pine trees",
    "a neon sign that says OPEN in a dark alley",
    "a portrait of an old fisherman, detailed skin, overcast light",
]


def block_mean(rgb: np.ndarray, f: int = 8) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H/f, W/f, 3) in [0, 255]."""
    c, h, w = rgb.shape
    m = rgb.reshape(c, h // f, f, w // f, f).mean(axis=(2, 4))
    return (np.clip(m, -1, 1).transpose(1, 2, 0) + 1) * 127.5


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--lora")
    ap.add_argument("--prompts", help="a text file, one prompt per line")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args()

    import edge_server
    from edge_server import previews

    x0 = np.random.default_rng(0).standard_normal((16, 128, 128)).astype(np.float32)
    t0 = time.perf_counter()
    for _ in range(20):
        previews.latent_to_rgb(x0)
    print(
        f"projection at 1024x1024 (128x128 latent): {(time.perf_counter() - t0) / 20 * 1e3:.2f} ms"
    )

    prompts = DEFAULT_PROMPTS
    if args.prompts:
        with open(args.prompts, encoding="utf-8") as f:
            prompts = [ln.strip() for ln in f if ln.strip()]
    model = edge_server.load_model(args.model, lora=args.lora)
    samples = []  # (prompt index, x0 (16, h, w), target (h, w, 3))
    for i, p in enumerate(prompts):
        x0s = []
        model.generate(
            p,
            width=args.size,
            height=args.size,
            steps=args.steps,
            seed=i,
            on_step=lambda s, x0s=x0s: x0s.append(s.x0),
        )
        for x in x0s:
            samples.append((i, x, block_mean(model.vae_decode(x))))
        print(f"prompt {i + 1}/{len(prompts)}: {len(x0s)} steps", file=sys.stderr)

    def report(name: str, m: np.ndarray, b: np.ndarray) -> None:
        scores = []
        for _, x, target in samples:
            rgb = (np.einsum("chw,ck->hwk", x, m) + b + 1) * 127.5
            scores.append(psnr(np.clip(rgb, 0, 255), target))
        print(f"{name:>10}: PSNR mean {np.mean(scores):.2f} dB, min {np.min(scores):.2f} dB")

    for name, (m, b) in previews.FITS.items():
        report(name, m, b)
    train = [s for s in samples if s[0] != len(prompts) - 1] or samples
    xs = np.concatenate([s[1].reshape(16, -1).T for s in train])
    ys = np.concatenate([(s[2].reshape(-1, 3) / 127.5 - 1) for s in train])
    a = np.hstack([xs, np.ones((len(xs), 1), np.float32)])
    sol, *_ = np.linalg.lstsq(a, ys, rcond=None)
    report("lstsq", sol[:16].astype(np.float32), sol[16].astype(np.float32))
    np.set_printoptions(precision=6, suppress=True)
    print("least-squares fit (rows = latent channels; R, G, B):")
    print(repr(sol[:16]))
    print("bias:", repr(sol[16]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
