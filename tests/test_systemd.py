"""The systemd unit and installer: `systemd-analyze verify`, the offline security score,
and install.sh run into a temporary prefix (--dry-run, and for real with a fake systemctl)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYSTEMD = ROOT / "systemd"
pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at an executable that exists here (verify checks it)."""
    exe = tmp_path / "bin" / "qwen-edge"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    text = (SYSTEMD / "qwen-edge.service").read_text()
    text = text.replace("/opt/qwen-edge/venv/bin/qwen-edge", str(exe))
    unit = tmp_path / "qwen-edge.service"
    unit.write_text(text)
    return unit


def test_unit_verifies(tmp_path):
    unit = unit_copy(tmp_path)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    # verify may warn about the missing user on a build machine; nothing else is allowed
    problems = [
        ln
        for ln in (r.stdout + r.stderr).splitlines()
        if ln.strip() and "qwen-edge" in ln and "user" not in ln.lower()
    ]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr
    for dropin in ("jetson.conf", "cpu-only.conf"):
        d = tmp_path / "qwen-edge.service.d"
        d.mkdir(exist_ok=True)
        shutil.copy(SYSTEMD / dropin, d / dropin)
        r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert r.returncode == 0, (dropin, r.stdout + r.stderr)
        (d / dropin).unlink()


def test_security_score_is_ok(tmp_path):
    unit = unit_copy(tmp_path)
    r = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True, text=True
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr
    assert float(m.group(1)) <= 2.5, r.stdout[-3000:]


def unit_keys(text: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for ln in text.splitlines():
        if "=" in ln and not ln.lstrip().startswith("#"):
            k, v = ln.split("=", 1)
            keys.setdefault(k.strip(), []).append(v.strip())
    return keys


def test_unit_has_the_required_settings():
    k = unit_keys((SYSTEMD / "qwen-edge.service").read_text())
    assert k["Type"] == ["notify"] and "WatchdogSec" in k and k["Restart"] == ["on-failure"]
    assert "StartLimitBurst" in k and k["User"] == ["qwen-edge"]
    for d in ("ConfigurationDirectory", "StateDirectory", "CacheDirectory", "RuntimeDirectory"):
        assert k[d] == ["qwen-edge"], d
    assert k["EnvironmentFile"][0].startswith("-")
    assert k["TimeoutStartSec"] == ["30min"] and int(k["TimeoutStopSec"][0]) > 30
    for h in (
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "RestrictAddressFamilies",
        "SystemCallFilter",
        "CapabilityBoundingSet",
    ):
        assert h in k, h
    j = unit_keys((SYSTEMD / "jetson.conf").read_text())
    assert j["SupplementaryGroups"] == ["video render"] and j["LimitMEMLOCK"] == ["infinity"]
    assert "OOMScoreAdjust" in j and any("nvmap" in v for v in j["DeviceAllow"])


def fake_path(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """PATH with a fake systemctl that logs its arguments."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    fake = bin_dir / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexit 0\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    return env, log


def test_install_dry_run_writes_nothing(tmp_path):
    env, _log = fake_path(tmp_path)
    prefix = tmp_path / "root"
    r = subprocess.run(
        [str(SYSTEMD / "install.sh"), "--prefix", str(prefix), "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "would write" in r.stdout and "qwen-edge.service" in r.stdout
    assert not (prefix / "etc" / "systemd").exists()


def test_install_into_prefix_and_uninstall(tmp_path):
    env, log = fake_path(tmp_path)
    env["PIP_NO_INDEX"] = "1"  # offline: `pip install --upgrade pip` is then a no-op
    prefix = tmp_path / "root"
    # --package with an already-satisfied requirement keeps the test fast: pip installs nothing
    args = [str(SYSTEMD / "install.sh"), "--prefix", str(prefix), "--package", "pip"]
    r = subprocess.run(args, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    unit = prefix / "etc/systemd/system/qwen-edge.service"
    assert unit.read_text() == (SYSTEMD / "qwen-edge.service").read_text()
    assert (prefix / "etc/systemd/system/qwen-edge.service.d/cpu-only.conf").exists()
    cfg = prefix / "etc/qwen-edge/config.toml"
    assert cfg.read_text() == (SYSTEMD / "config.toml.example").read_text()
    assert (prefix / "etc/qwen-edge/qwen-edge.env").exists()
    assert (prefix / "opt/qwen-edge/venv/bin/python").exists()
    assert "enable qwen-edge.service" in log.read_text()
    # idempotent, keeps an edited config, switches the drop-in
    cfg.write_text("# mine\n")
    r = subprocess.run([*args, "--jetson"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert cfg.read_text() == "# mine\n" and "keeping existing" in r.stdout
    assert (prefix / "etc/systemd/system/qwen-edge.service.d/jetson.conf").exists()
    assert not (prefix / "etc/systemd/system/qwen-edge.service.d/cpu-only.conf").exists()
    r = subprocess.run(
        [str(SYSTEMD / "install.sh"), "--prefix", str(prefix), "--uninstall"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert not unit.exists() and cfg.exists()


def test_install_refuses_missing_prerequisites(tmp_path):
    env = dict(os.environ, PATH="/nonexistent")
    r = subprocess.run(
        ["/bin/bash", str(SYSTEMD / "install.sh"), "--prefix", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode != 0 and "is required but not installed" in r.stderr
