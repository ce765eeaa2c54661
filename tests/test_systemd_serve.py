"""`qwen-edge serve` run the way systemd runs it (issue: on-device daemon): the installed
config template with the socket in $RUNTIME_DIRECTORY, the demo model written under
$CACHE_DIRECTORY, a fake NOTIFY_SOCKET and WATCHDOG_USEC, then SIGTERM. Checks READY only after
load, WATCHDOG=1 at half of WATCHDOG_USEC during a long generation, STOPPING=1 and exit 0."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from server_util import FakeNotifySocket

from edge_server._proto import imagegen_pb2 as pb
from edge_server._proto import imagegen_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
WATCHDOG_USEC = 600_000  # systemd's WatchdogSec=0.6 -> pings expected every 0.3 s


def test_serve_like_systemd(tmp_path):
    runtime, cache, conf = tmp_path / "run", tmp_path / "cache", tmp_path / "etc"
    for d in (runtime, cache, conf):
        d.mkdir()
    template = (ROOT / "systemd" / "config.toml.example").read_text()
    assert 'listen = ["unix:/run/qwen-edge/qwen-edge.sock"]' in template
    (conf / "config.toml").write_text(
        template.replace(
            "unix:/run/qwen-edge/qwen-edge.sock", "unix:${RUNTIME_DIRECTORY}/qwen-edge.sock"
        )
    )
    notify = FakeNotifySocket()
    env = dict(
        os.environ,
        NOTIFY_SOCKET=notify.path,
        WATCHDOG_USEC=str(WATCHDOG_USEC),
        RUNTIME_DIRECTORY=str(runtime),
        CACHE_DIRECTORY=str(cache),
        STATE_DIRECTORY=str(tmp_path),
        PYTHONUNBUFFERED="1",
    )
    for k in ("WATCHDOG_PID", "QWEN_EDGE_DEMO_DIR", "QWEN_EDGE_CONFIG"):
        env.pop(k, None)
    t_start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_server", "serve", "--config", str(conf / "config.toml")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sock = runtime / "qwen-edge.sock"
    try:
        notify.wait_for(lambda m: m.startswith("READY=1"), timeout=60)
        t_ready = next(t for t, m in notify.received if m.startswith("READY=1"))
        # READY comes after the model has loaded (status lines about loading come first)
        before = [m for t, m in notify.received if t < t_ready]
        assert any(m.startswith("STATUS=") for m in before), before
        assert (cache / "qwen-edge" / "demo-model" / "model_index.json").exists()
        assert sock.exists() and oct(sock.stat().st_mode & 0o777) == "0o660"

        with grpc.insecure_channel(f"unix:{sock}") as ch:
            stub = pb_grpc.ImageGenerationStub(ch)
            req = pb.GenerateRequest(prompt="a long one", width=1024, height=1024, steps=32)
            t0 = time.monotonic()
            events = list(stub.Generate(req, timeout=120))
            t1 = time.monotonic()
            assert events[-1].HasField("done")
        busy = t1 - t0
        pings = [t for t, m in notify.received if m == "WATCHDOG=1" and t0 <= t <= t1]
        half = WATCHDOG_USEC / 2e6
        assert busy > 2 * half, f"generation too short ({busy:.2f} s) to observe the watchdog"
        assert len(pings) >= int(busy / half) - 1, (len(pings), busy)
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) < 2 * half, f"watchdog gap {max(gaps):.2f} s > WatchdogSec/2 x 2"

        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert any("STOPPING=1" in m.split("\n") for m in notify.messages), notify.messages
        assert not sock.exists()
        assert time.monotonic() - t_start < 120
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
