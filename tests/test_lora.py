"""LoRA merging at load: a random rank-4 LoRA in Lightning's key format, merged by qwen-edge,
against diffusers' QwenImagePipeline.load_lora_weights + fuse_lora (torch fp32); key forms,
bf16 weights, and one clear error for bad files."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rel_err
from mmdit_util import TINY, mmdit_shapes, write_random_mmdit
from safetensors.numpy import save_file

import edge_server
from edge_server import _engine

TARGETS = [
    "attn.to_q",
    "attn.to_k",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_q_proj",
    "attn.add_k_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
    "img_mlp.net.0.proj",
    "img_mlp.net.2",
    "txt_mlp.net.0.proj",
    "txt_mlp.net.2",
]


def make_lora(cfg, path, *, rank=4, alpha=2.0, prefix="", naming="lightning", seed=0, layers=None):
    rng = np.random.default_rng(seed)
    shapes = mmdit_shapes(cfg)
    t = {}
    for b in layers if layers is not None else range(cfg["num_layers"]):
        for mod in TARGETS:
            name = f"transformer_blocks.{b}.{mod}"
            out, inp = shapes[name + ".weight"]
            down = (rng.standard_normal((rank, inp)) * 0.3).astype(np.float32)
            up = (rng.standard_normal((out, rank)) * 0.3).astype(np.float32)
            if naming == "lightning":
                t[f"{prefix}{name}.lora_down.weight"] = down
                t[f"{prefix}{name}.lora_up.weight"] = up
                t[f"{prefix}{name}.alpha"] = np.array(alpha, np.float32)
            else:
                t[f"{prefix}{name}.lora_A.weight"] = down
                t[f"{prefix}{name}.lora_B.weight"] = up
    save_file(t, str(path))
    return t


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((12, 16)).astype(np.float32),
        rng.standard_normal((5, 16)).astype(np.float32),
    )


def test_matches_diffusers_fuse_lora(tmp_path):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    pytest.importorskip("peft")  # diffusers' load_lora_weights needs the PEFT backend
    cfg = {**TINY, "num_layers": 2}
    folder = write_random_mmdit(tmp_path / "m", cfg, seed=2)
    lora = tmp_path / "Qwen-Image-Lightning-4steps-test.safetensors"
    make_lora(cfg, lora, prefix="diffusion_model.")
    lat, txt = inputs()
    tr = diffusers.QwenImageTransformer2DModel.from_pretrained(folder / "transformer").eval()
    pipe = diffusers.QwenImagePipeline(
        transformer=tr,
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(),
        vae=None,
        text_encoder=None,
        tokenizer=None,
    )
    pipe.load_lora_weights(str(lora))
    pipe.fuse_lora()
    with torch.no_grad():
        ref = tr(
            hidden_states=torch.from_numpy(lat)[None],
            encoder_hidden_states=torch.from_numpy(txt)[None],
            timestep=torch.tensor([0.75]),
            img_shapes=[[(1, 3, 4)]],
            return_dict=False,
        )[0][0].numpy()
    ours = edge_server.load_model(folder, lora=lora).transformer_forward(lat, txt, 0.75, 48, 64)
    base = edge_server.load_model(folder).transformer_forward(lat, txt, 0.75, 48, 64)
    assert rel_err(base, ref) > 1e-2  # the LoRA changes the output
    assert rel_err(ours, ref) < 1e-4


def reference_merge(folder, lora_t, scale, prefix=""):
    """numpy merge of the whole LoRA into f32 copies of the weights (for key-form checks)."""
    w = _engine.Weights(folder / "transformer" / "diffusion_pytorch_model.safetensors")
    merged = {}
    for b in range(TINY["num_layers"]):
        for mod in TARGETS:
            name = f"transformer_blocks.{b}.{mod}"
            down = lora_t.get(
                f"{prefix}{name}.lora_down.weight", lora_t.get(f"{prefix}{name}.lora_A.weight")
            )
            up = lora_t.get(
                f"{prefix}{name}.lora_up.weight", lora_t.get(f"{prefix}{name}.lora_B.weight")
            )
            alpha = float(lora_t.get(f"{prefix}{name}.alpha", down.shape[0]))
            merged[name] = w.read(name + ".weight") + scale * alpha / down.shape[0] * (up @ down)
    return merged


@pytest.mark.parametrize(
    "naming,prefix",
    [("lightning", ""), ("lightning", "diffusion_model."), ("peft", "transformer.")],
)
def test_key_forms_and_scale(tmp_path, naming, prefix):
    folder = write_random_mmdit(tmp_path / "m", TINY, seed=4)
    lora = tmp_path / "l.safetensors"
    make_lora(TINY, lora, prefix=prefix, naming=naming, seed=1)
    lat, txt = inputs(1)
    a = edge_server.load_model(folder, lora=lora, lora_scale=0.5).transformer_forward(
        lat, txt, 0.5, 48, 64
    )
    b = edge_server.load_model(folder, lora=lora, lora_scale=0.5).transformer_forward(
        lat, txt, 0.5, 48, 64
    )
    np.testing.assert_array_equal(a, b)
    c = edge_server.load_model(folder, lora=lora, lora_scale=0.0).transformer_forward(
        lat, txt, 0.5, 48, 64
    )
    base = edge_server.load_model(folder).transformer_forward(lat, txt, 0.5, 48, 64)
    np.testing.assert_array_equal(c, base)
    assert rel_err(a, base) > 1e-3


def test_bf16_weights_stay_bf16_and_progress(tmp_path):
    folder = write_random_mmdit(tmp_path / "m", TINY, dtype="bf16", seed=4)
    lora = tmp_path / "l.safetensors"
    make_lora(TINY, lora, seed=3, layers=[1])
    seen = []
    model = edge_server.load_model(
        folder, lora=lora, progress=lambda s, d, t: seen.append((s, d, t))
    )
    model.load_transformer()
    assert model.transformer_info()["weight_dtype"] == "bf16"
    assert ("transformer", 3, 3) in seen and ("lora", len(TARGETS), len(TARGETS)) in seen
    lat, txt = inputs(2)
    out = model.transformer_forward(lat, txt, 0.5, 48, 64)
    assert np.isfinite(out).all()
    with pytest.raises(_engine.Cancelled, match="aborted"):
        edge_server.load_model(folder, progress=lambda s, d, t: d == 2).load_transformer()


def test_bad_lora_files_give_one_clear_error(tmp_path):
    folder = write_random_mmdit(tmp_path / "m", TINY, seed=4)
    lora = tmp_path / "bad.safetensors"
    t = make_lora(TINY, lora, layers=[0])
    t["transformer_blocks.0.attn.to_q.lora_up.weight"] = np.zeros((7, 4), np.float32)
    del t["transformer_blocks.0.attn.to_k.lora_up.weight"]
    t["transformer_blocks.9.attn.to_q.lora_down.weight"] = np.zeros((4, 48), np.float32)
    t["something.else"] = np.zeros(3, np.float32)
    save_file(t, str(lora))
    with pytest.raises(_engine.FormatError) as ei:
        edge_server.load_model(folder, lora=lora).load_transformer()
    msg = str(ei.value)
    assert "4 problems" in msg and "unknown key 'something.else'" in msg
    assert "to_k' lacks its up" in msg and "transformer_blocks.9.attn.to_q' is not a linear" in msg
    assert "down [4, 48] / up [7, 4] do not fit weight [48, 48]" in msg
    with pytest.raises(_engine.EngineIOError, match="does not exist"):
        edge_server.load_model(folder, lora=tmp_path / "missing.safetensors")
