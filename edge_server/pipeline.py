"""Text-to-image generation (diffusers QwenImagePipeline semantics) on the C engine:
prompt encoding (cached) -> the denoising loop in C (one call per image; no Python between
steps except the per-step callback) -> VAE decode.

QwenImageModel inherits PipelineMixin; it provides encode_prompt / vae_decode_image (the text
and VAE mixins) and self._model / self.path / self.lora."""

from __future__ import annotations

import functools
import json
import math
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image as PILImage

from edge_server import _engine
from edge_server.scheduler import SchedulerConfig, lightning, sigmas_for

LN3 = math.log(3.0)


@dataclass(frozen=True, slots=True)
class SizeLimits:
    """Accepted image sizes (pixels): multiples of `multiple` in [min_side, max_side] and at
    most max_pixels in total."""

    min_side: int = 64
    max_side: int = 2048
    max_pixels: int = 2048 * 2048
    multiple: int = 16
    max_steps: int = 100
    max_images: int = 8


@dataclass(frozen=True, slots=True)
class StepInfo:
    """Handed to on_step after every denoising step."""

    image_index: int  # which of num_images (0-based)
    step: int  # 1-based
    n_steps: int
    sigma: float
    x0: np.ndarray  # float32 (16, h/8, w/8): the denoised estimate x_t - sigma * v
    elapsed_s: float  # since generate() started
    vae_image: Any = None  # PIL image from the full VAE (every vae_preview_every steps)


@dataclass
class Timings:
    prompt_encode_s: float = 0.0
    steps_s: list[float] = field(default_factory=list)  # every step of every image
    vae_decode_s: float = 0.0
    total_s: float = 0.0


@dataclass
class GenerationResult:
    _images: list[Any]  # PIL images, or [] when only `pixels` were made (see images)
    seeds: list[int]
    steps: int
    sigmas: list[float]
    prompt_info: Any  # PromptInfo (truncation is reported here)
    negative_info: Any | None
    timings: Timings
    latents: list[np.ndarray]  # final packed latents (N_img, 64) per image
    # the same pixels as `images`, uint8 (h, w, 3) arrays (encoders skip a PIL round trip)
    pixels: list[np.ndarray] = field(default_factory=list)

    @property
    def images(self) -> list[Any]:
        """PIL RGB images; made from `pixels` on first use (a server never needs them, and
        the copy costs 0.6 ms at 1024x1024 on the engine thread)."""
        if not self._images and self.pixels:
            self._images = [PILImage.fromarray(p) for p in self.pixels]
        return self._images

    @property
    def truncated(self) -> bool:
        return bool(getattr(self.prompt_info, "truncated", False))


def _invalid(msg: str) -> _engine.InvalidArgument:
    return _engine.InvalidArgument(1, msg)


def _format(msg: str) -> _engine.FormatError:
    return _engine.FormatError(3, msg)  # ENG_ERR_FORMAT


def pack_latents(x: np.ndarray) -> np.ndarray:
    """(C, h, w) -> (h/2 * w/2, C*4), diffusers' _pack_latents."""
    c, h, w = x.shape
    return np.ascontiguousarray(
        x.reshape(c, h // 2, 2, w // 2, 2).transpose(1, 3, 0, 2, 4).reshape(h * w // 4, c * 4)
    )


def unpack_latents(x: np.ndarray, c: int, h: int, w: int) -> np.ndarray:
    """(h/2 * w/2, C*4) -> (C, h, w), diffusers' _unpack_latents."""
    return np.ascontiguousarray(
        x.reshape(h // 2, w // 2, c, 2, 2).transpose(2, 0, 3, 1, 4).reshape(c, h, w)
    )


class PipelineMixin:
    """generate() for QwenImageModel."""

    _model: Any
    path: str
    lora: str | None
    limits: SizeLimits = SizeLimits()

    # ---- configuration -------------------------------------------------------------------

    def scheduler_config(self) -> SchedulerConfig:
        """scheduler/scheduler_config.json (diffusers defaults if absent), switched to the
        Lightning preset when a Lightning LoRA is loaded."""
        cfg = self._scheduler_file or SchedulerConfig()
        return lightning(cfg) if self.is_lightning else cfg

    # the folder's JSON files, read once (generate() would otherwise parse them every time)
    @functools.cached_property
    def _scheduler_file(self) -> SchedulerConfig | None:
        path = os.path.join(self.path, "scheduler", "scheduler_config.json")
        if not os.path.exists(path):
            return None
        try:
            return SchedulerConfig.from_file(path)
        except ValueError as e:  # the model folder is malformed, not the request
            raise _format(str(e)) from None

    @property
    def is_lightning(self) -> bool:
        """A Lightning LoRA is loaded, or the scheduler config is the Lightning one, or the
        model folder says so (model_index.json "qwen_edge": {"lightning": true})."""
        if self.lora and "lightning" in os.path.basename(self.lora).lower():
            return True
        c = self._scheduler_file
        if c is not None and (
            c.use_dynamic_shifting
            and c.base_shift is not None
            and c.max_shift is not None
            and abs(c.base_shift - LN3) < 1e-4
            and abs(c.max_shift - LN3) < 1e-4
        ):
            return True
        return self._qwen_edge.get("lightning") is True

    @property
    def default_steps(self) -> int:
        """8, or 4 for a 4-step Lightning LoRA (by its file name), or the model folder's own
        model_index.json "qwen_edge": {"default_steps": n}."""
        own = self._qwen_edge.get("default_steps")
        if isinstance(own, int) and not isinstance(own, bool) and 0 < own <= self.limits.max_steps:
            return own
        if self.lora and re.search(r"4[-_]?steps?", os.path.basename(self.lora), re.I):
            return 4
        return 8

    @property
    def _qwen_edge(self) -> dict[str, Any]:
        """model_index.json's "qwen_edge" section ({} when absent or not an object)."""
        own = self._model_index_data.get("qwen_edge")
        return own if isinstance(own, dict) else {}

    @functools.cached_property
    def _latent_channels(self) -> int:
        """The transformer's latent channels, once it is checked to pack 2x2 patches as this
        pipeline does (FormatError otherwise; cached once it fits)."""
        info = self._model.transformer_info()
        if info["patch_size"] != 2:
            raise _format(f"transformer patch_size {info['patch_size']}: the Qwen-Image pipeline "
                          "packs latents in 2x2 patches")
        return int(info["in_channels"] // 4)

    _vae_ok: bool = False

    def _check_vae(self) -> None:
        """FormatError unless the VAE upsamples 8x, as the pipeline's latent size assumes, and
        takes the transformer's latent channels (checked until it passes once). Called just
        before the first decode, which loads the VAE anyway."""
        if self._vae_ok:
            return
        vae = _engine.vae_info(self._model)
        if vae["scale"] != 8:
            raise _format(f"the VAE upsamples {vae['scale']}x (dim_mult has {vae['n_levels']} "
                          "levels); the Qwen-Image pipeline needs 8x (4 levels)")
        if vae["z_dim"] != self._latent_channels:
            raise _format(f"the VAE takes {vae['z_dim']} latent channels, the transformer "
                          f"makes {self._latent_channels}")
        self._vae_ok = True

    @functools.cached_property
    def _model_index_data(self) -> dict[str, Any]:
        path = os.path.join(self.path, "model_index.json")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    # ---- validation ----------------------------------------------------------------------

    def _check_size(self, width: int, height: int) -> None:
        lim = self.limits
        for name, v in (("width", width), ("height", height)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise _invalid(f"{name} must be an integer, got {v!r}")
            if v % lim.multiple or not lim.min_side <= v <= lim.max_side:
                raise _invalid(
                    f"{name}={v}: must be a multiple of {lim.multiple} in "
                    f"[{lim.min_side}, {lim.max_side}]"
                )
        if width * height > lim.max_pixels:
            raise _invalid(f"width x height = {width * height} pixels exceeds {lim.max_pixels}")

    # ---- generation ----------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        *,
        width: int = 1024,
        height: int = 1024,
        steps: int | None = None,
        seed: int | None = None,
        negative_prompt: str | None = None,
        true_cfg_scale: float = 1.0,
        num_images: int = 1,
        latents: np.ndarray | None = None,
        on_step: Callable[[StepInfo], object] | None = None,
        cancel: _engine.CancelToken | None = None,
        vae_preview_every: int = 0,
        park: bool = True,
    ) -> GenerationResult:
        """Generate num_images images for one prompt (seeds seed, seed+1, ...).

        latents (packed, (N_img, 64) or (num_images, N_img, 64)) replaces the seeded noise
        (parity tests). on_step(StepInfo) runs after every step; a truthy return stops the
        generation (Cancelled). cancel stops it within one transformer block. park=False
        leaves the runtime's pool threads spinning for a moment (for a caller that runs more
        engine work at once, e.g. the server's PNG encoding; it parks them itself)."""
        t_start = time.perf_counter()
        lim = self.limits
        if not isinstance(prompt, str) or not prompt.strip():
            raise _invalid("prompt must be a non-empty string")
        self._check_size(width, height)
        steps = self.default_steps if steps is None else steps
        if not isinstance(steps, int) or not 1 <= steps <= lim.max_steps:
            raise _invalid(f"steps={steps!r}: must be an integer in [1, {lim.max_steps}]")
        if not isinstance(num_images, int) or not 1 <= num_images <= lim.max_images:
            raise _invalid(f"num_images={num_images!r}: must be in [1, {lim.max_images}]")
        cfg = float(true_cfg_scale)
        if not math.isfinite(cfg) or cfg < 0:
            raise _invalid(f"true_cfg_scale={true_cfg_scale!r}: must be a finite number >= 0")
        if seed is None:
            seed = secrets.randbits(63)
        if not isinstance(seed, int) or not 0 <= seed <= 2**64 - num_images:
            raise _invalid(f"seed={seed!r}: must be an integer in [0, 2^64 - num_images]")

        info = self._model.transformer_info()
        ch = self._latent_channels
        h_lat, w_lat = 2 * (height // 16), 2 * (width // 16)
        n_img = (h_lat // 2) * (w_lat // 2)
        init = None
        if latents is not None:
            init = np.asarray(latents, dtype=np.float32)
            if init.ndim == 2:
                init = init[None]
            if init.shape != (num_images, n_img, info["in_channels"]):
                raise _invalid(
                    f"latents must be ({n_img}, {info['in_channels']}) packed "
                    f"(or ({num_images}, {n_img}, {info['in_channels']})), got "
                    f"{np.shape(latents)}"
                )

        timings = Timings()
        t0 = time.perf_counter()
        enc = self.encode_prompt  # type: ignore[attr-defined]
        embeds, pinfo = enc(prompt, return_info=True, cancel=cancel)
        neg = ninfo = None
        if cfg > 1.0 and negative_prompt is not None:
            neg, ninfo = enc(negative_prompt, return_info=True, cancel=cancel)
        timings.prompt_encode_s = time.perf_counter() - t0

        try:
            sigmas = sigmas_for(self.scheduler_config(), steps, n_img)
        except ValueError as e:
            raise _invalid(str(e)) from None
        seeds, finals, pixels = [], [], []
        for i in range(num_images):
            s = seed + i
            noise = init[i] if init is not None else None
            x = noise if noise is not None else pack_latents(
                _engine.randn(s, (ch, h_lat, w_lat), runtime=self.runtime))  # type: ignore[attr-defined]
            last = [time.perf_counter()]

            def step_cb(
                step: int,
                n: int,
                sigma: float,
                x0: np.ndarray,
                i: int = i,
                last: list[float] = last,
            ) -> bool:
                now = time.perf_counter()
                timings.steps_s.append(now - last[0])
                vae_img = None
                if vae_preview_every > 0 and step % vae_preview_every == 0:
                    vae_img = self.vae_decode_image(x0, cancel=cancel)  # type: ignore[attr-defined]
                stop = False
                if on_step is not None:
                    stop = bool(on_step(StepInfo(i, step, n, sigma, x0, now - t_start, vae_img)))
                last[0] = time.perf_counter()
                return stop

            out = _engine.denoise(
                self._model,
                x,
                embeds,
                sigmas,
                height,
                width,
                neg_txt=neg,
                cfg_scale=cfg,
                on_step=step_cb,
                cancel=cancel,
            )
            t1 = time.perf_counter()
            self._check_vae()
            final = unpack_latents(out, ch, h_lat, w_lat)
            rgb = self.vae_decode_pixels(final, cancel=cancel)  # type: ignore[attr-defined]
            pixels.append(rgb)
            timings.vae_decode_s += time.perf_counter() - t1
            seeds.append(s)
            finals.append(out)
        timings.total_s = time.perf_counter() - t_start
        if park:
            self.runtime.park()  # type: ignore[attr-defined]  # the cores go to the caller now
        return GenerationResult(
            [], seeds, steps, [float(v) for v in sigmas], pinfo, ninfo, timings, finals,
            pixels,
        )
