"""Per-step previews: the denoised estimate x0 (normalised Wan-2.1 latent space, 16 channels)
projected to RGB by a 16x3 matrix plus bias, resized and encoded with Pillow.

Two published fits exist for this latent space (see shared/reference/previews-quant-perf.md
1.2): ComfyUI's `Wan21.latent_rgb_factors` and stable-diffusion.cpp's
`wan_21_latent_rgb_proj`. Both are kept; `benchmarks/fit_preview.py` measures them against
the real VAE decode (PSNR on real x0) and fits a least-squares replacement. The default is the
ComfyUI fit (see README, *Previews*, for why and what measuring needs)."""

from __future__ import annotations

import io

import numpy as np

from edge_server import _engine
from edge_server.png import encode_png

# ComfyUI comfy/latent_formats.py, class Wan21 (rows: latent channels; columns: R, G, B)
COMFYUI_WAN21 = (
    (-0.1299, -0.1692, 0.2932),
    (0.0671, 0.0406, 0.0442),
    (0.3568, 0.2548, 0.1747),
    (0.0372, 0.2344, 0.1420),
    (0.0313, 0.0189, -0.0328),
    (0.0296, -0.0956, -0.0665),
    (-0.3477, -0.4059, -0.2925),
    (0.0166, 0.1902, 0.1975),
    (-0.0412, 0.0267, -0.1364),
    (-0.1293, 0.0740, 0.1636),
    (0.0680, 0.3019, 0.1128),
    (0.0032, 0.0581, 0.0639),
    (-0.1251, 0.0927, 0.1699),
    (0.0060, -0.0633, 0.0005),
    (0.3477, 0.2275, 0.2950),
    (0.1984, 0.0913, 0.1861),
)
COMFYUI_WAN21_BIAS = (-0.1835, -0.0868, -0.3360)

# stable-diffusion.cpp src/runtime/latent-preview.h, wan_21_latent_rgb_proj / _bias
SDCPP_WAN21 = (
    (0.015123, -0.148418, 0.479828),
    (0.003652, -0.010680, -0.037142),
    (0.212264, 0.063033, 0.016779),
    (0.232999, 0.406476, 0.220125),
    (-0.051864, -0.082384, -0.069396),
    (0.085005, -0.161492, 0.010689),
    (-0.245369, -0.506846, -0.117010),
    (-0.151145, 0.017721, 0.007207),
    (-0.293239, -0.207936, -0.421135),
    (-0.187721, 0.050783, 0.177649),
    (-0.013067, 0.265964, 0.166578),
    (0.028327, 0.109329, 0.108642),
    (-0.205343, 0.043991, 0.148914),
    (0.014307, -0.048647, -0.007219),
    (0.217150, 0.053074, 0.319923),
    (0.155357, 0.083156, 0.064780),
)
SDCPP_WAN21_BIAS = (-0.270270, -0.234976, -0.456853)

FITS: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "comfyui": (np.array(COMFYUI_WAN21, np.float32), np.array(COMFYUI_WAN21_BIAS, np.float32)),
    "sdcpp": (np.array(SDCPP_WAN21, np.float32), np.array(SDCPP_WAN21_BIAS, np.float32)),
}
DEFAULT_FIT = "comfyui"
FORMATS = ("JPEG", "PNG", "WEBP")


def latent_to_rgb(x0: np.ndarray, fit: str = DEFAULT_FIT) -> np.ndarray:
    """x0 float32 (16, h, w) -> uint8 (h, w, 3): rgb = x0^T M + b, then (rgb + 1) / 2, on this
    thread in the engine (_engine.project_rgb8). Not a numpy product: a BLAS matmul this size
    (a 1024x1024 image's 128x128 latent) wakes OpenBLAS's threads, which then spin for about
    0.1 s of CPU after every call and take the cores from the engine's pool (with a JPEG
    preview every step the demo's 1024x1024 generation ran 35% slower in the server)."""
    if x0.ndim != 3 or x0.shape[0] != 16:
        raise ValueError(f"x0 must be (16, h, w), got {x0.shape}")
    try:
        m, b = FITS[fit]
    except KeyError:
        raise ValueError(f"unknown preview fit {fit!r} (choose from {sorted(FITS)})") from None
    x = np.ascontiguousarray(x0, dtype=np.float32)
    return _engine.project_rgb8(x, m, b, _engine.get_runtime(threads=1))


def encode_image(
    rgb: np.ndarray, fmt: str = "JPEG", max_side: int = 0, quality: int = 85
) -> tuple[bytes, int, int]:
    """uint8 (h, w, 3) -> (encoded bytes, width, height), resized (bilinear, aspect kept) so
    the longer side is max_side when max_side > 0."""
    from PIL import Image

    fmt = fmt.upper()
    if fmt not in FORMATS:
        raise ValueError(f"unknown image format {fmt!r} (choose from {', '.join(FORMATS)})")
    img = Image.fromarray(rgb, "RGB")
    if max_side > 0 and max(img.size) != max_side:
        s = max_side / max(img.size)
        size = (max(1, round(img.width * s)), max(1, round(img.height * s)))
        img = img.resize(size, Image.Resampling.BILINEAR)
    if fmt == "PNG":
        return encode_png(np.asarray(img, dtype=np.uint8)), img.width, img.height
    buf = io.BytesIO()
    img.save(buf, fmt, quality=int(quality))
    return buf.getvalue(), img.width, img.height


def preview(
    x0: np.ndarray,
    fmt: str = "JPEG",
    max_side: int = 512,
    quality: int = 80,
    fit: str = DEFAULT_FIT,
) -> tuple[bytes, int, int]:
    """x0 (16, h, w) -> encoded preview (bytes, width, height)."""
    return encode_image(latent_to_rgb(x0, fit), fmt, max_side, quality)
