"""Regenerates the VAE golden file (run offline with torch + diffusers installed):

    python tests/golden/make_golden_vae.py

Writes tests/golden/vae_cases.safetensors: for each case of vae_cases.GOLDEN_CASES the
normalised latents and diffusers' fp32 decode (the pipeline's un-normalisation + vae.decode) of
random decoder weights that vae_cases.random_decoder rebuilds from a seed with numpy, so no
weights are committed. The file's __metadata__ records the format version, the library versions
and a SHA-256 of each case's weights (the tests check it before comparing)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from vae_cases import (  # noqa: E402
    GOLDEN_CASES,
    diffusers_decode,
    diffusers_vae,
    golden_latents,
    random_decoder,
    weights_digest,
)

FORMAT_VERSION = "1"


def main() -> None:
    import diffusers

    out: dict[str, np.ndarray] = {}
    meta = {
        "format": "qwen-edge-golden-vae",
        "version": FORMAT_VERSION,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "numpy": np.__version__,
        "cases": ",".join(GOLDEN_CASES),
    }
    for name, (cfg, dtype, seed, _, _) in GOLDEN_CASES.items():
        tensors = random_decoder(cfg, seed, dtype)
        lat = golden_latents(name)
        out[f"{name}.latents"] = lat
        out[f"{name}.ref"] = diffusers_decode(diffusers_vae(cfg, tensors), lat)
        meta[f"{name}.weights_sha256"] = weights_digest(tensors)
    save_file(out, str(HERE / "vae_cases.safetensors"), metadata=meta)
    print("wrote", HERE / "vae_cases.safetensors")


if __name__ == "__main__":
    main()
