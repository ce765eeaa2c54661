"""The demo model: deterministic files, key names and shapes equal to the reference classes,
and the engine runs it."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import edge_server
from edge_server import demo
from edge_server.cli import main


def digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_cli_writes_a_deterministic_model(tmp_path, capsys):
    assert main(["demo-model", str(tmp_path / "a")]) == 0
    assert "noise" in capsys.readouterr().out
    demo.write_demo_model(tmp_path / "b")
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    demo.write_demo_model(tmp_path / "c", seed=1)
    assert digest(tmp_path / "a") != digest(tmp_path / "c")
    for sub in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tmp_path / "a" / sub).is_dir()


def test_transformer_runs(tmp_path):
    root = demo.write_demo_model(tmp_path / "m")
    model = edge_server.load_model(root)
    assert model.is_lightning and model.default_steps == 4
    lat = np.zeros((16, 64), np.float32)
    txt = np.ones((3, 32), np.float32)
    assert np.isfinite(model.transformer_forward(lat, txt, 0.5, 64, 64)).all()


def test_shapes_match_diffusers(tmp_path):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    tr = diffusers.QwenImageTransformer2DModel(
        **{k: v for k, v in demo.DEMO_TRANSFORMER.items() if k != "axes_dims_rope"},
        axes_dims_rope=tuple(demo.DEMO_TRANSFORMER["axes_dims_rope"]),
    )
    ref = {k: tuple(v.shape) for k, v in tr.state_dict().items()}
    assert demo.transformer_shapes(demo.DEMO_TRANSFORMER) == ref
    for cfg in (
        demo.DEMO_VAE,
        {
            "base_dim": 8,
            "z_dim": 4,
            "dim_mult": [1, 2, 4],
            "num_res_blocks": 2,
            "attn_scales": [0.5],
            "temperal_downsample": [False, True],
        },
    ):
        vae = diffusers.AutoencoderKLQwenImage(
            **{k: v for k, v in cfg.items() if k not in ("latents_mean", "latents_std")}
        )
        ref = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
        assert demo.vae_shapes(cfg) == ref


def test_text_encoder_shapes_match_transformers():
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    t = demo.DEMO_TEXT
    cfg = transformers.Qwen2_5_VLConfig(
        text_config={
            "hidden_size": t["hidden_size"],
            "intermediate_size": t["intermediate_size"],
            "num_hidden_layers": t["num_hidden_layers"],
            "num_attention_heads": t["num_attention_heads"],
            "num_key_value_heads": t["num_key_value_heads"],
            "vocab_size": t["vocab_size"],
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default"},
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": t["hidden_size"],
        },
        vocab_size=t["vocab_size"],
    )
    m = transformers.Qwen2_5_VLForConditionalGeneration(cfg)
    ref = {
        k.replace("model.language_model.", "model."): tuple(v.shape)
        for k, v in m.state_dict().items()
        if "visual" not in k
    }
    assert demo.text_encoder_shapes(t) == ref
