"""VAE methods of QwenImageModel (placeholder until the VAE lands)."""

from __future__ import annotations


class VaeMixin:
    """Adds vae_decode / vae_decode_image to QwenImageModel."""
