"""qwen-edge: an on-device text-to-image server around a C inference engine."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from typing import TYPE_CHECKING, Any

try:
    __version__ = _dist_version("qwen-edge")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from edge_server.model import QwenImageModel


def load_model(path: Any, **kwargs: Any) -> QwenImageModel:
    """Open a diffusers-layout Qwen-Image folder: load_model(path, *, lora=None,
    lora_scale=1.0, threads=None, isa=None, progress=None); see edge_server.model.load_model."""
    from edge_server.model import load_model as _load

    return _load(path, **kwargs)


__all__ = ["__version__", "load_model"]
