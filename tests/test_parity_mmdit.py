"""MMDiT parity: the C transformer against diffusers' QwenImageTransformer2DModel (torch CPU
fp32). Always: committed golden tensors (tests/golden, made by make_golden_mmdit.py). When
torch + diffusers are installed (CI installs them): live comparisons on freshly built
random-weight models saved in the real layout. Tolerance (issue 3): max|diff| / max|ref|
<= 1e-4 with f32 weights, <= 2e-3 with bf16 weights (diffusers runs fp32 on the same
bf16-rounded weights)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import rel_err
from mmdit_util import TINY, write_random_mmdit
from safetensors import safe_open

import edge_server
from edge_server import _engine

GOLDEN = Path(__file__).parent / "golden"
TOL = {"f32": 1e-4, "bf16": 2e-3}


def golden_cases():
    with safe_open(str(GOLDEN / "mmdit_cases.safetensors"), "np") as f:
        meta = f.metadata()
        assert meta["format"] == "qwen-edge-golden-mmdit" and meta["version"] == "1", meta
        data = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    return [
        (name, {k.split(".", 1)[1]: v for k, v in data.items() if k.startswith(name + ".")})
        for name in meta["cases"].split(",")
    ]


@pytest.mark.parametrize("wdt", ["f32", "bf16"])
def test_golden_cases_every_isa(isa, wdt):
    folder = GOLDEN / ("mmdit_tiny" if wdt == "f32" else "mmdit_tiny_bf16")
    model = edge_server.load_model(folder, isa=isa, threads=2)
    assert model.transformer_info()["weight_dtype"] == wdt
    for name, c in golden_cases():
        hpx, wpx, sigma = (float(v) for v in c["params"])
        out = model.transformer_forward(
            c["latents"], c["txt"], sigma, int(hpx), int(wpx), prompt_mask=c.get("mask")
        )
        err = rel_err(out, c[f"ref_{wdt}"])
        assert err <= TOL[wdt], f"{name} {isa} {wdt}: {err:.3g}"


# ---- live comparisons against diffusers ---------------------------------------------------

LIVE_CONFIGS = {
    # diffusers' pipeline test config (tests/pipelines/qwenimage), 2 layers
    "diffusers_pipeline_test": {**TINY, "num_layers": 2},
    # diffusers' model test config (4 heads)
    "diffusers_model_test": {**TINY, "num_layers": 2, "num_attention_heads": 4},
    # real in/out widths, 3 layers, non-default RoPE split
    "wide_3layers": {
        "patch_size": 2,
        "in_channels": 64,
        "out_channels": 16,
        "num_layers": 3,
        "attention_head_dim": 32,
        "num_attention_heads": 4,
        "joint_attention_dim": 40,
        "axes_dims_rope": (4, 14, 14),
    },
}


def run_diffusers(folder: Path, lat, txt, mask, sigma, h, w):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    m = diffusers.QwenImageTransformer2DModel.from_pretrained(
        folder / "transformer", torch_dtype=torch.float32
    ).eval()
    with torch.no_grad():
        out = m(
            hidden_states=torch.from_numpy(lat)[None],
            encoder_hidden_states=torch.from_numpy(txt)[None],
            encoder_hidden_states_mask=None
            if mask is None
            else torch.from_numpy(mask)[None].long(),
            timestep=torch.tensor([sigma], dtype=torch.float32),
            img_shapes=[[(1, h, w)]],
            return_dict=False,
        )[0]
    return out[0].numpy()


@pytest.mark.parametrize("config", sorted(LIVE_CONFIGS))
@pytest.mark.parametrize("wdt", ["f32", "bf16"])
@pytest.mark.parametrize(
    "hpx,wpx,n_txt,pad,sigma",
    [(48, 80, 1, 0, 0.63), (64, 96, 77, 0, 1.0), (80, 32, 20, 6, 0.05)],
)
def test_live_vs_diffusers(tmp_path, config, wdt, hpx, wpx, n_txt, pad, sigma):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    cfg = LIVE_CONFIGS[config]
    folder = write_random_mmdit(tmp_path / "m", cfg, dtype=wdt, seed=hash(config) % 1000)
    rng = np.random.default_rng(n_txt)
    h, w = hpx // 16, wpx // 16
    lat = rng.standard_normal((h * w, cfg["in_channels"])).astype(np.float32)
    txt = rng.standard_normal((n_txt, cfg["joint_attention_dim"])).astype(np.float32)
    mask = None
    if pad:
        mask = np.ones(n_txt, np.uint8)
        mask[-pad:] = 0
    ref = run_diffusers(folder, lat, txt, mask, sigma, h, w)
    out = edge_server.load_model(folder).transformer_forward(
        lat, txt, sigma, hpx, wpx, prompt_mask=mask
    )
    err = rel_err(out, ref)
    assert err <= TOL[wdt], f"{config} {wdt} {hpx}x{wpx} txt={n_txt}: {err:.3g}"


def test_padded_text_changes_nothing_but_masked_keys(tmp_path):
    """Masking the padded text keys equals running without the padding tokens' influence on
    attention: image outputs match a run where padded rows are absent."""
    folder = write_random_mmdit(tmp_path / "m", TINY, seed=3)
    model = edge_server.load_model(folder)
    rng = np.random.default_rng(0)
    lat = rng.standard_normal((12, 16)).astype(np.float32)
    txt = rng.standard_normal((9, 16)).astype(np.float32)
    mask = np.array([1] * 6 + [0] * 3, np.uint8)
    full = model.transformer_forward(lat, txt, 0.5, 48, 64, prompt_mask=mask)
    unmasked = model.transformer_forward(lat, txt, 0.5, 48, 64)
    assert rel_err(full, unmasked) > 1e-3  # the mask matters


def test_kept_workspace_gives_the_same_outputs(tmp_path):
    """Forwards reuse the runtime's activation memory (grown on demand, freed by trim): stale
    contents from an earlier, larger or smaller forward must never leak into a result."""
    folder = write_random_mmdit(tmp_path / "m", TINY, seed=5)
    rng = np.random.default_rng(1)
    cases = [(48, 64, 5), (96, 96, 9), (48, 64, 5), (32, 32, 2)]
    inputs = [(rng.standard_normal(((h // 16) * (w // 16), 16)).astype(np.float32),
               rng.standard_normal((n, 16)).astype(np.float32), h, w) for h, w, n in cases]
    fresh = [edge_server.load_model(folder).transformer_forward(lat, txt, 0.3, h, w)
             for lat, txt, h, w in inputs]
    model = edge_server.load_model(folder)
    for _rep in range(2):
        for (lat, txt, h, w), ref in zip(inputs, fresh, strict=True):
            np.testing.assert_array_equal(model.transformer_forward(lat, txt, 0.3, h, w), ref)
        model.runtime.trim()  # and again from a freshly allocated workspace


# ---- errors, missing components, cancellation ---------------------------------------------


def test_missing_transformer_fails_only_when_used(tmp_path):
    (tmp_path / "vae").mkdir()
    model = edge_server.load_model(tmp_path)
    assert not model.has("transformer") and model.has("vae")
    with pytest.raises(_engine.EngineIOError, match="no transformer/ folder"):
        model.transformer_forward(
            np.zeros((1, 16), np.float32), np.zeros((1, 16), np.float32), 0.5, 16, 16
        )


def test_missing_folder(tmp_path):
    with pytest.raises(_engine.EngineIOError, match="does not exist"):
        edge_server.load_model(tmp_path / "nope")


def test_bad_config_and_weights(tmp_path):
    folder = write_random_mmdit(tmp_path / "a", {**TINY, "axes_dims_rope": (8, 4, 2)})
    with pytest.raises(_engine.FormatError, match="must sum to attention_head_dim"):
        edge_server.load_model(folder).transformer_info()
    folder = write_random_mmdit(tmp_path / "b", TINY)
    cfgp = folder / "transformer" / "config.json"
    cfgp.write_text(
        cfgp.read_text().replace('"num_attention_heads": 3', '"num_attention_heads": 5')
    )
    with pytest.raises(
        _engine.FormatError, match=r"img_in\.weight.: expected shape \[80, 16\], got \[48, 16\]"
    ):
        edge_server.load_model(folder).transformer_info()
    cfgp.write_text(
        cfgp.read_text()
        .replace('"num_attention_heads": 5', '"num_attention_heads": 3')
        .replace('"num_layers": 3', '"num_layers": 2')
    )
    with pytest.raises(_engine.FormatError, match="more transformer blocks"):
        edge_server.load_model(folder).transformer_info()
    cfgp.write_text("{not json")
    with pytest.raises(_engine.FormatError, match=r"config\.json"):
        edge_server.load_model(folder).transformer_info()


def test_input_validation(tmp_path):
    model = edge_server.load_model(write_random_mmdit(tmp_path / "m", TINY))
    lat = np.zeros((15, 16), np.float32)
    txt = np.zeros((4, 16), np.float32)
    with pytest.raises(_engine.InvalidArgument, match="multiples of 16"):
        model.transformer_forward(lat, txt, 0.5, 50, 80)
    with pytest.raises(_engine.InvalidArgument, match="15 tokens"):
        model.transformer_forward(lat, txt, 0.5, 64, 64)
    with pytest.raises(_engine.InvalidArgument, match="sigma"):
        model.transformer_forward(lat, txt, 1.5, 48, 80)
    with pytest.raises(_engine.InvalidArgument, match=r"\(N_img, 16\)"):
        model.transformer_forward(np.zeros((15, 8), np.float32), txt, 0.5, 48, 80)
    with pytest.raises(_engine.InvalidArgument, match="prompt_mask has 3"):
        model.transformer_forward(lat, txt, 0.5, 48, 80, prompt_mask=np.ones(3, bool))


def test_cancel_within_one_block(tmp_path):
    cfg = {
        **TINY,
        "num_layers": 24,
        "attention_head_dim": 64,
        "num_attention_heads": 4,
        "in_channels": 64,
        "out_channels": 16,
        "axes_dims_rope": (16, 24, 24),
    }
    model = edge_server.load_model(write_random_mmdit(tmp_path / "m", cfg, scale=0.02), threads=2)
    rng = np.random.default_rng(0)
    lat = rng.standard_normal((32 * 32, 64)).astype(np.float32)
    txt = rng.standard_normal((16, 16)).astype(np.float32)
    t0 = time.perf_counter()
    model.transformer_forward(lat, txt, 0.5, 512, 512)
    full = time.perf_counter() - t0
    per_block = full / cfg["num_layers"]

    tok = _engine.CancelToken()
    tok.cancel()
    with pytest.raises(_engine.Cancelled, match="before block 0"):
        model.transformer_forward(lat, txt, 0.5, 512, 512, cancel=tok)

    tok = _engine.CancelToken()
    fired = []

    def cancel_later():
        time.sleep(full * 0.3)
        fired.append(time.perf_counter())
        tok.cancel()

    th = threading.Thread(target=cancel_later)
    th.start()
    with pytest.raises(_engine.Cancelled):
        model.transformer_forward(lat, txt, 0.5, 512, 512, cancel=tok)
    done = time.perf_counter()
    th.join()
    # returns within about one block of the cancel (generous margin for a loaded machine)
    assert done - fired[0] < 3 * per_block + 0.05, (done - fired[0], per_block)
