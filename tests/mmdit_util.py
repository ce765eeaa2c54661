"""Helpers for MMDiT tests: write random-weight QwenImageTransformer2DModel folders in the
real diffusers layout with numpy only (no torch needed), and reference input builders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from edge_server import _engine


def mmdit_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    hd = cfg["attention_head_dim"]
    out = cfg["patch_size"] ** 2 * (cfg.get("out_channels") or cfg["in_channels"])
    shapes: dict[str, tuple[int, ...]] = {}

    def lin(name: str, o: int, i: int) -> None:
        shapes[f"{name}.weight"] = (o, i)
        shapes[f"{name}.bias"] = (o,)

    lin("img_in", d, cfg["in_channels"])
    lin("txt_in", d, cfg["joint_attention_dim"])
    shapes["txt_norm.weight"] = (cfg["joint_attention_dim"],)
    lin("time_text_embed.timestep_embedder.linear_1", d, 256)
    lin("time_text_embed.timestep_embedder.linear_2", d, d)
    lin("norm_out.linear", 2 * d, d)
    lin("proj_out", out, d)
    for b in range(cfg["num_layers"]):
        p = f"transformer_blocks.{b}."
        lin(p + "img_mod.1", 6 * d, d)
        lin(p + "txt_mod.1", 6 * d, d)
        for n in (
            "to_q",
            "to_k",
            "to_v",
            "to_out.0",
            "add_q_proj",
            "add_k_proj",
            "add_v_proj",
            "to_add_out",
        ):
            lin(p + "attn." + n, d, d)
        for n in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
            shapes[p + f"attn.{n}.weight"] = (hd,)
        for s in ("img", "txt"):
            lin(p + f"{s}_mlp.net.0.proj", 4 * d, d)
            lin(p + f"{s}_mlp.net.2", d, 4 * d)
    return shapes


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
