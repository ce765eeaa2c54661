"""FlowMatchEulerDiscreteScheduler sigmas, as diffusers computes them for QwenImagePipeline
(fp32 arithmetic, numpy semantics), plus the Qwen-Image-Lightning preset.

The denoising loop itself runs in C (`_engine.denoise`); this module only produces the sigma
schedule (steps + 1 values, the last one terminal) from a `scheduler_config.json`."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

# What diffusers' pipeline falls back to when the config lacks a key (calculate_shift defaults).
_PIPELINE_DEFAULTS = {
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
    "base_shift": 0.5,
    "max_shift": 1.15,
}

# diffusers options qwen-edge does not implement: true in a config is an error
_UNSUPPORTED_FLAGS = ("invert_sigmas", "stochastic_sampling", "use_karras_sigmas",
                      "use_exponential_sigmas", "use_beta_sigmas")


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """The FlowMatchEulerDiscreteScheduler keys that matter for Qwen-Image."""

    num_train_timesteps: int = 1000
    shift: float = 1.0
    use_dynamic_shifting: bool = False
    base_shift: float | None = None
    max_shift: float | None = None
    base_image_seq_len: int | None = None
    max_image_seq_len: int | None = None
    shift_terminal: float | None = None
    time_shift_type: str = "exponential"
    invert_sigmas: bool = False
    stochastic_sampling: bool = False
    use_karras_sigmas: bool = False
    use_exponential_sigmas: bool = False
    use_beta_sigmas: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SchedulerConfig:
        if not isinstance(d, dict):
            raise ValueError(f"scheduler: the config is a JSON {type(d).__name__}, not an object")
        known = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in known}
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SchedulerConfig:
        """Raises ValueError naming the file for anything but a valid config."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, RecursionError) as e:
            raise ValueError(f"scheduler: {os.fspath(path)}: {e}") from None
        except ValueError as e:  # json.JSONDecodeError
            raise ValueError(f"scheduler: {os.fspath(path)}: not JSON ({e})") from None
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{e} ({os.fspath(path)})") from None

    def _check_types(self) -> None:
        """JSON values of the wrong type or range (they would fail later, in numpy)."""
        def number(name: str, lo: float, hi: float, optional: bool) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
                raise ValueError(f"scheduler: {name} = {v!r} must be a number in [{lo:g}, {hi:g}]")

        if isinstance(self.num_train_timesteps, bool) or not isinstance(
                self.num_train_timesteps, int):
            raise ValueError(f"scheduler: num_train_timesteps = {self.num_train_timesteps!r} must "
                             "be an integer")
        number("shift", 1e-3, 1e3, False)
        for name in ("base_shift", "max_shift"):  # mu = a shift: exp(mu) must stay finite
            number(name, -20.0, 20.0, True)
        number("shift_terminal", 0.0, 1.0 - 1e-6, True)
        for name in ("base_image_seq_len", "max_image_seq_len"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"scheduler: {name} = {v!r} must be a positive integer")
        if self.use_dynamic_shifting and self.get("base_image_seq_len") >= self.get(
                "max_image_seq_len"):
            raise ValueError("scheduler: base_image_seq_len must be below max_image_seq_len")
        for flag in ("use_dynamic_shifting", *_UNSUPPORTED_FLAGS):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"scheduler: {flag} = {getattr(self, flag)!r} must be true or "
                                 "false")

    def validate(self) -> None:
        self._check_types()
        if self.time_shift_type not in ("exponential", "linear"):
            raise ValueError(
                f"scheduler: time_shift_type {self.time_shift_type!r} is not supported"
            )
        for flag in _UNSUPPORTED_FLAGS:
            if getattr(self, flag):
                raise ValueError(f"scheduler: {flag}=true is not supported by qwen-edge")
        if self.num_train_timesteps <= 0:
            raise ValueError("scheduler: num_train_timesteps must be positive")

    def get(self, key: str) -> Any:
        v = getattr(self, key)
        return _PIPELINE_DEFAULTS[key] if v is None else v


# ModelTC/Qwen-Image-Lightning generate_with_diffusers.py: "We use shift=3 in distillation".
LIGHTNING = SchedulerConfig(
    num_train_timesteps=1000,
    shift=1.0,
    use_dynamic_shifting=True,
    base_shift=math.log(3),
    max_shift=math.log(3),
    base_image_seq_len=256,
    max_image_seq_len=8192,
    shift_terminal=None,
    time_shift_type="exponential",
)


def lightning(base: SchedulerConfig | None = None) -> SchedulerConfig:
    """The Lightning preset (mu = ln 3 at every resolution)."""
    return (
        LIGHTNING
        if base is None
        else replace(
            base,
            **{
                k: getattr(LIGHTNING, k)
                for k in (
                    "shift",
                    "use_dynamic_shifting",
                    "base_shift",
                    "max_shift",
                    "base_image_seq_len",
                    "max_image_seq_len",
                    "shift_terminal",
                    "time_shift_type",
                )
            },
        )
    )


def calculate_shift(
    image_seq_len: int, base_seq_len: int, max_seq_len: int, base_shift: float, max_shift: float
) -> float:
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    b = base_shift - m * base_seq_len
    return image_seq_len * m + b


def sigmas_for(cfg: SchedulerConfig, steps: int, image_seq_len: int) -> np.ndarray:
    """float32 (steps + 1,): QwenImagePipeline's `np.linspace(1, 1/steps, steps)` through
    `scheduler.set_timesteps(sigmas=..., mu=calculate_shift(...))`, terminal 0 appended."""
    if not 1 <= steps <= 1000:
        raise ValueError(f"steps must be in [1, 1000], got {steps}")
    s = np.linspace(1.0, 1.0 / steps, steps).astype(np.float32)
    if cfg.use_dynamic_shifting:
        mu = calculate_shift(
            image_seq_len,
            cfg.get("base_image_seq_len"),
            cfg.get("max_image_seq_len"),
            cfg.get("base_shift"),
            cfg.get("max_shift"),
        )
        # numpy float32 arrays with python-float operands stay float32 (NEP 50), as in diffusers
        if cfg.time_shift_type == "exponential":
            s = math.exp(mu) / (math.exp(mu) + (1 / s - 1) ** 1.0)
        else:
            s = mu / (mu + (1 / s - 1) ** 1.0)
    else:
        s = cfg.shift * s / (1 + (cfg.shift - 1) * s)
    if cfg.shift_terminal:
        one_minus = 1 - s
        if one_minus[-1] == 0:  # a single step at sigma 1: diffusers divides 0 by 0 here
            raise ValueError(f"steps={steps} is too few for shift_terminal={cfg.shift_terminal}")
        scale = one_minus[-1] / (1 - cfg.shift_terminal)
        s = 1 - (one_minus / scale)
    s = np.asarray(s, dtype=np.float32)
    return np.concatenate([s, np.zeros(1, np.float32)])


def timesteps_for(sigmas: np.ndarray, cfg: SchedulerConfig) -> np.ndarray:
    """The scheduler's timesteps (sigma * num_train_timesteps, fp32), without the terminal."""
    return (sigmas[:-1] * np.float32(cfg.num_train_timesteps)).astype(np.float32)
