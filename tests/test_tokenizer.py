"""edge_server.tokenizer (Qwen2 BPE on `tokenizers` + the Qwen-Image template) and the prompt
cache.

Always on: the committed small tokenizer tests/data/qwen_tokenizer_tiny (the first 3,000 ranks
of qwen.tiktoken with the real added-token ids) against tiktoken golden ids, the loader paths
(vocab.json + merges.txt, tokenizer.json, added_tokens.json), the pre-tokenizer rules, decode,
the template / truncation, and PromptCache.

With dashscope installed: the full tokenizer rebuilt from its qwen.tiktoken (cached under
build/test-data) against tiktoken and transformers' Qwen2Tokenizer on the >= 1,000-string corpus
tests/data/tokenizer_corpus.json, and the 34-token template prefix of the spec.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import unicodedata

import numpy as np
import pytest

from edge_server.prompt_cache import PromptCache
from edge_server.tokenizer import (
    MAX_TEMPLATE_TOKENS,
    PROMPT_TEMPLATE,
    PROMPT_TEMPLATE_DROP,
    QwenTokenizer,
)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
TINY = os.path.join(DATA, "qwen_tokenizer_tiny")
TOOLS = os.path.join(HERE, "..", "tools")

# ids from the spec (3.2), computed there with tiktoken + qwen.tiktoken
PREFIX_34 = [151644, 8948, 198, 74785, 279, 2168, 553, 44193, 279, 1894, 11, 6083, 11, 1379, 11,
             10434, 11, 12194, 11, 1467, 11, 27979, 11871, 315, 279, 6171, 323, 4004, 25, 151645,
             198, 151644, 872, 198]
SUFFIX_5 = [151645, 198, 151644, 77091, 198]
ADDED = {
    "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
    "<|object_ref_start|>": 151646, "<|vision_start|>": 151652, "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654, "<|image_pad|>": 151655, "<|video_pad|>": 151656,
    "<tool_call>": 151657, "</tool_call>": 151658, "<|file_sep|>": 151664,
}


def _tool():
    spec = importlib.util.spec_from_file_location(
        "make_qwen_tokenizer", os.path.join(TOOLS, "make_qwen_tokenizer.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    with open(os.path.join(DATA, "tokenizer_corpus.json"), encoding="utf-8") as f:
        strings = json.load(f)["strings"]
    assert len(strings) >= 1000
    return strings


@pytest.fixture(scope="module")
def tiny() -> QwenTokenizer:
    return QwenTokenizer(TINY)


# ---- the small committed tokenizer (always on) --------------------------------------------

def test_corpus_covers_the_required_categories(corpus):
    text = "".join(corpus)
    for probe in ["的", "の", "ア", "한", "ع", "😀", "\u200d", "def ", "{", "99999999", "\r\n",
                  "\t", "<|im_end|>", "<|vision_start|>", "\u0301"]:
        assert probe in text, probe
    assert len(set(corpus)) == len(corpus)


def test_tiny_added_tokens_keep_their_ids(tiny):
    for content, tid in ADDED.items():
        assert tiny.token_to_id(content) == tid
        assert tiny.encode(content) == [tid]
        assert tiny.id_to_token(tid) == content


def test_tiny_matches_tiktoken_golden(tiny):
    with open(os.path.join(DATA, "qwen_tokenizer_tiny_golden.json"), encoding="utf-8") as f:
        golden = json.load(f)
    assert golden["max_rank"] == 3000 and len(golden["cases"]) >= 200
    texts = [c[0] for c in golden["cases"]]
    got = tiny.encode_batch(texts)
    bad = [(t, g, c[1]) for t, g, c in zip(texts, got, golden["cases"], strict=True) if g != c[1]]
    assert not bad, f"{len(bad)} mismatches, first: {bad[0]!r}"


def test_pretokenizer_rules(tiny):
    digit = {str(d): tiny.token_to_id(str(d)) for d in range(10)}
    assert tiny.encode("1234567890") == [digit[c] for c in "1234567890"]  # single digits
    s = "Crème brûlée, Hà Nội, 한국어"
    assert tiny.encode(unicodedata.normalize("NFD", s)) == tiny.encode(s)  # NFC first
    assert tiny.encode("a<|im_end|>b") == [*tiny.encode("a"), 151645, *tiny.encode("b")]
    assert 151645 not in tiny.encode("<|im_end |> <|IM_END|> <|im_end")
    # special tokens split the text before the regex: no space merging across them
    assert tiny.encode(" <|im_start|> ")[1] == 151644


def test_decode_roundtrips_the_corpus(tiny, corpus):
    ids = tiny.encode_batch(corpus)
    for s, i in zip(corpus, ids, strict=True):
        assert tiny.decode(i) == unicodedata.normalize("NFC", s)


def test_tokenizer_json_and_added_tokens_json_paths(tiny, corpus, tmp_path):
    ref = tiny.encode_batch(corpus)
    tj = tmp_path / "json_only"
    tj.mkdir()
    tiny.save_tokenizer_json(str(tj / "tokenizer.json"))
    assert QwenTokenizer(tj).encode_batch(corpus) == ref
    # no tokenizer_config.json: the ids come from added_tokens.json (+ special_tokens_map.json)
    legacy = tmp_path / "legacy"
    shutil.copytree(TINY, legacy)
    os.remove(legacy / "tokenizer_config.json")
    assert QwenTokenizer(legacy).encode_batch(corpus) == ref


def test_long_texts_tokenize_the_same_without_holding_the_gil(tiny):
    """Texts over _LONG_TEXT characters go through encode_batch, which releases the GIL:
    the same ids, and a thread beside it keeps running."""
    import threading
    import time

    from edge_server.tokenizer import _LONG_TEXT

    text = "Z\U0001F600 a quiet harbour, " * 20_000
    assert len(text) > _LONG_TEXT
    want = list(tiny._tok.encode(text, add_special_tokens=False).ids)
    gaps, done = [], threading.Event()

    def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    th = threading.Thread(target=tick)
    th.start()
    t0 = time.perf_counter()
    got = tiny.encode(text)
    took = time.perf_counter() - t0
    done.set()
    th.join()
    assert got == want
    assert max(gaps) < max(0.05, took / 2), (max(gaps), took)


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        QwenTokenizer(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"vocab\.json"):
        QwenTokenizer(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(TINY, bad)
    with open(bad / "merges.txt", "a", encoding="utf-8") as f:
        f.write("a b c\n")
    with pytest.raises(ValueError, match="two tokens"):
        QwenTokenizer(bad)
    clash = tmp_path / "clash"
    shutil.copytree(TINY, clash)
    with open(clash / "vocab.json", encoding="utf-8") as f:
        vocab = json.load(f)
    vocab["<|im_end|>"] = 5
    with open(clash / "vocab.json", "w", encoding="utf-8") as f:
        json.dump(vocab, f)
    with pytest.raises(ValueError, match="im_end"):
        QwenTokenizer(clash)


def test_template_and_truncation(tiny):
    pt = tiny.encode_prompt("a cat")
    assert pt.ids.dtype == np.int32 and not pt.truncated
    assert pt.n_untruncated == len(pt.ids)
    assert tiny.decode(pt.ids) == PROMPT_TEMPLATE.format("a cat")
    suffix = [151645, 198, 151644, *tiny.encode("assistant\n")]
    assert pt.ids[0] == 151644 and list(pt.ids[-len(suffix):]) == suffix
    long_prompt = "word " * 3000
    full = tiny.encode(PROMPT_TEMPLATE.format(long_prompt))
    pt = tiny.encode_prompt(long_prompt)
    assert pt.truncated and len(pt.ids) == MAX_TEMPLATE_TOKENS == 1024 + PROMPT_TEMPLATE_DROP
    assert pt.n_untruncated == len(full) and list(pt.ids) == full[:MAX_TEMPLATE_TOKENS]
    assert pt.n_prompt_tokens == len(full) - 34 - 5
    with pytest.raises(TypeError):
        tiny.encode_prompt(b"bytes")


def test_tiny_matches_transformers(tiny, corpus, tmp_path):
    transformers = pytest.importorskip("transformers")
    hf = transformers.Qwen2Tokenizer.from_pretrained(TINY)
    # transformers renumbers added tokens when the vocab has a gap before them (as here), so
    # compare token strings; with tokenizer.json the ids themselves must match
    ours = tiny.encode_batch(corpus)
    for s, i in zip(corpus, ours, strict=True):
        ref = hf.convert_ids_to_tokens(hf(s, add_special_tokens=False).input_ids)
        assert [tiny.id_to_token(t) for t in i] == ref, s
    d = tmp_path / "tok"
    shutil.copytree(TINY, d)
    tiny.save_tokenizer_json(str(d / "tokenizer.json"))
    hf = transformers.Qwen2Tokenizer.from_pretrained(str(d))
    for s, i in zip(corpus, ours, strict=True):
        assert hf(s, add_special_tokens=False).input_ids == i, s


def test_runtime_imports_no_optional_packages():
    code = (
        "import sys, edge_server.tokenizer, edge_server.prompt_cache, edge_server._text_mixin\n"
        "opt = ('dashscope', 'tiktoken', 'transformers', 'torch')\n"
        "bad = [m for m in opt if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=HERE)


# ---- the full tokenizer from qwen.tiktoken (needs dashscope) ------------------------------

@pytest.fixture(scope="module")
def real_folder() -> str:
    try:
        return _tool().cached_build()
    except FileNotFoundError:
        pytest.skip("dashscope (qwen.tiktoken) is not installed")


@pytest.fixture(scope="module")
def real(real_folder) -> QwenTokenizer:
    return QwenTokenizer(real_folder)


def test_real_folder_shape(real_folder, real):
    with open(os.path.join(real_folder, "vocab.json"), encoding="utf-8") as f:
        assert len(json.load(f)) == 151643
    with open(os.path.join(real_folder, "merges.txt"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("#version") and len(lines) - 1 == 151643 - 256
    assert real.vocab_size == 151665
    for content, tid in ADDED.items():
        assert real.token_to_id(content) == tid


def test_real_template_prefix(real):
    for prompt, kept in [("A cat holding a sign that says hello world", 14), (" ", 6),
                         ("dance monkey", 7)]:
        ids = list(real.encode_prompt(prompt).ids)
        assert ids[:34] == PREFIX_34 and ids[-5:] == SUFFIX_5
        assert len(ids) - PREFIX_34.__len__() == kept


def test_real_corpus_matches_tiktoken(real, corpus):
    pytest.importorskip("tiktoken")
    enc = _tool().tiktoken_encoding()
    ours = real.encode_batch(corpus)
    bad = []
    for s, i in zip(corpus, ours, strict=True):
        ref = enc.encode(unicodedata.normalize("NFC", s), allowed_special="all")
        if i != ref:
            bad.append((s, i, ref))
    assert not bad, f"{len(bad)} of {len(corpus)} differ, first: {bad[0]!r}"
    # the template too
    ref = enc.encode(PROMPT_TEMPLATE.format("x"), allowed_special="all")
    assert real.encode(PROMPT_TEMPLATE.format("x")) == ref


def test_real_corpus_matches_transformers(real_folder, real, corpus):
    transformers = pytest.importorskip("transformers")
    ours = real.encode_batch(corpus)
    for cls in (transformers.Qwen2Tokenizer, transformers.AutoTokenizer):
        hf = cls.from_pretrained(real_folder)
        ref = hf(corpus, add_special_tokens=False).input_ids
        bad = [(s, a, b) for s, a, b in zip(corpus, ours, ref, strict=True) if a != b]
        assert not bad, f"{cls.__name__}: {len(bad)} differ, first: {bad[0]!r}"
        # the pipeline's call: template, max_length 1024 + 34, truncation
        long_prompt = "a very long prompt " * 400
        for p in ["dance monkey", long_prompt]:
            ids = hf([PROMPT_TEMPLATE.format(p)], max_length=1058, padding=True, truncation=True,
                     return_tensors="np").input_ids[0]
            np.testing.assert_array_equal(real.encode_prompt(p).ids, ids)


def test_real_tokenizer_json(real, corpus, tmp_path):
    real.save_tokenizer_json(str(tmp_path / "tokenizer.json"))
    assert QwenTokenizer(tmp_path).encode_batch(corpus) == real.encode_batch(corpus)


# ---- prompt cache --------------------------------------------------------------------------

def test_prompt_cache_lru_and_counters():
    c = PromptCache(2)
    assert c.get("a") is None
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # a is now most recent
    c.put("c", 3)  # evicts b
    assert "b" not in c and "a" in c and len(c) == 2
    assert c.stats() == {"size": 2, "capacity": 2, "hits": 1, "misses": 1, "evictions": 1}
    c.capacity = 1  # shrinking evicts the least recently used
    assert list(c._data) == ["c"] and c.evictions == 2
    c.capacity = 0  # disabled: nothing is stored
    c.put("d", 4)
    assert c.get("d") is None and len(c) == 0
    c.reset_stats()
    assert c.stats()["hits"] == c.stats()["misses"] == 0
    with pytest.raises(ValueError):
        c.capacity = -1
    with pytest.raises(ValueError):
        c.put("x", None)
