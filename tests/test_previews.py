"""Latent-to-RGB previews: the projection, both fits, resizing and encoding."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from edge_server import _engine, previews


def _reference(x0: np.ndarray, m: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The preview formula in float64: rint(clip((x0^T m + b + 1) * 127.5, 0, 255))."""
    ref = np.einsum("chw,ck->hwk", x0.astype(np.float64), m.astype(np.float64)) + b
    return np.rint(np.clip((ref + 1) * 127.5, 0, 255))


def test_projection_matches_the_formula():
    rng = np.random.default_rng(0)
    for shape in ((16, 5, 7), (16, 1, 1), (16, 33, 600), (16, 128, 128)):
        x0 = rng.standard_normal(shape).astype(np.float32)
        for fit, (m, b) in previews.FITS.items():
            rgb = previews.latent_to_rgb(x0, fit)
            assert rgb.shape == (*shape[1:], 3) and rgb.dtype == np.uint8
            diff = np.abs(rgb - _reference(x0, m, b))
            # float32 sums round differently from float64 only next to a .5 boundary
            assert diff.max() <= 1 and np.count_nonzero(diff) <= max(1, diff.size // 1000), fit
    zero = previews.latent_to_rgb(np.zeros((16, 2, 2), np.float32))
    assert (
        zero[0, 0].tolist() == np.rint((np.array(previews.COMFYUI_WAN21_BIAS) + 1) * 127.5).tolist()
    )
    # the saturated ends and a non-contiguous x0
    big = np.full((16, 3, 4), 50.0, np.float32)
    assert np.array_equal(previews.latent_to_rgb(big[:, :, ::-1]), _reference(big, *previews.FITS[
        previews.DEFAULT_FIT]))


def test_project_rgb8_maps_any_channel_count():
    rng = np.random.default_rng(3)
    for cin, c in ((1, 1), (3, 3), (16, 4), (40, 2)):
        x = rng.standard_normal((cin, 9, 17)).astype(np.float32)
        m = rng.standard_normal((cin, c)).astype(np.float32) * 0.3
        b = rng.standard_normal(c).astype(np.float32) * 0.1
        for threads in (1, 2):
            got = _engine.project_rgb8(x, m, b, _engine.get_runtime(threads=threads))
            diff = np.abs(got - _reference(x, m, b))
            assert got.shape == (9, 17, c) and diff.max() <= 1, (cin, c, threads)


def test_project_rgb8_rejects_bad_arguments():
    x = np.zeros((16, 4, 4), np.float32)
    m, b = previews.FITS[previews.DEFAULT_FIT]
    for args, match in (
        ((x, m[:8], b), "m must be"),
        ((x, m, b[:2]), "m must be"),
        ((x, np.zeros((16, 5), np.float32), np.zeros(5, np.float32)), "m must be"),
        ((x.astype(np.float64), m, b), "float32"),
        ((x[:, :, ::2], m, b), "C-contiguous"),
        ((x[0], m, b), "3 dimensions"),
    ):
        with pytest.raises(ValueError, match=match):
            _engine.project_rgb8(*args)


def test_previews_leave_no_thread_spinning():
    """A 1024x1024 image's preview must not leave CPU burning once it is done: a numpy (BLAS)
    projection did, OpenBLAS's threads spinning for ~0.1 s after every call on the cores the
    engine's pool needs (35% slower generations with previews)."""
    x0 = np.random.default_rng(4).standard_normal((16, 128, 128)).astype(np.float32)

    def idle_cpu_s() -> float:
        c0 = time.process_time()
        time.sleep(0.15)
        return time.process_time() - c0

    time.sleep(0.3)  # what ran before (numpy's own start-up spins) settles
    quiet = idle_cpu_s()
    previews.preview(x0, "JPEG")
    after = idle_cpu_s()
    assert after - quiet < 0.03, (f"{after * 1e3:.0f} ms of CPU in 150 ms after a preview "
                                  f"({quiet * 1e3:.0f} ms before it)")


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
