"""Malformed model folders and weight files found by fuzzing (2026-11-29): each must end in a
clear engine error, never a crash, a hang or a silently wrong load. Every case starts from the
demo model (edge_server.demo) with one thing changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import edge_server
from edge_server import _engine, demo


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return demo.write_demo_model(tmp_path_factory.mktemp("demo") / "m")


@pytest.fixture
def model_dir(pristine, tmp_path) -> Path:
    d = tmp_path / "m"
    shutil.copytree(pristine, d)
    return d


def _edit_json(path: Path, **changes) -> None:
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def _transformer(d: Path, **changes) -> None:
    """Rewrite transformer/ with a changed config and weights of the matching shapes."""
    cfg = {**demo.DEMO_TRANSFORMER, **changes}
    _edit_json(d / "transformer" / "config.json", **changes)
    tensors = demo._random_tensors(demo.transformer_shapes(cfg), 1)
    save_file(tensors, str(d / "transformer" / "diffusion_pytorch_model.safetensors"))


def _vae(d: Path, **changes) -> None:
    cfg = {**demo.DEMO_VAE, **changes}
    _edit_json(d / "vae" / "config.json", **changes)
    tensors = demo._random_tensors(demo.vae_shapes(cfg), 2)
    save_file(tensors, str(d / "vae" / "diffusion_pytorch_model.safetensors"))


def _generate(d: Path, **kw):
    m = edge_server.load_model(d)
    return m.generate("a red boat", width=64, height=64, steps=1, seed=1, **kw)


# ---- components that do not fit each other --------------------------------------------------


@pytest.mark.parametrize("joint", [8, 64, 65536])
def test_a_text_encoder_of_another_width_is_an_error(model_dir, joint):
    """The transformer's joint_attention_dim must be the text encoder's hidden size (32 here):
    wider read past the prompt embeddings (a segfault), narrower ran on garbage."""
    _transformer(model_dir, joint_attention_dim=joint)
    with pytest.raises(_engine.InvalidArgument, match="joint_attention_dim"):
        _generate(model_dir)


@pytest.mark.parametrize("dim_mult,temporal", [([1, 2], [False]), ([1, 2, 2, 2, 2],
                                                                      [False, True, True, False])])
def test_a_vae_of_another_scale_is_an_error(model_dir, dim_mult, temporal):
    """The pipeline sizes the latents for an 8x VAE; a consistent 2x or 16x one decoded images
    of the wrong size without a word."""
    _vae(model_dir, dim_mult=dim_mult, temperal_downsample=temporal)
    with pytest.raises(_engine.FormatError, match="upsamples"):
        _generate(model_dir)


def test_a_transformer_with_other_patches_is_an_error(model_dir):
    _transformer(model_dir, patch_size=1, in_channels=16)
    with pytest.raises(_engine.FormatError, match="patch_size 1"):
        _generate(model_dir)


# ---- configuration values --------------------------------------------------------------------


@pytest.mark.parametrize("mult", [[4611686018427387904], [1, 2, 2, 2**61 + 1]])
def test_vae_dim_mult_overflow_is_a_format_error(model_dir, mult):
    """v * base_dim wrapped to 0 in int64 and then passed the range check (SIGFPE later)."""
    _edit_json(model_dir / "vae" / "config.json", dim_mult=mult,
               temperal_downsample=[False] * (len(mult) - 1))
    m = edge_server.load_model(model_dir)
    with pytest.raises(_engine.FormatError, match="dim_mult"):
        m.vae_info()


@pytest.mark.parametrize("oc", [-5, 2**31, 2**32 + 16])
def test_transformer_out_channels_out_of_range(model_dir, oc):
    _edit_json(model_dir / "transformer" / "config.json", out_channels=oc)
    m = edge_server.load_model(model_dir)
    with pytest.raises(_engine.FormatError, match="out_channels"):
        m.transformer_info()


@pytest.mark.parametrize("config", [
    [], {"num_train_timesteps": "1000"}, {"shift": "abc"}, {"shift": [1]},
    {"shift_terminal": "x"}, {"base_image_seq_len": 256, "max_image_seq_len": 256},
    {"base_shift": 1e6}, {"use_karras_sigmas": "no"},
], ids=["array", "str-int", "str-shift", "list-shift", "str-terminal", "equal-seq-len",
        "huge-shift", "str-flag"])
def test_scheduler_config_errors_are_format_errors(model_dir, config):
    path = model_dir / "scheduler" / "scheduler_config.json"
    if isinstance(config, dict):
        data = json.loads(path.read_text())
        data.update(config)
        config = data
    path.write_text(json.dumps(config))
    with pytest.raises(_engine.FormatError, match="scheduler"):
        _generate(model_dir)


def test_scheduler_config_unreadable(model_dir):
    path = model_dir / "scheduler" / "scheduler_config.json"
    path.write_text("[" * 100_000)  # deep nesting: RecursionError in json
    with pytest.raises(_engine.FormatError, match="scheduler"):
        _generate(model_dir)
    path.unlink()
    path.mkdir()  # a directory where the file should be
    with pytest.raises(_engine.FormatError, match="scheduler"):
        _generate(model_dir)


@pytest.mark.parametrize("own", [["x"], "x", None, {"default_steps": True}])
def test_model_index_qwen_edge_section_of_any_shape(model_dir, own):
    _edit_json(model_dir / "model_index.json", qwen_edge=own)
    m = edge_server.load_model(model_dir)
    assert m.default_steps in (4, 8)  # the Lightning scheduler config still makes it 4
    assert len(m.generate("x", width=64, height=64, seed=0).images) == 1


@pytest.mark.parametrize("vocab", ["{not json", "[1, 2]", '{"a": "b"}'],
                         ids=["bad-json", "list", "str-id"])
def test_tokenizer_errors_are_format_errors(model_dir, vocab):
    tok = model_dir / "tokenizer"
    (tok / "tokenizer.json").unlink(missing_ok=True)
    (tok / "vocab.json").write_text(vocab)
    with pytest.raises(_engine.FormatError, match="tokenizer"):
        _generate(model_dir)


# ---- files ------------------------------------------------------------------------------------


def test_a_fifo_in_place_of_a_file_does_not_hang(model_dir, tmp_path):
    """open() of a FIFO blocks until a writer comes; the loaders must refuse it at once. Run
    in a child process so that a regression fails on the timeout instead of hanging pytest."""
    cfg = model_dir / "transformer" / "config.json"
    cfg.unlink()
    os.mkfifo(cfg)
    fifo_weights = tmp_path / "w.safetensors"
    os.mkfifo(fifo_weights)
    code = f"""
import edge_server
from edge_server import _engine
for call in (lambda: edge_server.load_model({str(model_dir)!r}).transformer_info(),
             lambda: _engine.Weights({str(fifo_weights)!r})):
    try:
        call()
    except _engine.EngineError as e:
        print(type(e).__name__, e)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)  # not the source tree: the built package
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 2 and all("not a regular file" in ln for ln in lines), lines


@pytest.mark.parametrize("suffix", ["\0garbage", "\0/nonexistent"])
def test_a_nul_in_a_path_is_refused(model_dir, suffix):
    weights = model_dir / "transformer" / "diffusion_pytorch_model.safetensors"
    with pytest.raises(_engine.InvalidArgument, match="NUL"):
        _engine.Weights(str(weights) + suffix)
    with pytest.raises(_engine.InvalidArgument, match="NUL"):
        edge_server.load_model(str(model_dir) + suffix)
    w = _engine.Weights(weights)
    with pytest.raises(_engine.InvalidArgument, match="NUL"):
        w.read(w.names()[0] + "\0x")


def test_weights_read_checks_before_allocating(tmp_path):
    p = tmp_path / "w.safetensors"
    save_file({"ids": np.arange(6, dtype=np.int64), "x": np.ones(3, np.float32)}, str(p))
    w = _engine.Weights(p)
    with pytest.raises(_engine.Unsupported, match="float dtypes only"):
        w.read("ids")
    assert w.read("x").tolist() == [1.0, 1.0, 1.0]


# ---- LoRA -------------------------------------------------------------------------------------


def _lora(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    save_file(tensors, str(path))
    return path


def _lora_pair(module: str, prefix: str = "", value: float = 0.01) -> dict[str, np.ndarray]:
    dim = demo.DEMO_TRANSFORMER["num_attention_heads"] * demo.DEMO_TRANSFORMER[
        "attention_head_dim"]
    return {f"{prefix}{module}.lora_down.weight": np.full((2, dim), value, np.float32),
            f"{prefix}{module}.lora_up.weight": np.full((dim, 2), value, np.float32)}


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), float("-inf")])
def test_lora_non_finite_alpha_is_refused(model_dir, tmp_path, alpha):
    t = _lora_pair("transformer_blocks.0.attn.to_q")
    t["transformer_blocks.0.attn.to_q.alpha"] = np.array(alpha, np.float32)
    m = edge_server.load_model(model_dir, lora=_lora(tmp_path / "l.safetensors", t))
    with pytest.raises(_engine.FormatError, match="non-finite alpha"):
        m.transformer_info()


def test_lora_module_given_twice_is_refused(model_dir, tmp_path):
    t = {**_lora_pair("transformer_blocks.0.attn.to_q", value=0.01),
         **_lora_pair("transformer_blocks.0.attn.to_q", prefix="diffusion_model.", value=0.02)}
    m = edge_server.load_model(model_dir, lora=_lora(tmp_path / "l.safetensors", t))
    with pytest.raises(_engine.FormatError, match="given twice"):
        m.transformer_info()


def test_text_encoder_with_both_key_prefixes_is_refused(model_dir):
    from safetensors.numpy import load_file

    path = model_dir / "text_encoder" / "model.safetensors"
    t = load_file(str(path))
    t.update({k.replace("model.", "model.language_model.", 1): v * 2 for k, v in t.items()
              if k.startswith("model.")})
    save_file(t, str(path))
    m = edge_server.load_model(model_dir)
    with pytest.raises(_engine.FormatError, match="both"):
        m.encode_prompt("x")
