"""Text encoder (cython_core/textenc.c) against transformers' Qwen2_5_VLForConditionalGeneration
(torch CPU, fp32) on random-weight encoders saved in the real layouts, and encode_prompt against
diffusers' QwenImagePipeline.encode_prompt. Also: config/weight-name variants, errors, cancel,
the prompt cache and edge memory mode (resident pages of the mapping).

Configs: the diffusers pipeline-test text encoder (hidden 16, vocab 152064); a GQA 7:1 encoder
(like the real 28:4) in the transformers-5 naming with a flat config and two shards; a head-dim
128 encoder (the real head size, where RoPE angles are largest). Each in f32 and bf16 weights.
Tolerance: max |diff| / max |ref| <= 1e-4 (f32), <= 3e-3 (bf16 weights; the reference runs in
fp32 on the same bf16-rounded weights). Live comparisons skip when torch/transformers are not
installed."""

from __future__ import annotations

import importlib.util
import json
import mmap
import os
import shutil
import sys

import numpy as np
import pytest
from conftest import rel_err

import edge_server
from edge_server import _engine
from edge_server.tokenizer import PROMPT_TEMPLATE, QwenTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
TINY_TOKENIZER = os.path.join(DATA, "qwen_tokenizer_tiny")
TOOLS = os.path.join(HERE, "..", "tools")

torch = pytest.importorskip("torch", reason="torch is needed to build the test encoders")
transformers = pytest.importorskip("transformers", reason="transformers is needed for parity")
from safetensors.torch import save_file  # noqa: E402
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration  # noqa: E402

TOL = {"f32": 1e-4, "bf16": 3e-3}
LENGTHS = [1, 5, 64, 300]

# text_config, vocab, layout ("legacy": model.* / visual.* as Qwen-Image ships, written by
# save_pretrained; "v5": model.language_model.* / model.visual.*), config style, shards
CONFIGS = {
    # diffusers tests/pipelines/qwenimage/test_qwenimage.py get_dummy_components (spec 7.1)
    "diffusers": dict(
        text=dict(hidden_size=16, intermediate_size=16, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=2,
                  rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default"},
                  rope_theta=1000000.0),
        root=dict(hidden_size=16, vocab_size=152064, vision_start_token_id=151652,
                  vision_end_token_id=151653, vision_token_id=151654),
        vision_depth=2, layout="legacy", config="nested", shards=1,
    ),
    # GQA 7:1 like the real model (28 heads : 4 kv heads), head_dim 8
    "gqa7": dict(
        text=dict(hidden_size=56, intermediate_size=96, num_hidden_layers=3,
                  num_attention_heads=7, num_key_value_heads=1, vocab_size=4096,
                  rms_norm_eps=1e-6,
                  rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]},
                  rope_theta=1000000.0),
        root=dict(), vision_depth=1, layout="v5", config="flat", shards=2,
    ),
    # the real head size (128) and theta: the largest RoPE angles, GQA 2:1
    "hd128": dict(
        text=dict(hidden_size=256, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, vocab_size=2048,
                  rms_norm_eps=1e-6,
                  rope_scaling={"mrope_section": [16, 24, 24], "rope_type": "default"},
                  rope_theta=1000000.0),
        root=dict(), vision_depth=1, layout="legacy", config="flat", shards=1,
    ),
}


# ---- building encoders ---------------------------------------------------------------------

def build_torch_encoder(name: str, dtype: str, seed: int = 0):
    spec = CONFIGS[name]
    text = dict(spec["text"])
    cfg = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(depth=spec["vision_depth"], hidden_size=16, intermediate_size=16,
                           num_heads=2, out_hidden_size=text["hidden_size"]),
        **spec["root"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight") or "layernorm" in pname:
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            elif pname.endswith(".bias"):
                v = 0.1 * torch.randn(p.shape, generator=g)
            elif "embed_tokens" in pname:
                v = torch.randn(p.shape, generator=g)
            else:
                fan_in = p.shape[-1] if p.ndim > 1 else 1
                v = torch.randn(p.shape, generator=g) / fan_in**0.5
            if dtype == "bf16":
                v = v.bfloat16().float()  # the reference runs in fp32 on bf16-exact weights
            p.copy_(v)
    return model


def legacy_name(k: str) -> str:
    """transformers-5 state-dict name -> the on-disk name Qwen-Image ships (spec 3.4)."""
    if k.startswith("model.language_model."):
        return "model." + k[len("model.language_model."):]
    if k.startswith("model.visual."):
        return "visual." + k[len("model.visual."):]
    return k


def flat_config(model) -> dict:
    """config.json in the pre-transformers-5 flat form (how Qwen-Image's text_encoder ships)."""
    t = model.config.text_config
    rp = dict(t.rope_parameters)
    out = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "hidden_size": t.hidden_size,
        "intermediate_size": t.intermediate_size,
        "num_hidden_layers": t.num_hidden_layers,
        "num_attention_heads": t.num_attention_heads,
        "num_key_value_heads": t.num_key_value_heads,
        "vocab_size": t.vocab_size,
        "rms_norm_eps": t.rms_norm_eps,
        "max_position_embeddings": t.max_position_embeddings,
        "hidden_act": "silu",
        "rope_theta": rp["rope_theta"],
        "rope_scaling": {"type": "mrope", "mrope_section": rp["mrope_section"]},
        "use_sliding_window": False,
        "sliding_window": 32768,
        "max_window_layers": t.num_hidden_layers,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "vision_config": model.config.vision_config.to_dict(),
    }
    return out


def save_encoder(model, folder: str, name: str, dtype: str) -> None:
    spec = CONFIGS[name]
    os.makedirs(folder, exist_ok=True)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if spec["layout"] == "legacy":
        sd = {legacy_name(k): v for k, v in sd.items()}
    if dtype == "bf16":
        sd = {k: v.to(torch.bfloat16) for k, v in sd.items()}
    if spec["config"] == "nested":
        model.config.save_pretrained(folder)
    else:
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(flat_config(model), f, indent=2)
    keys = sorted(sd)
    if spec["shards"] == 1:
        save_file(sd, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
        return
    n = spec["shards"]
    weight_map = {}
    for i in range(n):
        shard = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        part = {k: sd[k] for k in keys[i::n]}
        save_file(part, os.path.join(folder, shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)


class Encoder:
    def __init__(self, name: str, dtype: str, root: str):
        self.name, self.dtype, self.root = name, dtype, root
        self.torch_model = build_torch_encoder(name, dtype)
        save_encoder(self.torch_model, os.path.join(root, "text_encoder"), name, dtype)
        self.vocab = self.torch_model.config.text_config.vocab_size

    def reference(self, ids: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self.torch_model(input_ids=torch.from_numpy(ids.astype(np.int64))[None],
                                   output_hidden_states=True)
        return out.hidden_states[-1][0].float().numpy()


_ENCODERS: dict[tuple[str, str], Encoder] = {}


@pytest.fixture(scope="module")
def enc_root(tmp_path_factory):
    return tmp_path_factory.mktemp("textenc")


def get_encoder(root, name: str, dtype: str) -> Encoder:
    key = (name, dtype)
    if key not in _ENCODERS:
        _ENCODERS[key] = Encoder(name, dtype, os.path.join(str(root), f"{name}-{dtype}"))
    return _ENCODERS[key]


def random_ids(rng, n: int, vocab: int) -> np.ndarray:
    return rng.integers(0, min(vocab, 151665), size=n).astype(np.int32)


def engine_model(folder: str, threads: int | None = None):
    return _engine.Model(_engine.Runtime(None, threads), folder)


# ---- forward parity ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_matches_transformers(enc_root, name, dtype):
    enc = get_encoder(enc_root, name, dtype)
    m = engine_model(enc.root)
    info = _engine.text_encoder_info(m)
    t = enc.torch_model.config.text_config
    assert info["hidden"] == t.hidden_size and info["vocab"] == t.vocab_size
    assert info["n_layers"] == t.num_hidden_layers and info["n_heads"] == t.num_attention_heads
    assert info["n_kv_heads"] == t.num_key_value_heads
    assert info["head_dim"] == t.hidden_size // t.num_attention_heads
    assert info["intermediate"] == t.intermediate_size
    assert info["rms_eps"] == pytest.approx(t.rms_norm_eps, rel=1e-6)
    assert info["rope_theta"] == pytest.approx(1e6)
    assert info["weight_dtype"] == dtype and info["embed_dtype"] == dtype
    rng = np.random.default_rng(7)
    for n in LENGTHS:
        ids = random_ids(rng, n, enc.vocab)
        ref = enc.reference(ids)
        got = _engine.text_encoder_forward(m, ids)
        assert got.shape == ref.shape == (n, t.hidden_size) and got.dtype == np.float32
        err = rel_err(got, ref)
        assert err <= TOL[dtype], f"{name} {dtype} n={n}: rel err {err:.3g}"


def test_forward_every_isa(enc_root, isa):
    enc = get_encoder(enc_root, "gqa7", "f32")
    m = _engine.Model(_engine.Runtime(isa, 2), enc.root)
    ids = random_ids(np.random.default_rng(3), 77, enc.vocab)
    assert rel_err(_engine.text_encoder_forward(m, ids), enc.reference(ids)) <= TOL["f32"]


def test_threads_and_int64_ids_agree(enc_root):
    enc = get_encoder(enc_root, "gqa7", "bf16")
    ids = random_ids(np.random.default_rng(5), 40, enc.vocab)
    a = _engine.text_encoder_forward(engine_model(enc.root, 1), ids)
    b = _engine.text_encoder_forward(engine_model(enc.root, 2), ids.astype(np.int64))
    c = _engine.text_encoder_forward(engine_model(enc.root, 2), list(map(int, ids)))
    assert rel_err(a, b) < 1e-5
    np.testing.assert_array_equal(b, c)


def test_causal_prefix_property(enc_root):
    """A causal encoder: the first k outputs do not depend on later tokens."""
    enc = get_encoder(enc_root, "diffusers", "f32")
    m = engine_model(enc.root)
    ids = random_ids(np.random.default_rng(11), 50, enc.vocab)
    full = _engine.text_encoder_forward(m, ids)
    part = _engine.text_encoder_forward(m, ids[:20])
    assert rel_err(full[:20], part) < 1e-5


def test_both_weight_layouts_give_the_same_result(enc_root, tmp_path):
    """The same weights named model.* (legacy) and model.language_model.* (transformers 5),
    with a nested and a flat config.json, give bit-identical outputs."""
    enc = get_encoder(enc_root, "diffusers", "f32")
    v5 = tmp_path / "v5"
    folder = v5 / "text_encoder"
    folder.mkdir(parents=True)
    sd = {k: v.detach().contiguous() for k, v in enc.torch_model.state_dict().items()}
    save_file(sd, str(folder / "model.safetensors"))
    with open(folder / "config.json", "w") as f:
        json.dump(flat_config(enc.torch_model), f)
    # transformers reads the flat config into the same text config
    t_flat = Qwen2_5_VLConfig.from_pretrained(str(folder)).text_config
    t = enc.torch_model.config.text_config
    assert (t_flat.hidden_size, t_flat.num_key_value_heads, t_flat.rms_norm_eps) == (
        t.hidden_size, t.num_key_value_heads, t.rms_norm_eps)
    ids = random_ids(np.random.default_rng(1), 33, enc.vocab)
    a = _engine.text_encoder_forward(engine_model(enc.root), ids)
    b = _engine.text_encoder_forward(engine_model(str(v5)), ids)
    np.testing.assert_array_equal(a, b)


# ---- unused tensors, edge memory ---------------------------------------------------------

def _linux_only() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only (/proc/self/maps, pagemap, smaps)")


def tensor_byte_ranges(path: str) -> dict[str, tuple[int, int]]:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    base = 8 + n
    return {k: (base + v["data_offsets"][0], base + v["data_offsets"][1])
            for k, v in header.items() if k != "__metadata__"}


def mapped_pages(path: str) -> dict[int, bool]:
    """{file page index: present in this process} over every mapping of `path`
    (/proc/self/maps + the present bit of /proc/self/pagemap)."""
    _linux_only()
    real = os.path.realpath(path)
    page = mmap.PAGESIZE
    out: dict[int, bool] = {}
    with open("/proc/self/maps") as maps, open("/proc/self/pagemap", "rb") as pm:
        for line in maps:
            parts = line.split()
            if len(parts) < 6 or os.path.realpath(parts[5]) != real:
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            off = int(parts[2], 16)
            pm.seek(lo // page * 8)
            raw = pm.read((hi - lo) // page * 8)
            bits = np.frombuffer(raw, dtype=np.uint64)
            for i, b in enumerate(bits):
                fp = off // page + i
                out[fp] = out.get(fp, False) or bool(int(b) >> 63)
    return out


def test_visual_and_lm_head_are_never_touched(enc_root):
    """No page of visual.* or lm_head.weight is mapped into the process by a forward (they
    are never read through the engine's mapping, so they never count in its RSS). The
    kernel's read-around may still pull neighbouring file pages into the page cache."""
    enc = get_encoder(enc_root, "diffusers", "f32")
    path = os.path.join(enc.root, "text_encoder", "model.safetensors")
    m = engine_model(enc.root)
    _engine.text_encoder_forward(m, random_ids(np.random.default_rng(2), 300, enc.vocab))
    pages = mapped_pages(path)
    assert pages, "the weights file is not mapped"
    ranges = tensor_byte_ranges(path)
    page = mmap.PAGESIZE

    def present(names, inside=True):
        idx = set()
        for k in names:
            b, e = ranges[k]
            if inside:  # pages wholly inside the tensor
                idx.update(range(b // page + 1, (e - 1) // page))
            else:
                idx.update(range(b // page, (e - 1) // page + 1))
        return sum(pages.get(p, False) for p in idx), len(idx)

    unused = [k for k in ranges if k.startswith(("visual.", "lm_head"))]
    assert unused
    r, total = present(unused)
    # fault-around may map a few already-cached pages next to a used tensor
    assert total > 1000 and r <= 0.02 * total, f"{r} of {total} unused pages are mapped"
    r_layers, _ = present([k for k in ranges if k.startswith("model.layers.")], inside=False)
    assert r_layers > 0


def mapped_rss_kb(path: str) -> int:
    """Resident kB of this process's mappings of `path` (/proc/self/smaps)."""
    _linux_only()
    real = os.path.realpath(path)
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if parts and "-" in parts[0] and not parts[0].endswith(":"):  # a mapping header
                inside = len(parts) >= 6 and os.path.realpath(parts[5]) == real
            elif inside and parts[0] == "Rss:":
                total += int(parts[1])
    return total


def test_release_drops_the_encoder_pages(enc_root):
    enc = get_encoder(enc_root, "hd128", "f32")
    path = os.path.join(enc.root, "text_encoder", "model.safetensors")
    m = engine_model(enc.root)
    _engine.text_encoder_release(m)  # not loaded yet: a no-op
    ids = random_ids(np.random.default_rng(4), 64, enc.vocab)
    a = _engine.text_encoder_forward(m, ids)
    before = mapped_rss_kb(path)
    assert before > 200  # the layer weights (~1.4 MB) were touched
    _engine.text_encoder_release(m)
    assert mapped_rss_kb(path) == 0
    b = _engine.text_encoder_forward(m, ids)  # pages come back from the file
    np.testing.assert_array_equal(a, b)
    assert mapped_rss_kb(path) > 200


# ---- errors and cancel --------------------------------------------------------------------

def test_bad_ids_and_arguments(enc_root):
    enc = get_encoder(enc_root, "gqa7", "f32")
    m = engine_model(enc.root)
    with pytest.raises(_engine.InvalidArgument, match="outside"):
        _engine.text_encoder_forward(m, np.array([1, enc.vocab], np.int32))
    with pytest.raises(_engine.InvalidArgument, match="outside"):
        _engine.text_encoder_forward(m, np.array([-1], np.int64))
    with pytest.raises(_engine.InvalidArgument, match="empty"):
        _engine.text_encoder_forward(m, np.array([], np.int32))
    with pytest.raises(_engine.InvalidArgument, match="1-D"):
        _engine.text_encoder_forward(m, np.zeros((2, 3), np.int32))
    with pytest.raises(_engine.InvalidArgument, match="integers"):
        _engine.text_encoder_forward(m, np.zeros(3, np.float32))


def test_cancel_before_first_layer(enc_root):
    enc = get_encoder(enc_root, "gqa7", "f32")
    m = engine_model(enc.root)
    tok = _engine.CancelToken()
    tok.cancel()
    with pytest.raises(_engine.Cancelled, match="layer 0"):
        _engine.text_encoder_forward(m, np.arange(10, dtype=np.int32), tok)
    _engine.text_encoder_forward(m, np.arange(10, dtype=np.int32), _engine.CancelToken())


def test_missing_folder(tmp_path):
    m = engine_model(str(tmp_path))
    with pytest.raises(_engine.EngineIOError, match="text_encoder"):
        _engine.text_encoder_info(m)


def _copy_encoder(enc: Encoder, dst) -> str:
    shutil.copytree(os.path.join(enc.root, "text_encoder"), os.path.join(dst, "text_encoder"))
    return os.path.join(dst, "text_encoder", "config.json")


@pytest.mark.parametrize(
    ("edit", "exc", "match"),
    [
        ({"rope_scaling": {"type": "yarn", "factor": 4.0}}, _engine.Unsupported, "yarn"),
        ({"hidden_act": "gelu"}, _engine.Unsupported, "hidden_act"),
        ({"use_sliding_window": True}, _engine.Unsupported, "sliding"),
        ({"num_hidden_layers": 2}, _engine.FormatError, "more layers"),
        ({"num_hidden_layers": 4}, _engine.FormatError, "layers.3"),
        ({"num_attention_heads": 5}, _engine.FormatError, "multiple"),
        ({"vocab_size": 4000}, _engine.FormatError, "embed_tokens"),
        ({"hidden_size": "x"}, _engine.FormatError, "hidden_size"),
    ],
)
def test_config_errors(enc_root, tmp_path, edit, exc, match):
    enc = get_encoder(enc_root, "gqa7", "f32")  # flat config
    cfg_path = _copy_encoder(enc, tmp_path)
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg.update(edit)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    with pytest.raises(exc, match=match):
        _engine.text_encoder_info(engine_model(str(tmp_path)))


def test_nested_config_wins_and_theta_from_rope_parameters(enc_root, tmp_path):
    enc = get_encoder(enc_root, "diffusers", "f32")  # nested (transformers 5) config
    cfg_path = _copy_encoder(enc, tmp_path)
    with open(cfg_path) as f:
        cfg = json.load(f)
    assert "text_config" in cfg and cfg["text_config"]["rope_parameters"]["rope_theta"] == 1e6
    cfg["text_config"]["rope_parameters"]["rope_theta"] = 5000.0
    cfg["rope_theta"] = 7.0  # a stale top-level value does not win over text_config
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    info = _engine.text_encoder_info(engine_model(str(tmp_path)))
    assert info["rope_theta"] == 5000.0


# ---- the Python API: tokenize / encode_prompt against diffusers ---------------------------

def real_tokenizer_folder() -> str | None:
    """The full Qwen2 tokenizer rebuilt from dashscope's qwen.tiktoken (cached), or None."""
    spec = importlib.util.spec_from_file_location(
        "make_qwen_tokenizer", os.path.join(TOOLS, "make_qwen_tokenizer.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    try:
        return mod.cached_build()
    except FileNotFoundError:
        return None


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    """The real tokenizer when dashscope is installed, else the committed tiny one (with a
    tokenizer.json so transformers keeps its added-token ids)."""
    real = real_tokenizer_folder()
    if real:
        return real
    d = str(tmp_path_factory.mktemp("tok") / "tokenizer")
    shutil.copytree(TINY_TOKENIZER, d)
    QwenTokenizer(d).save_tokenizer_json(os.path.join(d, "tokenizer.json"))
    return d


@pytest.fixture(scope="module")
def pipeline_model(enc_root, tokenizer_folder):
    """(diffusers QwenImagePipeline with the diffusers-config encoder, QwenImageModel)."""
    diffusers = pytest.importorskip("diffusers")
    from transformers import Qwen2Tokenizer

    enc = get_encoder(enc_root, "diffusers", "f32")
    tok_dst = os.path.join(enc.root, "tokenizer")
    if not os.path.isdir(tok_dst):
        shutil.copytree(tokenizer_folder, tok_dst)
    torch.manual_seed(0)
    transformer = diffusers.QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=1, attention_head_dim=16,
        num_attention_heads=3, joint_attention_dim=16, guidance_embeds=False,
        axes_dims_rope=(8, 4, 4))
    vae = diffusers.AutoencoderKLQwenImage(
        base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
        temperal_downsample=[False, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    pipe = diffusers.QwenImagePipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=vae,
        text_encoder=enc.torch_model, tokenizer=Qwen2Tokenizer.from_pretrained(tok_dst),
        transformer=transformer)
    assert pipe.prompt_template_encode == PROMPT_TEMPLATE
    assert pipe.prompt_template_encode_start_idx == 34
    return pipe, edge_server.load_model(enc.root)


LONG_PROMPT = " ".join(f"word{i % 97} 数字{i}" for i in range(700))  # > 1058 tokens
PROMPTS = ["dance monkey", "A cat holding a sign that says hello world", " ",
           "中文提示\uff1a一只猫拿着写有\u201c你好\u201d的牌子 🐱\n第二行", LONG_PROMPT]


@pytest.mark.parametrize("msl", [512, 16, 1024])
def test_encode_prompt_matches_diffusers(pipeline_model, msl):
    pipe, model = pipeline_model
    model.configure_text_encoder(prompt_cache_size=0)
    for prompt in PROMPTS:
        with torch.no_grad():
            ref, mask = pipe.encode_prompt(prompt, device="cpu", max_sequence_length=msl)
        assert mask is None  # batch 1: all ones, replaced by None
        ref = ref[0].float().numpy()
        got, info = model.encode_prompt(prompt, max_sequence_length=msl, return_info=True)
        assert got.shape == ref.shape and got.dtype == np.float32, prompt[:20]
        assert rel_err(got, ref) <= TOL["f32"], prompt[:20]
        assert info.n_tokens == ref.shape[0]
        assert info.truncated == (info.n_prompt_tokens > info.n_tokens)
        if prompt is LONG_PROMPT:
            assert info.truncated and info.n_encoded == 1024 + 34
            assert info.n_template_tokens > 1058


def test_tokenize_matches_the_pipeline_tokenizer(pipeline_model):
    pipe, model = pipeline_model
    for prompt in PROMPTS:
        ref = pipe.tokenizer([PROMPT_TEMPLATE.format(prompt)], max_length=1058, padding=True,
                             truncation=True, return_tensors="np").input_ids[0]
        got = model.tokenize(prompt)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, ref)


def test_text_encoder_forward_method(pipeline_model):
    pipe, model = pipeline_model
    ids = model.tokenize("dance monkey")
    with torch.no_grad():
        ref = pipe.text_encoder(input_ids=torch.from_numpy(ids.astype(np.int64))[None],
                                output_hidden_states=True).hidden_states[-1][0].numpy()
    got = model.text_encoder_forward(ids)
    assert rel_err(got, ref) <= TOL["f32"]
    assert model.text_encoder_info()["vocab"] == 152064


def test_prompt_cache_hits_and_edge_memory(pipeline_model):
    _, model = pipeline_model
    model.configure_text_encoder(prompt_cache_size=2, edge_memory=False)
    model.prompt_cache.clear()
    model.prompt_cache.reset_stats()
    runs = model.text_stats()["encoder_runs"]
    a = model.encode_prompt("a red apple")
    b, info = model.encode_prompt("a red apple", return_info=True)
    assert info.cache_hit and model.last_prompt_info is info
    np.testing.assert_array_equal(a, b)
    b[:] = 0  # callers get copies: the cached value is not affected
    np.testing.assert_array_equal(model.encode_prompt("a red apple"), a)
    short = model.encode_prompt("a red apple", max_sequence_length=3)  # served from the cache
    np.testing.assert_array_equal(short, a[:3])
    s = model.text_stats()
    assert (s["hits"], s["misses"], s["encoder_runs"] - runs) == (3, 1, 1)
    model.encode_prompt("a green pear")
    model.encode_prompt("a blue plum")  # evicts "a red apple" (capacity 2)
    assert "a red apple" not in model.prompt_cache and len(model.prompt_cache) == 2
    assert model.text_stats()["evictions"] == 1
    # edge memory: the encoder's pages are released after every encoder run
    model.configure_text_encoder(edge_memory=True)
    rel = model.text_stats()["releases"]
    c = model.encode_prompt("a red apple")
    np.testing.assert_array_equal(c, a)
    weights = os.path.join(model.path, "text_encoder", "model.safetensors")
    if sys.platform.startswith("linux"):
        assert mapped_rss_kb(weights) == 0
    assert model.text_stats()["releases"] == rel + 1
    model.encode_prompt("a red apple")  # a hit: no encoder run, no release
    assert model.text_stats()["releases"] == rel + 1
    model.configure_text_encoder(edge_memory=False, prompt_cache_size=32)


def test_encode_prompt_argument_checks(pipeline_model):
    _, model = pipeline_model
    with pytest.raises(ValueError, match="max_sequence_length"):
        model.encode_prompt("x", max_sequence_length=1025)
    with pytest.raises(ValueError, match="max_sequence_length"):
        model.encode_prompt("x", max_sequence_length=0)
    with pytest.raises(TypeError):
        model.encode_prompt(["x"])
