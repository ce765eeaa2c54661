"""The demo model: a tiny, deterministic, random-weight Qwen-Image in the real diffusers folder
layout (model_index.json, transformer/, vae/, text_encoder/, tokenizer/, scheduler/) so that
`qwen-edge serve` runs the whole pipeline on a fresh machine in seconds. Its images are noise.

Weights come from the engine's counter-based generator (_engine.randn), so the same seed gives
byte-identical files everywhere; numpy and the engine are all it needs (no torch). The key
names and shapes follow diffusers' QwenImageTransformer2DModel and AutoencoderKLQwenImage and
transformers' Qwen2.5-VL language model (Qwen-Image's on-disk naming); the tests check them
against the reference classes when those are installed."""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path

import numpy as np

from edge_server import _engine

DEMO_TRANSFORMER = {
    "patch_size": 2,
    "in_channels": 64,
    "out_channels": 16,
    "num_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 3,
    "joint_attention_dim": 32,
    "axes_dims_rope": [4, 6, 6],
    "guidance_embeds": False,
}
DEMO_VAE = {
    "base_dim": 8,
    "z_dim": 16,
    "dim_mult": [1, 2, 2, 2],
    "num_res_blocks": 1,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "dropout": 0.0,
    "latents_mean": [
        -0.7571,
        -0.7089,
        -0.9113,
        0.1075,
        -0.1745,
        0.9653,
        -0.1517,
        1.5508,
        0.4134,
        -0.0715,
        0.5517,
        -0.3632,
        -0.1922,
        -0.9497,
        0.2503,
        -0.2921,
    ],
    "latents_std": [
        2.8184,
        1.4541,
        2.3275,
        2.6558,
        1.2196,
        1.7708,
        2.6052,
        2.0743,
        3.2687,
        2.1526,
        2.8652,
        1.5579,
        1.6382,
        1.1253,
        2.8251,
        1.9160,
    ],
}
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
]
DEMO_VOCAB = 288  # 256 byte tokens + 22 special tokens, rounded up
DEMO_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "vocab_size": DEMO_VOCAB,
    "max_position_embeddings": 4096,
}


# ---- key names and shapes ----------------------------------------------------------------


def transformer_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """QwenImageTransformer2DModel state dict: name -> shape."""
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


def vae_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """AutoencoderKLQwenImage state dict (encoder included): name -> shape."""
    base, z, mult, nres = cfg["base_dim"], cfg["z_dim"], cfg["dim_mult"], cfg["num_res_blocks"]
    attn_scales, tdown = cfg.get("attn_scales", []), cfg["temperal_downsample"]
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, o: int, i: int, k: tuple[int, ...]) -> None:
        shapes[f"{name}.weight"] = (o, i, *k)
        shapes[f"{name}.bias"] = (o,)

    def resnet(name: str, i: int, o: int) -> None:
        shapes[f"{name}.norm1.gamma"] = (i, 1, 1, 1)
        conv(f"{name}.conv1", o, i, (3, 3, 3))
        shapes[f"{name}.norm2.gamma"] = (o, 1, 1, 1)
        conv(f"{name}.conv2", o, o, (3, 3, 3))
        if i != o:
            conv(f"{name}.conv_shortcut", o, i, (1, 1, 1))

    def attention(name: str, c: int) -> None:
        shapes[f"{name}.norm.gamma"] = (c, 1, 1)
        conv(f"{name}.to_qkv", 3 * c, c, (1, 1))
        conv(f"{name}.proj", c, c, (1, 1))

    def mid(name: str, c: int) -> None:
        resnet(f"{name}.resnets.0", c, c)
        attention(f"{name}.attentions.0", c)
        resnet(f"{name}.resnets.1", c, c)

    # encoder
    dims = [base * u for u in [1, *mult]]
    conv("encoder.conv_in", dims[0], 3, (3, 3, 3))
    idx, scale = 0, 1.0
    for i, (din, dout) in enumerate(itertools.pairwise(dims)):
        for _ in range(nres):
            resnet(f"encoder.down_blocks.{idx}", din, dout)
            idx += 1
            if scale in attn_scales:
                attention(f"encoder.down_blocks.{idx}", dout)
                idx += 1
            din = dout
        if i != len(mult) - 1:
            conv(f"encoder.down_blocks.{idx}.resample.1", dout, dout, (3, 3))
            if tdown[i]:
                conv(f"encoder.down_blocks.{idx}.time_conv", dout, dout, (3, 1, 1))
            idx += 1
            scale /= 2.0
    mid("encoder.mid_block", dims[-1])
    shapes["encoder.norm_out.gamma"] = (dims[-1], 1, 1, 1)
    conv("encoder.conv_out", 2 * z, dims[-1], (3, 3, 3))
    conv("quant_conv", 2 * z, 2 * z, (1, 1, 1))
    conv("post_quant_conv", z, z, (1, 1, 1))
    # decoder
    dims = [base * u for u in [mult[-1], *mult[::-1]]]
    tup = tdown[::-1]
    conv("decoder.conv_in", dims[0], z, (3, 3, 3))
    mid("decoder.mid_block", dims[0])
    for i, (din, dout) in enumerate(itertools.pairwise(dims)):
        if i > 0:
            din //= 2
        cur = din
        for r in range(nres + 1):
            resnet(f"decoder.up_blocks.{i}.resnets.{r}", cur, dout)
            cur = dout
        if i != len(mult) - 1:
            conv(f"decoder.up_blocks.{i}.upsamplers.0.resample.1", dout // 2, dout, (3, 3))
            if tup[i]:
                conv(f"decoder.up_blocks.{i}.upsamplers.0.time_conv", dout * 2, dout, (3, 1, 1))
    shapes["decoder.norm_out.gamma"] = (dims[-1], 1, 1, 1)
    conv("decoder.conv_out", 3, dims[-1], (3, 3, 3))
    return shapes


def text_encoder_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Qwen2.5-VL language model in Qwen-Image's on-disk naming (model.layers.*)."""
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // nh
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = (h,)
        shapes[p + "post_attention_layernorm.weight"] = (h,)
        for n, o in (("q_proj", nh * hd), ("k_proj", nkv * hd), ("v_proj", nkv * hd)):
            shapes[p + f"self_attn.{n}.weight"] = (o, h)
            shapes[p + f"self_attn.{n}.bias"] = (o,)
        shapes[p + "self_attn.o_proj.weight"] = (h, nh * hd)
        shapes[p + "mlp.gate_proj.weight"] = (inter, h)
        shapes[p + "mlp.up_proj.weight"] = (inter, h)
        shapes[p + "mlp.down_proj.weight"] = (h, inter)
    shapes["model.norm.weight"] = (h,)
    shapes["lm_head.weight"] = (v, h)
    return shapes


# ---- writing -------------------------------------------------------------------------------


def _random_tensors(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Deterministic weights: one Philox stream per file, consumed in sorted-name order;
    weights ~ N(0, 1/fan_in), biases small, norm scales around 1."""
    out, offset = {}, 0
    for name in sorted(shapes):
        shape = shapes[name]
        n = int(np.prod(shape)) if shape else 1
        z = _engine.randn(seed, (n,), offset=offset).reshape(shape)
        offset += n
        if name.endswith((".gamma", "norm.weight", "layernorm.weight")) or ".norm_" in name:
            a = 1.0 + 0.05 * z
        elif name.endswith(".bias"):
            a = 0.02 * z
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            a = z / math.sqrt(max(fan_in, 1))
        out[name] = np.ascontiguousarray(a, dtype=np.float32)
    return out


def _save(tensors: dict[str, np.ndarray], path: Path) -> None:
    from safetensors.numpy import save_file

    save_file(tensors, str(path), metadata={"format": "pt"})


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / Qwen2 byte-level BPE alphabet."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def write_tokenizer(folder: Path) -> None:
    """A byte-level Qwen2Tokenizer folder: 256 byte tokens, no merges, Qwen's special tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = _bytes_to_unicode()
    vocab = {alphabet[b]: b for b in range(256)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    added = {
        str(256 + i): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, t in enumerate(SPECIAL_TOKENS)
    }
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "model_max_length": 32768,
        "padding_side": "right",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "split_special_tokens": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": added,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "added_tokens.json").write_text(
        json.dumps({t: 256 + i for i, t in enumerate(SPECIAL_TOKENS)}, indent=2), encoding="utf-8"
    )
    (folder / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "additional_special_tokens": SPECIAL_TOKENS[1:],
            },
            indent=2,
        ),
        encoding="utf-8",
    )


def write_demo_model(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Writes the demo model folder (idempotent: files are rewritten identically)."""
    root = Path(path)
    for sub in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        (root / sub).mkdir(parents=True, exist_ok=True)

    tr = {
        "_class_name": "QwenImageTransformer2DModel",
        "_diffusers_version": "0.42.1",
        **DEMO_TRANSFORMER,
    }
    (root / "transformer" / "config.json").write_text(json.dumps(tr, indent=2))
    _save(
        _random_tensors(transformer_shapes(DEMO_TRANSFORMER), seed + 1),
        root / "transformer" / "diffusion_pytorch_model.safetensors",
    )

    vae = {
        "_class_name": "AutoencoderKLQwenImage",
        "_diffusers_version": "0.42.1",
        "input_channels": 3,
        **DEMO_VAE,
    }
    (root / "vae" / "config.json").write_text(json.dumps(vae, indent=2))
    _save(
        _random_tensors(vae_shapes(DEMO_VAE), seed + 2),
        root / "vae" / "diffusion_pytorch_model.safetensors",
    )

    text_cfg = {
        **DEMO_TEXT,
        "model_type": "qwen2_5_vl_text",
        "hidden_act": "silu",
        "rope_scaling": {"type": "default", "rope_type": "default", "mrope_section": [1, 1, 2]},
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "tie_word_embeddings": False,
    }
    te = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "text_config": text_cfg,
        "vocab_size": DEMO_VOCAB,
        "torch_dtype": "float32",
        "bos_token_id": 256,
        "eos_token_id": 258,
        "image_token_id": 268,
        "video_token_id": 269,
        "vision_start_token_id": 265,
        "vision_end_token_id": 266,
        "vision_config": {
            "depth": 0,
            "hidden_size": 16,
            "out_hidden_size": DEMO_TEXT["hidden_size"],
        },
    }
    (root / "text_encoder" / "config.json").write_text(json.dumps(te, indent=2))
    _save(
        _random_tensors(text_encoder_shapes(DEMO_TEXT), seed + 3),
        root / "text_encoder" / "model.safetensors",
    )

    write_tokenizer(root / "tokenizer")
    ln3 = math.log(3.0)
    sched = {
        "_class_name": "FlowMatchEulerDiscreteScheduler",
        "_diffusers_version": "0.42.1",
        "base_image_seq_len": 256,
        "base_shift": ln3,
        "max_image_seq_len": 8192,
        "max_shift": ln3,
        "num_train_timesteps": 1000,
        "shift": 1.0,
        "shift_terminal": None,
        "stochastic_sampling": False,
        "time_shift_type": "exponential",
        "use_dynamic_shifting": True,
        "invert_sigmas": False,
        "use_beta_sigmas": False,
        "use_exponential_sigmas": False,
        "use_karras_sigmas": False,
    }
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched, indent=2))
    index = {
        "_class_name": "QwenImagePipeline",
        "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "Qwen2_5_VLForConditionalGeneration"],
        "tokenizer": ["transformers", "Qwen2Tokenizer"],
        "transformer": ["diffusers", "QwenImageTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKLQwenImage"],
        "qwen_edge": {
            "demo": True,
            "lightning": True,
            "default_steps": 4,
            "seed": seed,
            "note": "random weights: the images are noise",
        },
    }
    (root / "model_index.json").write_text(json.dumps(index, indent=2))
    return root


def default_demo_dir() -> Path:
    """Where `qwen-edge serve` keeps the demo model: $QWEN_EDGE_DEMO_DIR, else the XDG cache
    ($CACHE_DIRECTORY under systemd)."""
    env = os.environ.get("QWEN_EDGE_DEMO_DIR")
    if env:
        return Path(env)
    cache = (
        os.environ.get("CACHE_DIRECTORY")
        or os.environ.get("XDG_CACHE_HOME")
        or os.path.join(os.path.expanduser("~"), ".cache")
    )
    return Path(cache) / "qwen-edge" / "demo-model"


def ensure_demo_model(path: str | os.PathLike[str] | None = None) -> Path:
    """The demo model folder, written on first use."""
    root = Path(path) if path is not None else default_demo_dir()
    if not (root / "model_index.json").exists():
        write_demo_model(root)
    return root
