"""edge_server.load_model: a diffusers-layout Qwen-Image folder on the C engine."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from edge_server import _engine
from edge_server._text_mixin import TextMixin
from edge_server._vae_mixin import VaeMixin
from edge_server.pipeline import PipelineMixin


class QwenImageModel(PipelineMixin, VaeMixin, TextMixin):
    """A loaded model folder. Components load on first use; a missing one fails only when a
    method needs it, with a message naming the folder."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lora: str | os.PathLike[str] | None = None,
        lora_scale: float = 1.0,
        threads: int | None = None,
        isa: str | None = None,
        progress: Callable[[str, int, int], object] | None = None,
        edge_memory: bool = False,
        prompt_cache_size: int | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.lora = os.fspath(lora) if lora is not None else None
        self.lora_scale = float(lora_scale)
        self.runtime = _engine.Runtime(isa, threads)
        self._model = _engine.Model(self.runtime, self.path)
        if progress is not None:
            self._model.set_progress(progress)
        if self.lora is not None:
            self._model.set_lora(self.lora, self.lora_scale)
        if edge_memory or prompt_cache_size is not None:
            self.configure_text_encoder(
                edge_memory=edge_memory, prompt_cache_size=prompt_cache_size
            )

    @property
    def isa(self) -> str:
        return str(self.runtime.isa)

    @property
    def threads(self) -> int:
        return int(self.runtime.threads)

    def trim(self) -> None:
        """Free the activation memory that generations keep for the next one (the text
        encoder, transformer and VAE share it: up to ~1.3 GB at 1024x1024 with the real
        model); the next generation allocates it again."""
        self.runtime.trim()

    def load_transformer(self) -> None:
        """Load (and LoRA-merge) the transformer now instead of on first use."""
        self._model.load_transformer()

    def has(self, component: str) -> bool:
        return bool(self._model.has(component))

    def transformer_info(self) -> dict[str, Any]:
        return dict(self._model.transformer_info())

    def transformer_activation_bytes(self, n_img: int, n_txt: int) -> int:
        return int(self._model.transformer_activation_bytes(n_img, n_txt))

    def transformer_forward(
        self,
        latents: np.ndarray,
        prompt_embeds: np.ndarray,
        sigma: float,
        height: int,
        width: int,
        prompt_mask: np.ndarray | None = None,
        cancel: _engine.CancelToken | None = None,
    ) -> np.ndarray:
        """One transformer forward (batch 1): packed latents float32 [N_img, in_channels],
        text embeddings float32 [N_txt, joint_dim], sigma in [0, 1] (diffusers' `timestep`),
        image height/width in pixels -> float32 [N_img, in_channels] (the flow velocity)."""
        return self._model.transformer_forward(
            latents, prompt_embeds, float(sigma), int(height), int(width), prompt_mask, cancel
        )


def load_model(
    path: str | os.PathLike[str],
    *,
    lora: str | os.PathLike[str] | None = None,
    lora_scale: float = 1.0,
    threads: int | None = None,
    isa: str | None = None,
    progress: Callable[[str, int, int], object] | None = None,
    edge_memory: bool = False,
    prompt_cache_size: int | None = None,
) -> QwenImageModel:
    """Open a diffusers-layout model folder (transformer/, vae/, text_encoder/, ...).

    lora: a Lightning LoRA file merged into the transformer when it loads (W += lora_scale *
    alpha / r * up @ down); progress(stage, done, total) reports loading progress;
    edge_memory: drop each component's weight pages before another one runs (the text
    encoder and the transformer are never resident together); prompt_cache_size: prompts
    whose embeddings are kept (LRU, default 32)."""
    return QwenImageModel(
        path,
        lora=lora,
        lora_scale=lora_scale,
        threads=threads,
        isa=isa,
        progress=progress,
        edge_memory=edge_memory,
        prompt_cache_size=prompt_cache_size,
    )
