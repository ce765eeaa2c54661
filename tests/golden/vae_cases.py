"""VAE test cases shared by tests/test_parity_vae.py and tests/golden/make_golden_vae.py.

write_random_vae() writes a decoder-only AutoencoderKLQwenImage folder (vae/config.json +
vae/diffusion_pytorch_model.safetensors with post_quant_conv.* and decoder.*, the tensor names
and shapes diffusers saves) from a seeded numpy generator, with numpy alone. The engine never
reads the encoder, so the golden tests need no torch; make_golden_vae.py loads the same tensors
into diffusers to produce the reference outputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

# Reduced config of issue 4: base_dim 24, dim_mult [1, 2, 4], one temporal downsample
# (spatial factor 4, widths [96, 96, 48, 24]).
REDUCED = {
    "base_dim": 24,
    "z_dim": 16,
    "dim_mult": [1, 2, 4],
    "num_res_blocks": 2,
    "attn_scales": [],
    "temperal_downsample": [False, True],
}
# Attention scales (the decoder ignores them, as diffusers' does), one resnet per level less,
# a non-default latents_mean/std and spatial factor 8 (widths [32, 32, 32, 32, 16]).
ATTN = {
    "base_dim": 16,
    "z_dim": 16,
    "dim_mult": [1, 2, 2, 2],
    "num_res_blocks": 1,
    "attn_scales": [0.5, 0.25],
    "temperal_downsample": [False, True, True],
    "latents_mean": [round(0.1 * i - 0.7, 4) for i in range(16)],
    "latents_std": [round(0.8 + 0.15 * i, 4) for i in range(16)],
}
# fmt: off
DEFAULT_MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
DEFAULT_STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
               3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]
# fmt: on

# Golden cases: name -> (config, weight dtype, weight seed, latent (h, w), latent seed)
GOLDEN_CASES = {
    "reduced_f32": (REDUCED, "f32", 1, (30, 7), 11),
    "attn_bf16": (ATTN, "bf16", 2, (9, 21), 12),
}


def full_config(cfg: dict) -> dict:
    out = {
        "_class_name": "AutoencoderKLQwenImage",
        "base_dim": 96,
        "z_dim": 16,
        "dim_mult": [1, 2, 4, 4],
        "num_res_blocks": 2,
        "attn_scales": [],
        "temperal_downsample": [False, True, True],
        "dropout": 0.0,
        "input_channels": 3,
        "latents_mean": DEFAULT_MEAN,
        "latents_std": DEFAULT_STD,
    }
    out.update(cfg)
    return out


def decoder_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor the decoder path uses (time_conv too: saved by diffusers, never used)."""
    c = full_config(cfg)
    base, z, mult, nres = c["base_dim"], c["z_dim"], c["dim_mult"], c["num_res_blocks"]
    dims = [base * u for u in [mult[-1], *mult[::-1]]]
    s: dict[str, tuple[int, ...]] = {}

    def conv(name, o, i, k):
        s[f"{name}.weight"] = (o, i, *k)
        s[f"{name}.bias"] = (o,)

    def res(p, i, o):
        s[f"{p}.norm1.gamma"] = (i, 1, 1, 1)
        conv(f"{p}.conv1", o, i, (3, 3, 3))
        s[f"{p}.norm2.gamma"] = (o, 1, 1, 1)
        conv(f"{p}.conv2", o, o, (3, 3, 3))
        if i != o:
            conv(f"{p}.conv_shortcut", o, i, (1, 1, 1))

    conv("post_quant_conv", z, z, (1, 1, 1))
    conv("decoder.conv_in", dims[0], z, (3, 3, 3))
    res("decoder.mid_block.resnets.0", dims[0], dims[0])
    a = "decoder.mid_block.attentions.0"
    s[f"{a}.norm.gamma"] = (dims[0], 1, 1)
    conv(f"{a}.to_qkv", 3 * dims[0], dims[0], (1, 1))
    conv(f"{a}.proj", dims[0], dims[0], (1, 1))
    res("decoder.mid_block.resnets.1", dims[0], dims[0])
    for i in range(len(mult)):
        cin = dims[i] if i == 0 else dims[i] // 2
        cout = dims[i + 1]
        for r in range(nres + 1):
            res(f"decoder.up_blocks.{i}.resnets.{r}", cin, cout)
            cin = cout
        if i != len(mult) - 1:
            conv(f"decoder.up_blocks.{i}.upsamplers.0.resample.1", cout // 2, cout, (3, 3))
            if c["temperal_downsample"][::-1][i]:
                conv(f"decoder.up_blocks.{i}.upsamplers.0.time_conv", 2 * cout, cout, (3, 1, 1))
    s["decoder.norm_out.gamma"] = (dims[-1], 1, 1, 1)
    conv("decoder.conv_out", c["input_channels"], dims[-1], (3, 3, 3))
    return s


def bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), round to nearest even (finite inputs)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def random_decoder(cfg: dict, seed: int, dtype: str = "f32") -> dict[str, np.ndarray]:
    """Random decoder weights as float32 arrays (bf16-rounded when dtype == 'bf16'): PyTorch's
    default conv init scale (uniform +-1/sqrt(fan_in)), gammas 1 + 0.2 N(0, 1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in decoder_shapes(cfg).items():
        if name.endswith("gamma"):
            a = 1.0 + 0.2 * rng.standard_normal(shape)
        elif name.endswith("bias"):
            a = 0.05 * rng.standard_normal(shape)
        else:
            bound = 1.0 / np.sqrt(np.prod(shape[1:]))
            a = rng.uniform(-bound, bound, shape)
        a = a.astype(np.float32)
        if dtype == "bf16":
            a = bf16_to_f32(bf16_bits(a))
        out[name] = a
    return out


def weights_digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(np.ascontiguousarray(tensors[name], dtype=np.float32).tobytes())
    return h.hexdigest()


def save_safetensors(tensors: dict[str, np.ndarray], path: Path, dtype: str = "f32") -> None:
    """A safetensors file with dtype F32, BF16 or F16 (numpy has no bfloat16)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype=np.float32)
        if dtype == "bf16":
            b, st = bf16_bits(a).tobytes(), "BF16"
        elif dtype == "f16":
            b, st = a.astype(np.float16).tobytes(), "F16"
        else:
            b, st = a.tobytes(), "F32"
        header[name] = {"dtype": st, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def write_random_vae(folder: Path, cfg: dict, *, dtype: str = "f32", seed: int = 0) -> Path:
    """folder/vae/{config.json, diffusion_pytorch_model.safetensors} (decoder tensors only)."""
    vdir = Path(folder) / "vae"
    vdir.mkdir(parents=True, exist_ok=True)
    save_safetensors(
        random_decoder(cfg, seed, dtype), vdir / "diffusion_pytorch_model.safetensors", dtype
    )
    (vdir / "config.json").write_text(json.dumps(full_config(cfg), indent=2))
    return Path(folder)


def golden_latents(case: str) -> np.ndarray:
    cfg, _, _, (h, w), lseed = GOLDEN_CASES[case]
    z = full_config(cfg)["z_dim"]
    return np.random.default_rng(lseed).standard_normal((z, h, w)).astype(np.float32)


# ---- diffusers side (needs torch + diffusers) ----------------------------------------------


def diffusers_vae(cfg: dict, tensors: dict[str, np.ndarray] | None = None):
    """AutoencoderKLQwenImage(cfg) in fp32, eval mode; with `tensors` (decoder weights as from
    random_decoder) loaded into it (the encoder keeps its random init: decode never uses it)."""
    import torch
    from diffusers import AutoencoderKLQwenImage

    c = {k: v for k, v in full_config(cfg).items() if k != "_class_name"}
    vae = AutoencoderKLQwenImage(**c).eval()
    if tensors is not None:
        state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}
        missing, unexpected = vae.load_state_dict(state, strict=False)
        assert not unexpected, unexpected
        bad = [k for k in missing if not k.startswith(("encoder.", "quant_conv."))]
        assert not bad, bad
    return vae


def diffusers_decode(vae, latents: np.ndarray) -> np.ndarray:
    """What QwenImagePipeline does after denoising (fp32 CPU): un-normalise with
    latents_mean / latents_std, vae.decode, first frame. latents (z, h, w) -> (3, s*h, s*w)."""
    import torch

    cfg = vae.config
    x = torch.from_numpy(np.ascontiguousarray(latents))[None, :, None]
    mean = torch.tensor(cfg.latents_mean).view(1, cfg.z_dim, 1, 1, 1).to(x.dtype)
    std = 1.0 / torch.tensor(cfg.latents_std).view(1, cfg.z_dim, 1, 1, 1).to(x.dtype)
    x = x / std + mean
    with torch.no_grad():
        return vae.decode(x, return_dict=False)[0][0, :, 0].numpy()
