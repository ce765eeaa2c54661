"""Qwen2 tokenizer (on the `tokenizers` library) and the Qwen-Image prompt template.

The tokenizer reproduces transformers' `Qwen2Tokenizer` (models/qwen2/tokenization_qwen2.py):
byte-level BPE without byte fallback or unknown token, NFC normalization, the Qwen2
pre-tokenizer regex (single digits) with "isolated" splits followed by ByteLevel without its
own regex, a byte-level decoder, and every added/special token matched in the raw text before
BPE. It loads a `tokenizer/` folder as Qwen-Image ships it: `tokenizer.json` when present,
otherwise `vocab.json` + `merges.txt` with the added tokens from `tokenizer_config.json`
(`added_tokens_decoder`), `added_tokens.json` and `special_tokens_map.json`.

The template and the prefix drop follow diffusers' `QwenImagePipeline._get_qwen_prompt_embeds`
(spec section 3.2): the prompt is wrapped in the system template, tokenized with
`max_length = 1024 + 34` and right truncation, the text encoder runs on all of it, and the
first 34 hidden states (the system prefix up to `<|im_start|>user\\n`) are dropped;
`encode_prompt` then keeps at most `max_sequence_length` (default 512) rows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

# transformers models/qwen2/tokenization_qwen2.py PRETOKENIZE_REGEX (single-digit numbers).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# diffusers pipelines/qwenimage/pipeline_qwenimage.py
PROMPT_TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
    "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
PROMPT_TEMPLATE_DROP = 34  # prompt_template_encode_start_idx
TOKENIZER_MAX_LENGTH = 1024  # pipeline.tokenizer_max_length
MAX_TEMPLATE_TOKENS = TOKENIZER_MAX_LENGTH + PROMPT_TEMPLATE_DROP  # tokenizer max_length
DEFAULT_MAX_SEQUENCE_LENGTH = 512  # QwenImagePipeline.__call__ default
TEMPLATE_SUFFIX_TOKENS = 5  # <|im_end|> \n <|im_start|> assistant \n

# Qwen2Tokenizer defaults when the folder does not name them.
_DEFAULT_SPECIALS = ("<|endoftext|>",)


@dataclass(frozen=True)
class PromptTokens:
    """The template-wrapped ids of one prompt, as the pipeline's tokenizer call returns them.

    ids: int32 [n] (n <= 1058), what the text encoder runs on.
    n_untruncated: length before truncation to MAX_TEMPLATE_TOKENS.
    truncated: True when tokens were cut (the end of the prompt and the template suffix).
    """

    ids: np.ndarray
    n_untruncated: int
    truncated: bool

    @property
    def n_prompt_tokens(self) -> int:
        """Tokens of the user prompt itself (untruncated; template tokens excluded)."""
        return max(self.n_untruncated - PROMPT_TEMPLATE_DROP - TEMPLATE_SUFFIX_TOKENS, 0)


def _read_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def _token_content(tok: object) -> str | None:
    if isinstance(tok, str):
        return tok
    if isinstance(tok, dict) and isinstance(tok.get("content"), str):
        return tok["content"]
    return None


def _collect_added_tokens(folder: str) -> list[dict]:
    """Added tokens as dicts (id, content, special, lstrip, rstrip, single_word, normalized),
    merged from tokenizer_config.json, added_tokens.json and special_tokens_map.json."""
    cfg = _read_json(os.path.join(folder, "tokenizer_config.json")) or {}
    by_content: dict[str, dict] = {}
    for sid, spec in (cfg.get("added_tokens_decoder") or {}).items():
        content = _token_content(spec)
        if content is None:
            raise ValueError(f"{folder}/tokenizer_config.json: bad added_tokens_decoder[{sid}]")
        by_content[content] = {
            "id": int(sid),
            "content": content,
            "special": bool(spec.get("special", True)),
            "lstrip": bool(spec.get("lstrip", False)),
            "rstrip": bool(spec.get("rstrip", False)),
            "single_word": bool(spec.get("single_word", False)),
            "normalized": bool(spec.get("normalized", False)),
        }
    for content, tid in (_read_json(os.path.join(folder, "added_tokens.json")) or {}).items():
        by_content.setdefault(
            content,
            {"id": int(tid), "content": content, "special": False, "lstrip": False,
             "rstrip": False, "single_word": False, "normalized": False},
        )
    # Names listed as special (config or map) are special tokens, as transformers adds them.
    special_names: set[str] = set(_DEFAULT_SPECIALS)
    for src in (cfg, _read_json(os.path.join(folder, "special_tokens_map.json")) or {}):
        for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
            c = _token_content(src.get(key))
            if c:
                special_names.add(c)
        for t in src.get("additional_special_tokens") or []:
            c = _token_content(t)
            if c:
                special_names.add(c)
    for c in special_names:
        if c in by_content:
            by_content[c]["special"] = True
    return sorted(by_content.values(), key=lambda t: t["id"])


# Characters beyond which encode() goes through encode_batch, which releases the GIL: a prompt
# of a million characters holds it for ~0.5 s in encode (and the server's event loop with it),
# ~17 ms at most in encode_batch. Shorter texts take the same time either way.
_LONG_TEXT = 4096


class QwenTokenizer:
    """A Qwen2 tokenizer folder loaded into a `tokenizers.Tokenizer`."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        from tokenizers import Tokenizer

        self.folder = os.fspath(folder)
        if not os.path.isdir(self.folder):
            raise FileNotFoundError(f"tokenizer folder '{self.folder}' does not exist")
        tj = os.path.join(self.folder, "tokenizer.json")
        if os.path.isfile(tj):
            self._tok = Tokenizer.from_file(tj)
        else:
            self._tok = self._from_vocab_merges()
        self._tok.no_truncation()
        self._tok.no_padding()

    # ---- construction from vocab.json + merges.txt -----------------------------------------

    def _from_vocab_merges(self):
        from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
        from tokenizers.models import BPE

        vocab_path = os.path.join(self.folder, "vocab.json")
        merges_path = os.path.join(self.folder, "merges.txt")
        for p in (vocab_path, merges_path):
            if not os.path.isfile(p):
                raise FileNotFoundError(
                    f"tokenizer folder '{self.folder}' has neither tokenizer.json nor "
                    f"{os.path.basename(p)}"
                )
        with open(vocab_path, encoding="utf-8") as f:
            vocab = json.load(f)
        merges = []
        with open(merges_path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line or (n == 1 and line.startswith("#version")):
                    continue
                parts = line.split(" ")
                if len(parts) != 2:
                    raise ValueError(f"{merges_path}:{n}: expected two tokens, got {line!r}")
                merges.append((parts[0], parts[1]))
        added = _collect_added_tokens(self.folder)
        # Added tokens keep the ids the folder gives them: put them into the model vocab first so
        # the added-vocabulary reuses those ids whatever the order or gaps (BPE never produces
        # them: no merge leads to them).
        for t in added:
            old = vocab.get(t["content"])
            if old is not None and old != t["id"]:
                raise ValueError(
                    f"{self.folder}: added token {t['content']!r} has id {t['id']} but vocab.json "
                    f"says {old}"
                )
            vocab[t["content"]] = t["id"]
        tok = Tokenizer(
            BPE(
                vocab=vocab,
                merges=merges,
                dropout=None,
                unk_token=None,
                continuing_subword_prefix="",
                end_of_word_suffix="",
                fuse_unk=False,
                byte_fallback=False,
            )
        )
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(
                    Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False
                ),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        tok.decoder = decoders.ByteLevel()
        specials = [t for t in added if t["special"]]
        plain = [t for t in added if not t["special"]]

        def mk(t: dict) -> AddedToken:
            return AddedToken(
                t["content"], single_word=t["single_word"], lstrip=t["lstrip"],
                rstrip=t["rstrip"], normalized=t["normalized"], special=t["special"],
            )

        if plain:
            tok.add_tokens([mk(t) for t in plain])
        if specials:
            tok.add_special_tokens([mk(t) for t in specials])
        for t in added:
            got = tok.token_to_id(t["content"])
            if got != t["id"]:
                raise ValueError(
                    f"{self.folder}: added token {t['content']!r} got id {got}, expected {t['id']}"
                )
        return tok

    # ---- API ---------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included (151665 for Qwen2.5-VL)."""
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, tid: int) -> str | None:
        return self._tok.id_to_token(int(tid))

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no template, no truncation, nothing added)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if len(text) > _LONG_TEXT:  # encode_batch releases the GIL (the server's loop runs on)
            return list(self._tok.encode_batch([text], add_special_tokens=False)[0].ids)
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(e.ids) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def encode_prompt(self, prompt: str, max_length: int = MAX_TEMPLATE_TOKENS) -> PromptTokens:
        """The Qwen-Image template around `prompt`, tokenized and right-truncated to
        `max_length` tokens (the pipeline's tokenizer call for one prompt)."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        ids = self.encode(PROMPT_TEMPLATE.format(prompt))
        n = len(ids)
        ids = ids[:max_length]
        return PromptTokens(np.asarray(ids, dtype=np.int32), n, n > max_length)

    def save_tokenizer_json(self, path: str) -> None:
        """Write the equivalent tokenizer.json (the single-file form)."""
        self._tok.save(path)
