"""VAE decoder parity: the C decoder (cython_core/vae*.c) against diffusers'
AutoencoderKLQwenImage (torch CPU fp32), with the pipeline's latent un-normalisation.

Always (numpy only): the committed golden tensors (tests/golden/vae_cases.safetensors, made by
make_golden_vae.py; the weights are rebuilt from seeds by tests/golden/vae_cases.py) on every
ISA, tiled and untiled; tiling exactness and the memory plan on the real config; errors and
cancellation. When torch + diffusers are installed (CI installs them): live comparisons on
random-weight VAEs that diffusers builds and saves in the real layout (save_pretrained), for
the real default config on small latents, a reduced config and one with attention scales, with
f32 and bf16 weights (diffusers then runs fp32 on the same bf16-rounded weights).
Tolerance (issue 4): max |diff| on the [-1, 1] output <= 1e-4 (f32), <= 5e-3 (bf16)."""

from __future__ import annotations

import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import edge_server
from edge_server import _engine
from edge_server._vae_mixin import latents_to_uint8

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
from vae_cases import (  # noqa: E402
    ATTN,
    GOLDEN_CASES,
    REDUCED,
    diffusers_decode,
    random_decoder,
    weights_digest,
    write_random_vae,
)

TOL = {"f32": 1e-4, "bf16": 5e-3}
REAL: dict = {}  # the class defaults = Qwen/Qwen-Image vae/config.json


def maxdiff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def latents(z: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((z, h, w)).astype(np.float32)


# ---- golden tensors (no torch) --------------------------------------------------------------


@pytest.fixture(scope="module")
def golden():
    from safetensors import safe_open

    with safe_open(str(GOLDEN / "vae_cases.safetensors"), "np") as f:
        meta = f.metadata()
        data = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    assert meta["format"] == "qwen-edge-golden-vae" and meta["version"] == "1", meta
    assert meta["cases"].split(",") == list(GOLDEN_CASES), meta
    return meta, data


@pytest.fixture(scope="module")
def golden_folders(tmp_path_factory, golden):
    meta, _ = golden
    out = {}
    for name, (cfg, dtype, seed, _, _) in GOLDEN_CASES.items():
        digest = weights_digest(random_decoder(cfg, seed, dtype))
        assert digest == meta[f"{name}.weights_sha256"], (
            f"{name}: numpy rebuilt different weights than the golden file was made from; "
            "regenerate it with tests/golden/make_golden_vae.py"
        )
        out[name] = write_random_vae(tmp_path_factory.mktemp(name), cfg, dtype=dtype, seed=seed)
    return out


@pytest.mark.parametrize("case", list(GOLDEN_CASES))
def test_golden_every_isa(isa, case, golden, golden_folders):
    _, data = golden
    _, dtype, _, (h, w), _ = GOLDEN_CASES[case]
    model = edge_server.load_model(golden_folders[case], isa=isa, threads=2)
    info = model.vae_info()
    assert info["weight_dtype"] == dtype and info["z_dim"] == 16
    lat, ref = data[f"{case}.latents"], data[f"{case}.ref"]
    s = info["scale"]
    out = model.vae_decode(lat)
    assert out.shape == (3, s * h, s * w) and out.dtype == np.float32
    assert maxdiff(out, ref) <= TOL[dtype], f"{case} {isa}: {maxdiff(out, ref):.3g}"
    assert np.abs(out).max() <= 1.0
    # forced small tiles (several per axis, windows cut inside the image) give the same image
    tiled = model.vae_decode(lat, tiling=True, tile=2 * info["halo"] + 2)
    assert model.vae_plan(h, w, tiling=True, tile=2 * info["halo"] + 2)["n_tiles"] != (1, 1)
    assert maxdiff(tiled, out) <= 1e-6


# ---- tiling, memory (real config, weights written with numpy) -------------------------------


@pytest.fixture(scope="module")
def real_np(tmp_path_factory):
    return edge_server.load_model(
        write_random_vae(tmp_path_factory.mktemp("real"), REAL, seed=5), threads=2
    )


def test_real_config_info(real_np):
    info = real_np.vae_info()
    assert info["scale"] == 8 and info["dim_mult"] == [1, 2, 4, 4] and info["n_res_blocks"] == 2
    assert info["halo"] == 13
    # only the last temporal tap of each 3x3x3 conv is kept (~25.8M parameters; the upsamplers'
    # convs as 4 phases of 2x2 taps), packed in f32
    assert 95e6 < info["weight_bytes"] < 120e6


def test_memory_plan_1024(real_np):
    gb = 1.5e9
    p = real_np.vae_plan(128, 128)  # 1024 x 1024
    assert p["activation_bytes"] <= gb
    t = real_np.vae_plan(128, 128, tiling=True)
    assert t["tiled"] and t["n_tiles"] == (2, 2)
    assert t["activation_bytes"] < p["activation_bytes"] / 2
    small = real_np.vae_plan(128, 128, memory_budget=300_000_000)
    assert small["tiled"] and small["activation_bytes"] <= 300_000_000
    assert small["overlap"] == 2 * 13
    big = real_np.vae_plan(166, 166)  # 1328 x 1328 does not fit untiled: tiled automatically
    assert big["tiled"] and big["activation_bytes"] <= gb
    assert not real_np.vae_plan(166, 166, tiling=False)["tiled"]
    with pytest.raises(_engine.OutOfMemory, match="memory_budget"):
        real_np.vae_plan(128, 128, memory_budget=10_000_000)
    with pytest.raises(_engine.InvalidArgument, match="exceed the overlap"):
        real_np.vae_plan(128, 128, tiling=True, tile=20)


def test_tiled_matches_untiled_real_config(real_np):
    """Issue 4: a tiled decode differs from the untiled one by at most 2/255 after conversion to
    8 bits. Tiles here are exact (halo = receptive field), so the float images agree too. One
    long axis per decode keeps it cheap while cutting windows inside the image."""
    for h, w in ((40, 4), (4, 40)):
        lat = latents(16, h, w, seed=3)
        full = real_np.vae_decode(lat, tiling=False)
        opts = {"tiling": True, "tile": 34, "overlap": 27}
        assert max(real_np.vae_plan(h, w, **opts)["n_tiles"]) == 6
        tiled = real_np.vae_decode(lat, **opts)
        assert maxdiff(tiled, full) <= 1e-6
        d8 = np.abs(latents_to_uint8(tiled).astype(int) - latents_to_uint8(full).astype(int))
        assert d8.max() <= 2


def test_auto_tiling_follows_budget(tmp_path):
    m = edge_server.load_model(write_random_vae(tmp_path, REDUCED, seed=4), threads=2)
    lat = latents(16, 33, 29, seed=4)
    ref = m.vae_decode(lat, tiling=False)
    untiled = m.vae_plan(33, 29)["activation_bytes"]
    smallest = m.vae_plan(33, 29, tiling=True, tile=2 * m.vae_info()["halo"] + 1)
    budget = (untiled + smallest["activation_bytes"]) // 2
    plan = m.vae_plan(33, 29, memory_budget=budget)
    assert plan["tiled"] and plan["activation_bytes"] <= budget and plan["n_tiles"] != (1, 1)
    assert maxdiff(m.vae_decode(lat, memory_budget=budget), ref) <= 1e-6
    # a tile size alone asks for tiling; tiling=False wins over the budget
    assert m.vae_plan(33, 29, tile=28)["tiled"] and m.vae_plan(33, 29, tile=28)["n_tiles"] == (9, 8)
    assert not m.vae_plan(33, 29, tiling=False, memory_budget=budget)["tiled"]


def test_decode_image_rounding(tmp_path):
    m = edge_server.load_model(write_random_vae(tmp_path, REDUCED, seed=6))
    lat = latents(16, 6, 10, seed=6)
    img = m.vae_decode_image(lat)
    assert img.mode == "RGB" and img.size == (40, 24)
    x = m.vae_decode(lat)
    want = np.clip(x * np.float32(0.5) + np.float32(0.5), 0, 1)
    want = (want.transpose(1, 2, 0) * np.float32(255)).round().astype(np.uint8)
    assert np.array_equal(np.asarray(img), want)
    # rounding edge cases: 0.5/255 steps, the ends, out of range
    v = np.array([-1.5, -1.0, -0.999, 0.0, 1 / 255, 0.999, 1.0, 2.0], np.float32)
    for fn in (latents_to_uint8, _engine.to_rgb8):
        got = fn(np.stack([v, v, v])[:, None, :])[0, :, 0]
        assert got.tolist() == [0, 0, 0, 128, 128, 255, 255, 255], fn


def test_to_rgb8_is_the_reference_formula_bit_for_bit():
    # the C conversion every decode uses against the numpy reference (diffusers' formula):
    # random float32 bit patterns (every exponent, inf, NaN), and the values around every
    # tie v * 255 = k + 0.5 where rounding half to even (not half up) decides
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 2**32, 3 * 300 * 700, dtype=np.uint32).view(np.float32)
    x = bits.reshape(3, 300, 700)
    nan = np.isnan(x).transpose(1, 2, 0)
    with np.errstate(invalid="ignore"):
        want = latents_to_uint8(x)
    got = _engine.to_rgb8(x)
    assert nan.any() and np.array_equal(got[~nan], want[~nan])
    assert (got[nan] == 0).all()
    t = ((np.arange(255, dtype=np.float32) + np.float32(0.5)) / np.float32(255)) * 2 - 1
    near = [t]
    for _ in range(3):
        near += [np.nextafter(near[-1], np.float32(2)), np.nextafter(near[0], np.float32(-2))]
    ties = np.concatenate(near).astype(np.float32)
    for shape in [(3, 1, ties.size), (1, ties.size, 1), (4, 5, ties.size // 5)]:
        x = np.resize(ties, shape).astype(np.float32)
        assert np.array_equal(_engine.to_rgb8(x), latents_to_uint8(x)), shape
        assert _engine.to_rgb8(x).shape == (shape[1], shape[2], shape[0])
    big = (rng.standard_normal((3, 1024, 1024)) * 0.6).astype(np.float32)
    assert np.array_equal(_engine.to_rgb8(big, _engine.get_runtime(threads=2)),
                          latents_to_uint8(big))
    for bad in (np.zeros((5, 2, 2), np.float32), np.zeros((3, 2), np.float32),
                np.zeros((3, 2, 2), np.float64), np.zeros((3, 0, 2), np.float32)):
        with pytest.raises(_engine.InvalidArgument):
            _engine.to_rgb8(bad)


# ---- errors, options, cancellation -------------------------------------------------------


def test_missing_vae_fails_only_when_used(tmp_path):
    (tmp_path / "transformer").mkdir()
    m = edge_server.load_model(tmp_path)
    assert not m.has("vae")
    with pytest.raises(_engine.EngineIOError, match="has no vae/ folder"):
        m.vae_decode(latents(16, 4, 4))
    with pytest.raises(_engine.EngineIOError, match="has no vae/ folder"):
        m.vae_decode_image(latents(16, 4, 4))


def test_input_validation(tmp_path):
    m = edge_server.load_model(write_random_vae(tmp_path, REDUCED, seed=7))
    good = latents(16, 4, 5)
    with pytest.raises(_engine.InvalidArgument, match="z_dim=16"):
        m.vae_decode(latents(4, 4, 5))
    with pytest.raises(_engine.InvalidArgument, match="3 dimensions"):
        m.vae_decode(good[None])
    with pytest.raises(_engine.InvalidArgument, match="float32"):
        m.vae_decode(good.astype(np.float64))
    with pytest.raises(_engine.InvalidArgument, match="C-contiguous"):
        m.vae_decode(np.asfortranarray(good))
    with pytest.raises(_engine.InvalidArgument, match="empty"):
        m.vae_decode(np.zeros((16, 0, 4), np.float32))
    with pytest.raises(_engine.InvalidArgument, match="tiling"):
        m.vae_decode(good, tiling="always")
    with pytest.raises(_engine.InvalidArgument, match="tile"):
        m.vae_decode(good, tile=-3)
    with pytest.raises(_engine.InvalidArgument, match="memory_budget"):
        m.vae_decode(good, memory_budget=0)
    assert m.vae_decode(good).shape == (3, 16, 20)


def _broken(tmp_path, cfg=REDUCED, edit=None, drop=None, reshape=None):
    import json

    from vae_cases import full_config, save_safetensors

    vdir = tmp_path / "vae"
    vdir.mkdir(parents=True)
    t = random_decoder(cfg, 0)
    if drop:
        del t[drop]
    if reshape:
        t[reshape] = t[reshape][:-1]
    save_safetensors(t, vdir / "diffusion_pytorch_model.safetensors")
    c = full_config(cfg)
    if edit:
        c.update(edit)
    (vdir / "config.json").write_text(json.dumps(c))
    return edge_server.load_model(tmp_path)


def test_bad_config_and_weights(tmp_path):
    lat = latents(16, 4, 4)
    m = _broken(tmp_path / "a", edit={"temperal_downsample": [False, True, True]})
    with pytest.raises(_engine.FormatError, match="temperal_downsample"):
        m.vae_decode(lat)
    m = _broken(tmp_path / "b", drop="decoder.up_blocks.1.resnets.2.conv2.weight")
    with pytest.raises(_engine.FormatError, match=r"up_blocks\.1\.resnets\.2\.conv2\.weight"):
        m.vae_decode(lat)
    m = _broken(tmp_path / "c", reshape="decoder.conv_in.bias")
    with pytest.raises(_engine.FormatError, match=r"decoder\.conv_in\.bias"):
        m.vae_decode(lat)
    m = _broken(tmp_path / "d", edit={"_class_name": "AutoencoderKLWan"})
    with pytest.raises(_engine.Unsupported, match="AutoencoderKLWan"):
        m.vae_decode(lat)
    m = _broken(tmp_path / "e", edit={"num_res_blocks": 1})  # file has 3 resnets per block
    with pytest.raises(_engine.FormatError, match="more decoder blocks"):
        m.vae_decode(lat)
    m = _broken(tmp_path / "f", edit={"latents_std": [1.0] * 15})
    with pytest.raises(_engine.FormatError, match="latents_std has 15 values"):
        m.vae_decode(lat)


def test_cancel(tmp_path):
    m = edge_server.load_model(write_random_vae(tmp_path, REDUCED, seed=8), threads=2)
    lat = latents(16, 48, 48, seed=8)
    tok = _engine.CancelToken()
    tok.cancel()
    with pytest.raises(_engine.Cancelled):
        m.vae_decode(lat, cancel=tok)
    # cancel from another thread during a long tiled decode: stops within one stage
    tok = _engine.CancelToken()
    opts = {"tiling": True, "tile": 2 * m.vae_info()["halo"] + 2}
    assert m.vae_plan(48, 48, **opts)["n_tiles"][0] >= 10
    fired = []

    def later():
        time.sleep(0.3)
        fired.append(time.perf_counter())
        tok.cancel()

    th = threading.Thread(target=later)
    th.start()
    with pytest.raises(_engine.Cancelled, match="cancelled"):
        m.vae_decode(lat, cancel=tok, **opts)
    done = time.perf_counter()
    th.join()
    assert fired and done - fired[0] < 1.0
    # the model still works afterwards
    assert m.vae_decode(latents(16, 4, 4)).shape == (3, 16, 16)


def test_gil_released_during_decode(tmp_path):
    m = edge_server.load_model(write_random_vae(tmp_path, REDUCED, seed=9), threads=1)
    lat = latents(16, 40, 40)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    th = threading.Thread(target=ticker)
    th.start()
    t0 = time.perf_counter()
    m.vae_decode(lat)
    dt = time.perf_counter() - t0
    stop.set()
    th.join()
    assert len(ticks) > 0.2 * dt / 0.001


# ---- live comparison against diffusers ---------------------------------------------------

LIVE = {  # name -> (config, latent sizes)
    "real": (REAL, [(8, 8), (12, 20)]),
    "reduced": (REDUCED, [(8, 12), (13, 7)]),
    "attn": (ATTN, [(9, 11), (5, 16)]),
}
_live_cache: dict = {}


def live_vae(tmp_path_factory, name: str, wdt: str):
    """(diffusers fp32 model with the saved weights, engine model) for a LIVE config. The
    diffusers model is built with its own random init (gammas and biases randomised too) and
    saved with save_pretrained: the real on-disk layout, encoder included."""
    key = (name, wdt)
    if key in _live_cache:
        return _live_cache[key]
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from vae_cases import diffusers_vae

    torch.manual_seed(zlib.crc32(f"{name}/{wdt}".encode()))
    vae = diffusers_vae(LIVE[name][0])
    with torch.no_grad():
        for pname, p in vae.named_parameters():
            if pname.endswith("gamma"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif pname.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
            if wdt == "bf16":
                p.copy_(p.to(torch.bfloat16).float())
    folder = tmp_path_factory.mktemp(f"live_{name}_{wdt}")
    if wdt == "bf16":
        vae.to(torch.bfloat16).save_pretrained(folder / "vae")
        vae.float()
    else:
        vae.save_pretrained(folder / "vae")
    _live_cache.clear()  # keep at most one model (the real config is 500 MB in fp32)
    _live_cache[key] = (vae, edge_server.load_model(folder, threads=2))
    return _live_cache[key]


@pytest.mark.parametrize("wdt", ["f32", "bf16"])
@pytest.mark.parametrize("name", list(LIVE))
def test_live_vs_diffusers(tmp_path_factory, name, wdt):
    vae, m = live_vae(tmp_path_factory, name, wdt)
    assert m.vae_info()["weight_dtype"] == wdt
    for i, (h, w) in enumerate(LIVE[name][1]):
        lat = latents(16, h, w, seed=20 + i)
        ref = diffusers_decode(vae, lat)
        out = m.vae_decode(lat)
        assert maxdiff(out, ref) <= TOL[wdt], f"{name} {wdt} {h}x{w}: {maxdiff(out, ref):.3g}"


def test_live_tiled_vs_diffusers(tmp_path_factory):
    vae, m = live_vae(tmp_path_factory, "reduced", "f32")
    lat = latents(16, 40, 32, seed=30)
    ref = diffusers_decode(vae, lat)
    opts = {"tiling": True, "tile": 2 * m.vae_info()["halo"] + 6}
    assert m.vae_plan(40, 32, **opts)["n_tiles"] == (7, 6)
    out = m.vae_decode(lat, **opts)
    assert maxdiff(out, ref) <= TOL["f32"]
    d8 = np.abs(latents_to_uint8(out).astype(int) - latents_to_uint8(ref).astype(int))
    assert d8.max() <= 1


def test_live_image_matches_diffusers_postprocess(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from diffusers.image_processor import VaeImageProcessor

    vae, m = live_vae(tmp_path_factory, "reduced", "f32")
    lat = latents(16, 10, 14, seed=31)
    ref = diffusers_decode(vae, lat)
    pil = VaeImageProcessor(vae_scale_factor=4).postprocess(torch.from_numpy(ref)[None], "pil")[0]
    assert np.array_equal(latents_to_uint8(ref), np.asarray(pil))  # same rounding rule
    assert np.array_equal(_engine.to_rgb8(ref), np.asarray(pil))  # what decodes use
    ours = np.asarray(m.vae_decode_image(lat)).astype(int)
    assert np.abs(ours - np.asarray(pil).astype(int)).max() <= 1
