"""Helpers for MMDiT tests: write random-weight QwenImageTransformer2DModel folders in the
real diffusers layout with numpy only (no torch needed), and reference input builders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from edge_server import _engine
from edge_server.demo import transformer_shapes

# The key names and shapes live with the demo model writer (checked there against diffusers).
mmdit_shapes = transformer_shapes


def write_random_mmdit(
    folder: Path, cfg: dict, *, dtype: str = "f32", seed: int = 0, scale: float = 0.2
) -> Path:
    """folder/transformer/{config.json, diffusion_pytorch_model.safetensors}."""
    rng = np.random.default_rng(seed)
    tdir = Path(folder) / "transformer"
    tdir.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, shape in mmdit_shapes(cfg).items():
        a = (rng.standard_normal(shape) * scale).astype(np.float32)
        if name.endswith("norm.weight") or ".norm_" in name:
            a = (1.0 + a).astype(np.float32)
        if dtype == "bf16":
            a = _engine.to_bf16(a)  # stored as raw bf16 bits below
        elif dtype == "f16":
            a = a.astype(np.float16)
        tensors[name] = a
    if dtype == "bf16":
        _save_bf16(tensors, tdir / "diffusion_pytorch_model.safetensors")
    else:
        save_file(tensors, str(tdir / "diffusion_pytorch_model.safetensors"))
    full = {"_class_name": "QwenImageTransformer2DModel", "guidance_embeds": False, **cfg}
    full["axes_dims_rope"] = list(cfg["axes_dims_rope"])
    (tdir / "config.json").write_text(json.dumps(full, indent=2))
    return Path(folder)


def _save_bf16(tensors: dict[str, np.ndarray], path: Path) -> None:
    """safetensors with dtype BF16 from uint16 bit arrays (numpy has no bfloat16)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        b = tensors[name].tobytes()
        header[name] = {
            "dtype": "BF16",
            "shape": list(tensors[name].shape),
            "data_offsets": [off, off + len(b)],
        }
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(len(h).to_bytes(8, "little") + h + b"".join(blobs))


TINY = {  # diffusers' own test config, with 3 layers and a non-default RoPE split
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 4,
    "num_layers": 3,
    "attention_head_dim": 16,
    "num_attention_heads": 3,
    "joint_attention_dim": 16,
    "axes_dims_rope": (8, 4, 4),
}
