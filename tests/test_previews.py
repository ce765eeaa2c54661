"""Latent-to-RGB previews: the projection, both fits, resizing and encoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edge_server import previews


def test_projection_matches_the_formula():
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((16, 5, 7)).astype(np.float32)
    for fit, (m, b) in previews.FITS.items():
        rgb = previews.latent_to_rgb(x0, fit)
        ref = np.einsum("chw,ck->hwk", x0, m) + b
        ref = np.rint(np.clip((ref + 1) * 127.5, 0, 255)).astype(np.uint8)
        assert rgb.shape == (5, 7, 3) and np.array_equal(rgb, ref)
    zero = previews.latent_to_rgb(np.zeros((16, 2, 2), np.float32))
    assert (
        zero[0, 0].tolist() == np.rint((np.array(previews.COMFYUI_WAN21_BIAS) + 1) * 127.5).tolist()
    )


@pytest.mark.parametrize("fmt", previews.FORMATS)
def test_encode_resizes_keeping_aspect(fmt):
    x0 = np.random.default_rng(1).standard_normal((16, 32, 64)).astype(np.float32)
    data, w, h = previews.preview(x0, fmt, max_side=256)
    assert (w, h) == (256, 128)
    img = Image.open(io.BytesIO(data))
    assert img.format == fmt and img.size == (256, 128)


def test_bad_arguments():
    with pytest.raises(ValueError, match="16, h, w"):
        previews.latent_to_rgb(np.zeros((4, 2, 2), np.float32))
    with pytest.raises(ValueError, match="unknown preview fit"):
        previews.latent_to_rgb(np.zeros((16, 2, 2), np.float32), "nope")
    with pytest.raises(ValueError, match="unknown image format"):
        previews.encode_image(np.zeros((2, 2, 3), np.uint8), "GIF")
