"""Regenerates the MMDiT golden files (run offline with torch + diffusers installed):

    python tests/golden/make_golden_mmdit.py

Writes tests/golden/mmdit_tiny{,_bf16}/transformer/ (random weights, real diffusers layout)
and tests/golden/mmdit_cases.safetensors: inputs and diffusers' fp32 outputs for a non-square
grid with odd h, 1 and 77 text tokens, and a padded text mask. The file's __metadata__ records
the format version and the library versions used."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from mmdit_util import TINY, write_random_mmdit  # noqa: E402

FORMAT_VERSION = "1"
CASES = [  # name, height, width, n_txt, sigma, padded text tokens
    ("odd_grid_txt1", 48, 80, 1, 0.63, 0),
    ("txt77", 64, 96, 77, 0.9, 0),
    ("masked", 80, 48, 12, 0.25, 4),
]


def reference(folder: Path, lat, txt, mask, sigma, h, w):
    from diffusers import QwenImageTransformer2DModel

    m = QwenImageTransformer2DModel.from_pretrained(
        folder / "transformer", torch_dtype=torch.float32
    )
    with torch.no_grad():
        out = m(
            hidden_states=torch.from_numpy(lat)[None],
            encoder_hidden_states=torch.from_numpy(txt)[None],
            encoder_hidden_states_mask=None
            if mask is None
            else torch.from_numpy(mask)[None].long(),
            timestep=torch.tensor([sigma]),
            img_shapes=[[(1, h, w)]],
            return_dict=False,
        )[0]
    return out[0].numpy()


def main() -> None:
    import diffusers

    f32 = write_random_mmdit(HERE / "mmdit_tiny", TINY, dtype="f32", seed=1)
    bf16 = write_random_mmdit(HERE / "mmdit_tiny_bf16", TINY, dtype="bf16", seed=1)
    rng = np.random.default_rng(7)
    out = {}
    for name, hpx, wpx, n_txt, sigma, pad in CASES:
        h, w = hpx // 16, wpx // 16
        lat = rng.standard_normal((h * w, TINY["in_channels"])).astype(np.float32)
        txt = rng.standard_normal((n_txt, TINY["joint_attention_dim"])).astype(np.float32)
        mask = None
        if pad:
            mask = np.ones(n_txt, np.uint8)
            mask[n_txt - pad :] = 0
            out[f"{name}.mask"] = mask
        out[f"{name}.latents"] = lat
        out[f"{name}.txt"] = txt
        out[f"{name}.params"] = np.array([hpx, wpx, sigma], np.float32)
        out[f"{name}.ref_f32"] = reference(f32, lat, txt, mask, sigma, h, w)
        out[f"{name}.ref_bf16"] = reference(bf16, lat, txt, mask, sigma, h, w)
    meta = {
        "format": "qwen-edge-golden-mmdit",
        "version": FORMAT_VERSION,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "cases": ",".join(c[0] for c in CASES),
    }
    save_file(out, str(HERE / "mmdit_cases.safetensors"), metadata=meta)
    print("wrote", HERE / "mmdit_cases.safetensors")


if __name__ == "__main__":
    main()
