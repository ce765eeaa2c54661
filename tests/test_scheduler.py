"""Sigma schedules against diffusers' FlowMatchEulerDiscreteScheduler (bit-exact float32) for
the Qwen-Image base config, the Lightning preset and other shift settings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_server import _engine
from edge_server.scheduler import LIGHTNING, SchedulerConfig, calculate_shift, sigmas_for

QWEN_BASE = {  # Qwen/Qwen-Image scheduler/scheduler_config.json
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 0.9,
    "base_image_seq_len": 256,
    "max_image_seq_len": 8192,
    "shift_terminal": 0.02,
    "time_shift_type": "exponential",
}


def test_lightning_schedules_match_the_published_tables():
    assert sigmas_for(LIGHTNING, 4, 4096).tolist() == pytest.approx(
        [1.0, 0.9, 0.75, 0.5, 0.0], abs=1e-7
    )
    s8 = sigmas_for(LIGHTNING, 8, 1024)
    ref8 = [1.0, 0.9545455, 0.9, 0.8333334, 0.75, 0.6428571, 0.5, 0.3, 0.0]
    assert s8.tolist() == pytest.approx(ref8, abs=2e-7)


def diffusers_sigmas(config: dict, steps: int, seq_len: int) -> np.ndarray:
    diffusers = pytest.importorskip("diffusers")
    sch = diffusers.FlowMatchEulerDiscreteScheduler(**config)
    mu = calculate_shift(
        seq_len,
        sch.config.get("base_image_seq_len", 256),
        sch.config.get("max_image_seq_len", 4096),
        sch.config.get("base_shift", 0.5),
        sch.config.get("max_shift", 1.15),
    )
    sch.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    return sch.sigmas.numpy()


@pytest.mark.parametrize("name", ["qwen_base", "lightning", "static_shift3", "linear", "defaults"])
@pytest.mark.parametrize("steps", [1, 2, 4, 8, 50])
@pytest.mark.parametrize("seq_len", [64, 1024, 4096, 6889])
def test_bit_exact_against_diffusers(name, steps, seq_len):
    config = {
        "qwen_base": QWEN_BASE,
        "lightning": {k: getattr(LIGHTNING, k) for k in LIGHTNING.__dataclass_fields__},
        "static_shift3": {"shift": 3.0},
        "linear": {**QWEN_BASE, "time_shift_type": "linear", "shift_terminal": None},
        "defaults": {},
    }[name]
    cfg = SchedulerConfig.from_dict(config)
    if steps == 1 and cfg.shift_terminal:
        with pytest.raises(ValueError, match="too few"):
            sigmas_for(cfg, steps, seq_len)
        return
    ref = diffusers_sigmas(config, steps, seq_len)
    ours = sigmas_for(cfg, steps, seq_len)
    np.testing.assert_array_equal(ours, ref)


def test_base_model_first_and_last_sigmas():
    s = sigmas_for(SchedulerConfig.from_dict(QWEN_BASE), 50, 4096)
    assert s[-2] == pytest.approx(0.02, abs=1e-7) and s[0] == 1.0 and s[-1] == 0.0
    assert math.isclose(calculate_shift(4096, 256, 8192, 0.5, 0.9), 0.693548, rel_tol=1e-5)


def test_rejects_unsupported():
    with pytest.raises(ValueError, match="use_karras_sigmas"):
        SchedulerConfig.from_dict({"use_karras_sigmas": True})
    with pytest.raises(ValueError, match="steps"):
        sigmas_for(LIGHTNING, 0, 1024)


def test_randn_is_a_stable_counter_based_stream():
    a = _engine.randn(2024, (4, 16))
    b = np.concatenate([_engine.randn(2024, (7,)), _engine.randn(2024, (57,), offset=7)])
    np.testing.assert_array_equal(a.ravel(), b)
    # pinned values: changing the generator changes every seeded image, so it must be deliberate
    np.testing.assert_allclose(
        _engine.randn(0, (4,)), [0.9911377, -0.9246626, -0.61760896, -0.4820686], rtol=0, atol=1e-6
    )
    # on a runtime's threads (what the pipeline uses): the same numbers, bit for bit
    for threads in (1, 2, 3):
        rt = _engine.Runtime(None, threads)
        for shape, off in (((16, 40, 40), 0), ((8193,), 5), ((3,), 8190), ((0,), 0)):
            np.testing.assert_array_equal(_engine.randn(9, shape, off, runtime=rt),
                                          _engine.randn(9, shape, off))
