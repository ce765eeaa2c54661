"""VAE methods of QwenImageModel: decode latents with the C engine (cython_core/vae*.c)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edge_server import _engine

if TYPE_CHECKING:
    from PIL import Image


def latents_to_uint8(rgb: np.ndarray) -> np.ndarray:
    """(3, H, W) float in [-1, 1] -> (H, W, 3) uint8 exactly as diffusers' VaeImageProcessor
    postprocess does it: (x * 0.5 + 0.5).clamp(0, 1) in float32, then (x * 255).round().
    The numpy reference for _engine.to_rgb8, which decodes use (bit-identical, 10x faster)."""
    x = np.clip(rgb.astype(np.float32, copy=False) * np.float32(0.5) + np.float32(0.5), 0.0, 1.0)
    u8 = (x * np.float32(255)).round().astype(np.uint8)  # (3, H, W)
    return np.ascontiguousarray(u8.transpose(1, 2, 0))  # (H, W, 3), row-major for encoders


class VaeMixin:
    """Adds vae_info / vae_plan / vae_decode / vae_decode_pixels / vae_decode_image to
    QwenImageModel.

    Options shared by the decode methods (all optional):
      tiling: None (tile only when the untiled decode exceeds memory_budget, or when `tile` is
      given), True, False; tile: tile window side in latent pixels (default: the largest that
      fits the budget); overlap: overlap of neighbouring windows in latent pixels (at least
      2 x halo, so tiles are exact and a tiled decode equals the untiled one); memory_budget:
      activation bytes allowed (default 1.5e9); cancel: an _engine.CancelToken, polled per
      decoder stage and per tile. The plan for a latent size: vae_plan()."""

    _model: _engine.Model

    def load_vae(self) -> None:
        """Load the decoder now (otherwise it loads on the first decode)."""
        _engine.load_vae(self._model)

    def vae_info(self) -> dict[str, Any]:
        """z_dim, scale, out_channels, base_dim, dim_mult, n_res_blocks, halo, weight_dtype,
        weight_bytes."""
        return dict(_engine.vae_info(self._model))

    def vae_plan(
        self,
        height: int,
        width: int,
        *,
        tiling: bool | None = None,
        tile: int | None = None,
        overlap: int | None = None,
        memory_budget: int | None = None,
    ) -> dict[str, Any]:
        """How a (height, width) latent would be decoded: tiled, tile, overlap, n_tiles and the
        peak activation memory in bytes."""
        return dict(
            _engine.vae_plan(
                self._model,
                int(height),
                int(width),
                tiling=tiling,
                tile=tile,
                overlap=overlap,
                memory_budget=memory_budget,
            )
        )

    def vae_decode(
        self,
        latents: np.ndarray,
        *,
        tiling: bool | None = None,
        tile: int | None = None,
        overlap: int | None = None,
        memory_budget: int | None = None,
        cancel: _engine.CancelToken | None = None,
    ) -> np.ndarray:
        """Normalised latents float32 [z_dim, h, w] (the transformer's space, unpacked) ->
        float32 [3, 8h, 8w] in [-1, 1], equal to diffusers' `vae.decode` output after the
        pipeline's un-normalisation with latents_mean / latents_std."""
        return _engine.vae_decode(
            self._model,
            latents,
            tiling=tiling,
            tile=tile,
            overlap=overlap,
            memory_budget=memory_budget,
            cancel=cancel,
        )

    def vae_decode_pixels(self, latents: np.ndarray, **options: Any) -> np.ndarray:
        """vae_decode, then uint8 (H, W, 3) row-major pixels with diffusers' rounding."""
        return _engine.to_rgb8(self.vae_decode(latents, **options), self._model.runtime)

    def vae_decode_image(self, latents: np.ndarray, **options: Any) -> Image.Image:
        """vae_decode_pixels as a PIL RGB image."""
        from PIL import Image

        return Image.fromarray(self.vae_decode_pixels(latents, **options))
