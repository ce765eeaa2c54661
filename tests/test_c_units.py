"""Builds and runs the C unit tests (tests/c, ctest) so the one test command covers them:
every kernel on every ISA this CPU runs against the scalar specification, the loaders'
robustness cases and the core (thread pool, arena, dtype conversion)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str | None:
    return shutil.which(name)


@pytest.mark.skipif(_tool("cmake") is None, reason="cmake not installed (pip install cmake)")
def test_c_unit_tests_pass():
    build = Path(os.environ.get("ENG_CTEST_BUILD", ROOT / "build" / "ctest"))
    gen = ["-G", "Ninja"] if _tool("ninja") else []
    cfg = [
        "cmake",
        "-S",
        str(ROOT),
        "-B",
        str(build),
        *gen,
        "-DENG_PYTHON=OFF",
        "-DENG_BUILD_TESTS=ON",
        "-DCMAKE_BUILD_TYPE=Release",
    ]
    subprocess.run(cfg, check=True, capture_output=True)
    r = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    r = subprocess.run(
        ["ctest", "--test-dir", str(build), "--output-on-failure"], capture_output=True, text=True
    )
    print(r.stdout[-3000:])
    assert r.returncode == 0, r.stdout[-6000:]
    assert re.search(r"100% tests passed(, 0 tests failed)? out of \d+", r.stdout), r.stdout[-2000:]
