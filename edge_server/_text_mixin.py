"""Prompt-encoding methods of QwenImageModel (placeholder until the text encoder lands)."""

from __future__ import annotations


class TextMixin:
    """Adds tokenize / text_encoder_forward / encode_prompt to QwenImageModel."""
