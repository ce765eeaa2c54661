"""Rebuild the Qwen2 / Qwen2.5-VL tokenizer folder (as Qwen-Image ships `tokenizer/`) from
`qwen.tiktoken`, the BPE rank file inside the `dashscope` wheel.

    pip download dashscope --no-deps   # or: pip install dashscope
    python tools/make_qwen_tokenizer.py OUT_DIR [--tiktoken PATH] [--tokenizer-json]
        [--max-rank N] [--golden CORPUS_JSON]

The small tokenizer committed for the always-on tests (and its tiktoken golden ids):

    python tools/make_qwen_tokenizer.py tests/data/qwen_tokenizer_tiny --max-rank 3000 \\
        --golden tests/data/tokenizer_corpus.json

Writes vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json and
added_tokens.json (and tokenizer.json with --tokenizer-json, built by edge_server.tokenizer).

How the files are derived (shared/reference/qwen-image-spec.md 3.5-3.6):
- vocab.json: the 151,643 byte tokens of qwen.tiktoken (rank = id), written in the GPT-2
  byte-to-unicode alphabet that byte-level BPE uses ("Ġ" for a space).
- merges.txt: one merge per multi-byte token, in rank order: the pair that tiktoken's own BPE
  joins last when it encodes the token's bytes with the ranks below it. That is the form of
  the merges.txt published with Qwen2 (151,387 merges = 151,643 - 256 single bytes); unlike
  transformers' TikTokenConverter it does not list every possible split, and it keeps the
  Qwen2 pre-tokenizer regex (single digits, `\\p{N}`) rather than the converter's `\\p{N}{1,3}`.
- the 22 added tokens 151643..151664 of Qwen2.5-VL, with their special flags.

Only the standard library is needed (no tiktoken, no dashscope import); the dashscope wheel
is located with importlib without importing it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import json
import os
import sys

QWEN_TIKTOKEN_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"
N_RANKS = 151643
# transformers models/qwen2/tokenization_qwen2.py (also edge_server.tokenizer): single digits
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2.5-VL added tokens: (id, content, special). 151657.. are added but not "special".
ADDED_TOKENS = [
    (151643, "<|endoftext|>", True),
    (151644, "<|im_start|>", True),
    (151645, "<|im_end|>", True),
    (151646, "<|object_ref_start|>", True),
    (151647, "<|object_ref_end|>", True),
    (151648, "<|box_start|>", True),
    (151649, "<|box_end|>", True),
    (151650, "<|quad_start|>", True),
    (151651, "<|quad_end|>", True),
    (151652, "<|vision_start|>", True),
    (151653, "<|vision_end|>", True),
    (151654, "<|vision_pad|>", True),
    (151655, "<|image_pad|>", True),
    (151656, "<|video_pad|>", True),
    (151657, "<tool_call>", False),
    (151658, "</tool_call>", False),
    (151659, "<|fim_prefix|>", False),
    (151660, "<|fim_middle|>", False),
    (151661, "<|fim_suffix|>", False),
    (151662, "<|fim_pad|>", False),
    (151663, "<|repo_name|>", False),
    (151664, "<|file_sep|>", False),
]
ADDITIONAL_SPECIAL = [c for i, c, s in ADDED_TOKENS if s and i >= 151644]


def find_qwen_tiktoken() -> str | None:
    """Path of dashscope/resources/qwen.tiktoken if the dashscope package is installed."""
    spec = importlib.util.find_spec("dashscope")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        p = os.path.join(base, "resources", "qwen.tiktoken")
        if os.path.isfile(p):
            return p
    return None


def load_ranks(path: str, check_sha: bool = True) -> dict[bytes, int]:
    with open(path, "rb") as f:
        data = f.read()
    if check_sha and hashlib.sha256(data).hexdigest() != QWEN_TIKTOKEN_SHA256:
        raise ValueError(f"{path}: unexpected sha256 (not dashscope 2.0.2's qwen.tiktoken)")
    ranks = {}
    for line in data.splitlines():
        if line:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError(f"{path}: ranks are not 0..{len(ranks) - 1}")
    return ranks


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode map (what ByteLevel BPE uses)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def last_merge(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """tiktoken's BPE on `token` restricted to ranks below its own: the final two parts."""
    limit = ranks[token]
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, best_i = limit, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < best:
                best, best_i = r, i
        if best_i < 0:
            raise ValueError(f"token {token!r} (rank {limit}) is not reachable by merges")
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return parts[0], parts[1]


def build_files(ranks: dict[bytes, int]) -> dict[str, str]:
    """{file name: text} of the tokenizer folder."""
    b2u = bytes_to_unicode()

    def u(b: bytes) -> str:
        return "".join(b2u[x] for x in b)

    by_rank = sorted(ranks.items(), key=lambda kv: kv[1])
    vocab = {u(tok): rank for tok, rank in by_rank}
    merges = []
    for tok, _ in by_rank:
        if len(tok) > 1:
            a, b = last_merge(tok, ranks)
            merges.append(f"{u(a)} {u(b)}")
    added_decoder = {
        str(i): {
            "content": c,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": s,
        }
        for i, c, s in ADDED_TOKENS
    }
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added_decoder,
        "additional_special_tokens": ADDITIONAL_SPECIAL,
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    special_map = {
        "additional_special_tokens": ADDITIONAL_SPECIAL,
        "eos_token": {
            "content": "<|im_end|>", "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False,
        },
        "pad_token": {
            "content": "<|endoftext|>", "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False,
        },
    }
    return {
        "vocab.json": json.dumps(vocab, ensure_ascii=False, separators=(",", ":")),
        "merges.txt": "#version: 0.2\n" + "\n".join(merges) + "\n",
        "tokenizer_config.json": json.dumps(config, indent=2, ensure_ascii=False) + "\n",
        "special_tokens_map.json": json.dumps(special_map, indent=2) + "\n",
        "added_tokens.json": json.dumps({c: i for i, c, _ in ADDED_TOKENS}, indent=2) + "\n",
    }


def build(
    out_dir: str,
    tiktoken_path: str | None = None,
    tokenizer_json: bool = False,
    max_rank: int | None = None,
) -> str:
    """Writes the tokenizer folder into out_dir (created) and returns it. max_rank keeps only
    the BPE tokens with rank < max_rank (a small but exact prefix of the vocabulary: every
    merge of a kept token joins two kept tokens); the added tokens keep their real ids."""
    path = tiktoken_path or find_qwen_tiktoken()
    if path is None:
        raise FileNotFoundError("qwen.tiktoken not found: install dashscope or pass --tiktoken")
    ranks = load_ranks(path)
    if len(ranks) != N_RANKS:
        raise ValueError(f"{path}: {len(ranks)} ranks, expected {N_RANKS}")
    if max_rank is not None:
        if max_rank < 256:
            raise ValueError("max_rank must keep the 256 single bytes")
        ranks = {t: r for t, r in ranks.items() if r < max_rank}
    files = build_files(ranks)
    os.makedirs(out_dir, exist_ok=True)
    for name, text in files.items():
        tmp = os.path.join(out_dir, name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, os.path.join(out_dir, name))
    if tokenizer_json:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
        from edge_server.tokenizer import QwenTokenizer

        QwenTokenizer(out_dir).save_tokenizer_json(os.path.join(out_dir, "tokenizer.json"))
    return out_dir


def default_cache_dir() -> str:
    """QWEN_EDGE_TOKENIZER_CACHE, else <repo>/build/test-data/qwen_tokenizer (git-ignored)."""
    env = os.environ.get("QWEN_EDGE_TOKENIZER_CACHE")
    if env:
        return env
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(repo, "build", "test-data", "qwen_tokenizer")


def cached_build(out_dir: str | None = None, tiktoken_path: str | None = None) -> str:
    """build() into a cache folder once; rebuilt when qwen.tiktoken or this script changes.
    FileNotFoundError when qwen.tiktoken is not available (tests skip on it)."""
    out_dir = out_dir or default_cache_dir()
    path = tiktoken_path or find_qwen_tiktoken()
    if path is None:
        raise FileNotFoundError("qwen.tiktoken not found: install dashscope or pass --tiktoken")
    h = hashlib.sha256()
    for p in (path, os.path.abspath(__file__)):
        with open(p, "rb") as f:
            h.update(f.read())
    stamp = os.path.join(out_dir, "BUILD_STAMP")
    if os.path.isfile(stamp):
        with open(stamp) as f:
            if f.read().strip() == h.hexdigest():
                return out_dir
    build(out_dir, path)
    with open(stamp + ".tmp", "w") as f:
        f.write(h.hexdigest() + "\n")
    os.replace(stamp + ".tmp", stamp)
    return out_dir


def tiktoken_encoding(tiktoken_path: str | None = None, max_rank: int | None = None):
    """A tiktoken.Encoding with the Qwen2 regex and the added tokens (needs `tiktoken`). Text
    must be NFC-normalized before encoding, and added tokens allowed (allowed_special="all")."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    path = tiktoken_path or find_qwen_tiktoken()
    if path is None:
        raise FileNotFoundError("qwen.tiktoken not found: install dashscope or pass --tiktoken")
    ranks = load_tiktoken_bpe(path)
    if max_rank is not None:
        ranks = {t: r for t, r in ranks.items() if r < max_rank}
    return tiktoken.Encoding(
        "qwen2",
        pat_str=QWEN2_PRETOKENIZE_REGEX,
        mergeable_ranks=ranks,
        special_tokens={c: i for i, c, _ in ADDED_TOKENS},
    )


def write_golden(out_json: str, corpus_json: str, max_rank: int | None, n: int = 250) -> None:
    """Expected ids of the first n corpus strings, from tiktoken (an implementation independent
    of the `tokenizers` library), for the always-on tests of the small test tokenizer."""
    import unicodedata

    enc = tiktoken_encoding(max_rank=max_rank)
    with open(corpus_json, encoding="utf-8") as f:
        strings = json.load(f)["strings"][:n]
    cases = [[s, enc.encode(unicodedata.normalize("NFC", s), allowed_special="all")]
             for s in strings]
    doc = {"about": "tiktoken ids (tools/make_qwen_tokenizer.py --golden)",
           "max_rank": max_rank, "cases": cases}
    with open(out_json, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--tiktoken", help="path to qwen.tiktoken (default: dashscope's)")
    ap.add_argument("--tokenizer-json", action="store_true", help="also write tokenizer.json")
    ap.add_argument("--max-rank", type=int, help="keep only ranks below this (small test vocab)")
    ap.add_argument("--golden", metavar="CORPUS_JSON",
                    help="also write OUT_DIR_golden.json: tiktoken ids of the corpus")
    a = ap.parse_args(argv)
    build(a.out_dir, a.tiktoken, a.tokenizer_json, a.max_rank)
    if a.golden:
        write_golden(a.out_dir.rstrip("/") + "_golden.json", a.golden, a.max_rank)
    print(f"wrote {a.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
