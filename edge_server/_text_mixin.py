"""Prompt-encoding methods of QwenImageModel: tokenizer (Python) + Qwen2.5-VL encoder (C).

    model.tokenize(prompt)              -> int32 [n]  template-wrapped ids (n <= 1058)
    model.text_encoder_forward(ids)     -> float32 [L, hidden]  = transformers hidden_states[-1]
    model.encode_prompt(prompt)         -> float32 [T, hidden]  = diffusers prompt_embeds[0]
    model.encode_prompt(prompt, return_info=True) -> (embeds, PromptInfo)

encode_prompt follows QwenImagePipeline._get_qwen_prompt_embeds + encode_prompt for one prompt
(spec 3.2): template, tokenizer max_length 1024 + 34 with right truncation, encoder on all
tokens, drop the first 34 rows, keep at most max_sequence_length (default 512, at most 1024)
rows. Results are cached in an LRU keyed by the prompt text (PromptCache). Edge memory mode
drops the encoder's weight pages after each encoder run (madvise DONTNEED on its read-only
mapping) so they are not resident while the transformer runs; before an encoder run it also
calls Model.transformer_release() when the engine binding provides one.

QwenImageModel provides self._model (the _engine.Model) and self.path (the model folder); the
state below is created lazily so the mixin needs no constructor of its own.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_server import _engine
from edge_server.prompt_cache import DEFAULT_PROMPT_CACHE_SIZE, PromptCache
from edge_server.tokenizer import (
    DEFAULT_MAX_SEQUENCE_LENGTH,
    MAX_TEMPLATE_TOKENS,
    PROMPT_TEMPLATE_DROP,
    TOKENIZER_MAX_LENGTH,
    PromptTokens,
    QwenTokenizer,
)


def _open_tokenizer(folder: str | os.PathLike[str]) -> QwenTokenizer:
    """QwenTokenizer(folder); a malformed folder (bad JSON, wrong types, bad merges, not
    UTF-8) raises FormatError naming it, whatever the parser raised."""
    try:
        return QwenTokenizer(folder)
    except FileNotFoundError:
        raise
    except Exception as e:  # json, tokenizers and type errors from a malformed folder
        raise _engine.FormatError(3, f"tokenizer '{os.fspath(folder)}': "
                                     f"{type(e).__name__}: {e}") from e


@dataclass(frozen=True)
class PromptInfo:
    """What encode_prompt did with one prompt (for the response: truncation is reported)."""

    n_tokens: int              # rows of the returned embeddings
    n_prompt_tokens: int       # tokens of the prompt text itself (before any truncation)
    n_template_tokens: int     # template + prompt tokens before truncation
    n_encoded: int             # tokens the text encoder ran on (<= 1024 + 34)
    truncated: bool            # True when prompt tokens did not make it into the embeddings
    n_dropped: int             # tokens after the 34-token prefix that were cut (prompt tokens
                               # and template suffix; tokenizer limit + max_sequence_length)
    max_sequence_length: int
    cache_hit: bool


@dataclass
class _CacheEntry:
    embeds: np.ndarray         # read-only float32 [min(n_kept, msl), hidden]
    tokens: PromptTokens
    msl: int                   # max_sequence_length it was computed for


class _TextState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokenizer: QwenTokenizer | None = None
        self.cache = PromptCache(DEFAULT_PROMPT_CACHE_SIZE)
        self.edge_memory = False
        self.encoder_runs = 0
        self.encoder_seconds = 0.0
        self.releases = 0
        self.last_info: PromptInfo | None = None


class TextMixin:
    """Adds tokenize / text_encoder_forward / encode_prompt to QwenImageModel."""

    _model: Any
    path: str

    # ---- state and options -----------------------------------------------------------------

    def _text(self) -> _TextState:
        st = self.__dict__.get("_text_state")
        if st is None:
            st = self.__dict__.setdefault("_text_state", _TextState())
        return st

    def configure_text_encoder(
        self,
        *,
        prompt_cache_size: int | None = None,
        edge_memory: bool | None = None,
        tokenizer_path: str | os.PathLike[str] | None = None,
    ) -> None:
        """prompt_cache_size: LRU entries (0 disables; default 32). edge_memory: release the
        encoder's weight pages after every encoder run. tokenizer_path: a tokenizer folder
        other than <model>/tokenizer."""
        st = self._text()
        if prompt_cache_size is not None:
            st.cache.capacity = prompt_cache_size
        if edge_memory is not None:
            st.edge_memory = bool(edge_memory)
        if tokenizer_path is not None:
            tok = _open_tokenizer(tokenizer_path)
            with st.lock:
                st.tokenizer = tok
            st.cache.clear()

    @property
    def prompt_cache(self) -> PromptCache:
        return self._text().cache

    @property
    def edge_memory(self) -> bool:
        return self._text().edge_memory

    @edge_memory.setter
    def edge_memory(self, on: bool) -> None:
        self._text().edge_memory = bool(on)

    @property
    def last_prompt_info(self) -> PromptInfo | None:
        """PromptInfo of the latest encode_prompt call."""
        return self._text().last_info

    def text_stats(self) -> dict[str, Any]:
        """Prompt-cache counters (size, capacity, hits, misses, evictions) plus encoder runs,
        total encoder seconds and page releases."""
        st = self._text()
        out: dict[str, Any] = dict(st.cache.stats())
        out.update(
            encoder_runs=st.encoder_runs,
            encoder_seconds=st.encoder_seconds,
            releases=st.releases,
            edge_memory=st.edge_memory,
        )
        return out

    # ---- tokenizer ---------------------------------------------------------------------------

    @property
    def tokenizer(self) -> QwenTokenizer:
        """The model's tokenizer/ folder, loaded on first use."""
        st = self._text()
        with st.lock:
            if st.tokenizer is None:
                folder = os.path.join(self.path, "tokenizer")
                if not os.path.isdir(folder):
                    raise FileNotFoundError(f"model '{self.path}' has no tokenizer/ folder")
                st.tokenizer = _open_tokenizer(folder)
            return st.tokenizer

    def tokenize_prompt(self, prompt: str) -> PromptTokens:
        """Template-wrapped, truncated ids plus the untruncated length."""
        return self.tokenizer.encode_prompt(prompt, MAX_TEMPLATE_TOKENS)

    def tokenize(self, prompt: str) -> np.ndarray:
        """int32 [n]: the Qwen-Image template around `prompt`, tokenized as the pipeline does
        (max_length 1024 + 34, right truncation). These are the ids the encoder runs on."""
        return self.tokenize_prompt(prompt).ids

    # ---- encoder -----------------------------------------------------------------------------

    def text_encoder_info(self) -> dict[str, Any]:
        return dict(_engine.text_encoder_info(self._model))

    def text_encoder_forward(
        self, input_ids: Any, cancel: _engine.CancelToken | None = None
    ) -> np.ndarray:
        """int32/int64 [L] ids -> float32 [L, hidden]: transformers' hidden_states[-1] (after the
        final norm) for batch 1. Honours edge memory mode."""
        st = self._text()
        if st.edge_memory:
            # the transformer's pages go first, if the engine can drop them (forward-compatible
            # hook: Model.transformer_release), so the two are never resident together
            release_transformer = getattr(self._model, "transformer_release", None)
            if release_transformer is not None:
                release_transformer()
        t0 = time.perf_counter()
        try:
            out = _engine.text_encoder_forward(self._model, input_ids, cancel)
        finally:
            with st.lock:
                st.encoder_runs += 1
                st.encoder_seconds += time.perf_counter() - t0
            if st.edge_memory:
                self.text_encoder_release()
        return out

    def text_encoder_release(self) -> None:
        """Drop the encoder's resident weight pages now (re-read on the next run)."""
        _engine.text_encoder_release(self._model)
        st = self._text()
        with st.lock:
            st.releases += 1

    def encode_prompt(
        self,
        prompt: str,
        *,
        max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH,
        cancel: _engine.CancelToken | None = None,
        return_info: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, PromptInfo]:
        """float32 [T, hidden] = diffusers' prompt_embeds[0] for `prompt` (batch 1: the mask is
        all ones, so none is returned). With return_info=True also the PromptInfo, which says
        whether the prompt was truncated. The latest PromptInfo is also last_prompt_info."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        msl = max_sequence_length
        limit = TOKENIZER_MAX_LENGTH
        if not isinstance(msl, int) or isinstance(msl, bool) or not 1 <= msl <= limit:
            raise ValueError(f"max_sequence_length must be an integer in [1, {limit}], got {msl!r}")
        st = self._text()
        entry = st.cache.get(prompt)
        hit = entry is not None and (entry.msl >= msl or entry.embeds.shape[0] < entry.msl)
        if not hit:
            tokens = self.tokenize_prompt(prompt)
            hidden = self.text_encoder_forward(tokens.ids, cancel)
            # a copy: the cache keeps only the kept rows, not the whole encoder output
            embeds = hidden[PROMPT_TEMPLATE_DROP:msl + PROMPT_TEMPLATE_DROP].copy()
            embeds.setflags(write=False)
            entry = _CacheEntry(embeds, tokens, msl)
            st.cache.put(prompt, entry)
        tokens = entry.tokens
        out = np.array(entry.embeds[:msl], dtype=np.float32, copy=True)
        n_kept_untruncated = max(tokens.n_untruncated - PROMPT_TEMPLATE_DROP, 0)
        info = PromptInfo(
            n_tokens=int(out.shape[0]),
            n_prompt_tokens=tokens.n_prompt_tokens,
            n_template_tokens=tokens.n_untruncated,
            n_encoded=int(tokens.ids.shape[0]),
            truncated=tokens.n_prompt_tokens > out.shape[0],
            n_dropped=n_kept_untruncated - int(out.shape[0]),
            max_sequence_length=msl,
            cache_hit=hit,
        )
        st.last_info = info
        return (out, info) if return_info else out
