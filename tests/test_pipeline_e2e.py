"""End-to-end parity with diffusers' QwenImagePipeline (torch CPU fp32): a tiny random model
(every component saved in the real layout), the Lightning scheduler config, 4 and 8 steps,
the same injected latents and prompt. Every step's latents within 1e-4 relative; the final
8-bit image within 1/255 on >= 99.9% of pixels and 2/255 everywhere. Also the generate() API
on the demo model: seeds, determinism, validation, cancellation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import rel_err

import edge_server
from edge_server import _engine, demo
from edge_server.pipeline import pack_latents, unpack_latents


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    """A diffusers QwenImagePipeline with tiny random components, saved in the real layout."""
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("tiny") / "model"
    torch.manual_seed(0)
    tr = diffusers.QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=16,
        axes_dims_rope=(8, 4, 4),
    ).eval()
    # 8x spatial factor like the real VAE (the engine's pixel sizes assume it)
    vae = diffusers.AutoencoderKLQwenImage(
        base_dim=16,
        z_dim=4,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.1, -0.2, 0.3, 0.0],
        latents_std=[1.5, 0.8, 1.2, 1.0],
    ).eval()
    te_cfg = transformers.Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "vocab_size": demo.DEMO_VOCAB,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default"},
            "rope_theta": 1000000.0,
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": 16,
        },
        vocab_size=demo.DEMO_VOCAB,
    )
    te = transformers.Qwen2_5_VLForConditionalGeneration(te_cfg).eval()
    sched = diffusers.FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256,
        base_shift=math.log(3),
        max_image_seq_len=8192,
        max_shift=math.log(3),
        num_train_timesteps=1000,
        shift=1.0,
        shift_terminal=None,
        time_shift_type="exponential",
        use_dynamic_shifting=True,
    )
    demo.write_tokenizer(root / "tokenizer")
    tok = transformers.Qwen2Tokenizer.from_pretrained(str(root / "tokenizer"))
    tr.save_pretrained(root / "transformer")
    vae.save_pretrained(root / "vae")
    te.save_pretrained(root / "text_encoder")
    sched.save_pretrained(root / "scheduler")
    pipe = diffusers.QwenImagePipeline(
        transformer=tr, vae=vae, text_encoder=te, tokenizer=tok, scheduler=sched
    )
    pipe.save_pretrained(root)  # model_index.json (and rewrites the same components)
    return pipe, root


@pytest.mark.parametrize("steps", [4, 8])
def test_pipeline_matches_diffusers(tiny_pipeline, steps):
    torch = pytest.importorskip("torch")
    pipe, root = tiny_pipeline
    h = w = 64
    prompt = "a red cube on a wooden table"
    noise = _engine.randn(3, (4, h // 8, w // 8))
    packed = pack_latents(noise)
    ref_latents = []

    def grab(p, i, t, kw):
        ref_latents.append(kw["latents"][0].numpy().copy())
        return {}

    with torch.no_grad():
        ref = pipe(
            prompt=prompt,
            height=h,
            width=w,
            num_inference_steps=steps,
            true_cfg_scale=1.0,
            latents=torch.from_numpy(packed)[None],
            output_type="pil",
            callback_on_step_end=grab,
            generator=torch.Generator().manual_seed(0),
        ).images[0]
    model = edge_server.load_model(root)
    x0s = []
    res = model.generate(
        prompt, width=w, height=h, steps=steps, latents=packed, on_step=lambda s: x0s.append(s.x0)
    )
    assert res.steps == steps and len(x0s) == steps
    # rebuild our per-step latents from x0: x_{i+1} = x_i + (s_{i+1} - s_i) (x_i - x0_i) / s_i
    x = packed.astype(np.float64)
    sig = res.sigmas
    for i in range(steps):
        x0p = pack_latents(x0s[i]).astype(np.float64)
        v = (x - x0p) / sig[i]
        x = x + (sig[i + 1] - sig[i]) * v
        assert rel_err(x, ref_latents[i]) < 1e-4, f"step {i + 1}"
    assert rel_err(res.latents[0], ref_latents[-1]) < 1e-4
    a = np.asarray(res.images[0], dtype=np.int16)
    b = np.asarray(ref, dtype=np.int16)
    diff = np.abs(a - b)
    assert a.shape == b.shape == (h, w, 3)
    assert (diff <= 1).mean() >= 0.999 and diff.max() <= 2, (diff.max(), (diff <= 1).mean())


# ---- the generate() API on the demo model -------------------------------------------------


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    return edge_server.load_model(demo.write_demo_model(tmp_path_factory.mktemp("d") / "demo"))


def test_generate_seeds_and_determinism(demo_model):
    r1 = demo_model.generate("hello", width=64, height=96, seed=7, num_images=2)
    r2 = demo_model.generate("hello", width=64, height=96, seed=8)
    assert r1.seeds == [7, 8] and r1.steps == 4 and len(r1.sigmas) == 5
    assert r1.images[0].size == (64, 96)
    assert np.array_equal(np.asarray(r1.images[1]), np.asarray(r2.images[0]))
    assert not np.array_equal(np.asarray(r1.images[0]), np.asarray(r1.images[1]))
    for img, px in zip(r1.images, r1.pixels, strict=True):  # the arrays encoders use
        assert px.dtype == np.uint8 and np.array_equal(np.asarray(img), px)
    r3 = demo_model.generate("hello", width=64, height=64)
    assert isinstance(r3.seeds[0], int)  # a random seed is drawn and reported
    t = r1.timings
    assert len(t.steps_s) == 8 and t.total_s >= t.vae_decode_s > 0


def test_generate_same_seed_same_image_on_every_isa(tmp_path):
    root = demo.write_demo_model(tmp_path / "d")
    imgs = [
        np.asarray(
            edge_server.load_model(root, isa=isa, threads=t)
            .generate("x", width=64, height=64, seed=5)
            .images[0]
        )
        for isa in _engine.supported_isas()
        for t in (1, 2)
    ]
    for im in imgs[1:]:
        assert np.abs(im.astype(int) - imgs[0].astype(int)).max() <= 1


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"width": 100}, "width=100: must be a multiple of 16"),
        ({"height": 4096}, r"height=4096: must be a multiple of 16 in \[64, 2048\]"),
        ({"steps": 0}, "steps=0"),
        ({"num_images": 99}, "num_images=99"),
        ({"true_cfg_scale": float("nan")}, "true_cfg_scale"),
        ({"seed": -1}, "seed=-1"),
        ({"latents": np.zeros((3, 3), np.float32)}, "latents must be"),
    ],
)
def test_generate_validation(demo_model, kw, match):
    args = {"width": 64, "height": 64, **kw}
    with pytest.raises(_engine.InvalidArgument, match=match):
        demo_model.generate("p", **args)
    with pytest.raises(_engine.InvalidArgument, match="prompt"):
        demo_model.generate("  ", width=64, height=64)


def test_generate_stops_from_callback_and_token(demo_model):
    with pytest.raises(_engine.Cancelled):
        demo_model.generate("p", width=64, height=64, on_step=lambda s: s.step == 2)
    tok = _engine.CancelToken()
    tok.cancel()
    with pytest.raises(_engine.Cancelled):
        demo_model.generate("p", width=64, height=64, cancel=tok)


def test_unpack_inverts_pack():
    x = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    assert np.array_equal(unpack_latents(pack_latents(x), 4, 6, 8), x)


def test_edge_memory_mode_generates_the_same_image(tmp_path):
    root = demo.write_demo_model(tmp_path / "d")
    a = edge_server.load_model(root).generate("edge", width=64, height=64, seed=3)
    m = edge_server.load_model(root, edge_memory=True, prompt_cache_size=2)
    b = m.generate("edge", width=64, height=64, seed=3)
    c = m.generate("edge 2", width=64, height=64, seed=3)  # encoder runs again after the DiT
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert c.images[0].size == (64, 64) and m.edge_memory
    m._model.transformer_release()  # idempotent, also when already released


def test_components_share_one_kept_workspace(tmp_path):
    """The text encoder, the transformer and the VAE (and attention's packing) run in the
    runtime's kept workspaces, grown on demand: no stale contents from an earlier, larger or
    smaller op may change a result, with or without trims in between."""
    root = demo.write_demo_model(tmp_path / "d")
    m = edge_server.load_model(root, prompt_cache_size=0)  # the encoder runs every time
    jobs = [("a", 64, 96, 1), ("a longer prompt about a red cat", 128, 64, 2), ("b", 64, 64, 3)]

    def run(job: tuple[str, int, int, int]) -> np.ndarray:
        prompt, w, h, seed = job
        return np.asarray(m.generate(prompt, width=w, height=h, seed=seed).pixels[0])

    ref = []
    for job in jobs:
        m.runtime.trim()  # every reference from freshly allocated workspaces
        ref.append(run(job))
    for order in ([2, 1, 0], [1, 0, 2, 1]):
        for i in order:
            assert np.array_equal(run(jobs[i]), ref[i]), (order, i)
