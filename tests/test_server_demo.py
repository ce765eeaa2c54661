"""End to end with the real engine and the demo model (tiny random weights, noise images):
an in-process server, and `qwen-edge serve` / `qwen-edge generate` as subprocesses."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from server_util import (
    FakeNotifySocket,
    ServerThread,
    bad_requests,
    event_kinds,
    make_pki,
    status_details,
)

import edge_server
from edge_server._proto import imagegen_pb2 as pb
from edge_server._proto import imagegen_pb2_grpc as pb_grpc
from edge_server.config import Config, GenerationConfig, ModelConfig, ServerConfig
from edge_server.server import model_loader
from edge_server.service import SERVICE_NAME

demo = pytest.importorskip("edge_server.demo")
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory) -> Path:
    return Path(demo.write_demo_model(tmp_path_factory.mktemp("demo") / "demo-model"))


@pytest.fixture(scope="module")
def reference(demo_model):
    return edge_server.load_model(demo_model)


def demo_config(path: Path, **server) -> Config:
    return Config(
        model=ModelConfig(path=str(path)),
        server=ServerConfig(**{"listen": ("127.0.0.1:0",), "grace_s": 5.0, **server}),
        generation=GenerationConfig(default_width=64, default_height=64),
    ).validate()


def slow(loader, seconds: float):
    """The real loader, started late (the demo model loads in milliseconds)."""

    def load(progress):
        time.sleep(seconds)
        return loader(progress)

    return load


def test_in_process_event_order_and_exact_image(demo_model, reference):
    with ServerThread(demo_config(demo_model)).start() as st, \
            grpc.insecure_channel(st.address) as ch:
        stub = pb_grpc.ImageGenerationStub(ch)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        assert {c.name for c in info.components if c.present} >= {
            "transformer", "vae", "text_encoder", "tokenizer"}
        assert info.default_steps == reference.default_steps and info.isa == reference.isa
        rs = list(stub.Generate(pb.GenerateRequest(
            prompt="a small red boat", seed=1234, steps=3, num_images=2,
            preview=pb.PreviewOptions(format=pb.PREVIEW_FORMAT_JPEG)), timeout=60))
        kinds = event_kinds(rs)
        assert kinds[:2] == ["queued", "started"] and kinds[2:8] == ["step"] * 6
        assert set(kinds[8:-1]) == {"image_chunk"} and kinds[-1] == "done"
        assert [(r.step.image_index, r.step.step) for r in rs[2:8]] == [
            (0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]
        assert any(r.step.preview_image for r in rs[2:8])
        done = rs[-1].done
        assert list(done.seeds) == [1234, 1235]
        assert done.timings.prompt_encode_ms > 0 and done.timings.vae_decode_ms > 0
        want = reference.generate("a small red boat", width=64, height=64, steps=3, seed=1234,
                                  num_images=2)
        for i in range(2):
            data = b"".join(r.image_chunk.data for r in rs
                            if r.HasField("image_chunk") and r.image_chunk.image_index == i)
            got = Image.open(io.BytesIO(data))
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want.images[i]))


def test_no_model_path_serves_the_demo_model(tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN_EDGE_DEMO_DIR", str(tmp_path / "cache" / "demo-model"))
    cfg = Config(server=ServerConfig(listen=("127.0.0.1:0",))).validate()
    with ServerThread(cfg).start() as st, grpc.insecure_channel(st.address) as ch:
        info = pb_grpc.ImageGenerationStub(ch).GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        assert info.name == "demo" and info.path == str(tmp_path / "cache" / "demo-model")
    assert (tmp_path / "cache" / "demo-model" / "model_index.json").exists()


def test_real_engine_cancel_frees_it_within_a_block(demo_model):
    with ServerThread(demo_config(demo_model)).start() as st, \
            grpc.insecure_channel(st.address) as ch:
        stub = pb_grpc.ImageGenerationStub(ch)
        long = stub.Generate(pb.GenerateRequest(prompt="x", width=1024, height=1024, steps=100),
                             timeout=120)
        for m in long:
            if m.HasField("step"):
                break
        nxt = stub.Generate(pb.GenerateRequest(prompt="y", steps=1), timeout=60)
        assert next(nxt).queued.position == 1
        t0 = time.perf_counter()
        long.cancel()
        started = next(nxt)
        dt = time.perf_counter() - t0
        assert started.HasField("started")
        assert dt < 0.5, f"the engine took {dt:.3f} s to stop"
        assert list(nxt)[-1].HasField("done")


def test_validation_overload_and_deadline(demo_model):
    cfg = demo_config(demo_model, max_queue=1).replace(generation={"max_prompt_chars": 300})
    with ServerThread(cfg).start() as st, grpc.insecure_channel(st.address) as ch:
        stub = pb_grpc.ImageGenerationStub(ch)
        lim = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).limits
        for name, fields, field in bad_requests(lim, 300):
            with pytest.raises(grpc.RpcError) as ei:
                list(stub.Generate(pb.GenerateRequest(**{"prompt": "ok", **fields}), timeout=10))
            assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
            (bad,) = [d for d in status_details(ei.value) if d.DESCRIPTOR.name == "BadRequest"]
            assert field in {v.field for v in bad.field_violations}, name
        big = pb.GenerateRequest(prompt="x", width=1024, height=1024, steps=100)
        a = stub.Generate(big, timeout=60)
        next(a)
        b = stub.Generate(pb.GenerateRequest(prompt="y", steps=1), timeout=60)
        assert next(b).queued.position == 1
        c = stub.Generate(pb.GenerateRequest(prompt="z", steps=1), timeout=60)
        with pytest.raises(grpc.RpcError) as ei:
            next(c)
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        a.cancel()
        assert list(b)[-1].HasField("done")
        # a deadline in the middle of a generation frees the engine for the next request
        t0 = time.perf_counter()
        with pytest.raises(grpc.RpcError) as ei:
            list(stub.Generate(big, timeout=0.5))
        assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        rs = list(stub.Generate(pb.GenerateRequest(prompt="after", steps=1), timeout=10))
        assert rs[-1].HasField("done")
        assert rs[1].started.queue_ms < 300  # at most the tail of one block of the old one
        assert time.perf_counter() - t0 < 2.0


def test_health_during_load_and_security(demo_model, tmp_path):
    pki = make_pki(tmp_path)
    sock = tmp_path / "g.sock"
    cfg = demo_config(demo_model, listen=(f"unix:{sock}", "127.0.0.1:0")).replace(
        tls={"cert_file": str(pki["server_cert"]), "key_file": str(pki["server_key"]),
             "client_ca_file": str(pki["ca"]), "require_client_auth": True},
        auth={"tokens": ("demo-token",)})
    st = ServerThread(cfg, loader=slow(model_loader(cfg), 0.8)).start(wait_loaded=False)
    try:
        with grpc.insecure_channel(f"unix:{sock}") as ch:
            hs = health_pb2_grpc.HealthStub(ch)
            r = hs.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
            assert r.status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch = hs.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=30)
            for r in watch:
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    watch.cancel()
                    break
            stub = pb_grpc.ImageGenerationStub(ch)
            with pytest.raises(grpc.RpcError) as ei:
                list(stub.Generate(pb.GenerateRequest(prompt="x"), timeout=10))
            assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
            md = [("authorization", "Bearer demo-token")]
            assert list(stub.Generate(pb.GenerateRequest(prompt="x", steps=1), timeout=10,
                                      metadata=md))[-1].HasField("done")
        port = st.server.ports["127.0.0.1:0"]

        def tls(client_cert: bool) -> grpc.Channel:
            creds = grpc.ssl_channel_credentials(
                pki["ca"].read_bytes(),
                pki["client_key"].read_bytes() if client_cert else None,
                pki["client_cert"].read_bytes() if client_cert else None)
            creds = grpc.composite_channel_credentials(
                creds, grpc.access_token_call_credentials("demo-token"))
            return grpc.secure_channel(f"localhost:{port}", creds)

        with tls(True) as ch:
            rs = list(pb_grpc.ImageGenerationStub(ch).Generate(
                pb.GenerateRequest(prompt="x", steps=1), timeout=10))
            assert rs[-1].HasField("done")
        with tls(False) as ch, pytest.raises(grpc.RpcError) as ei:
            list(pb_grpc.ImageGenerationStub(ch).Generate(
                pb.GenerateRequest(prompt="x", steps=1), timeout=10))
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        st.stop(grace=0)


def test_the_python_example_client_saves_the_engine_image(demo_model, reference, tmp_path):
    example = Path(__file__).resolve().parents[1] / "examples" / "python_client.py"
    with ServerThread(demo_config(demo_model)).start() as st:
        run = subprocess.run(
            [sys.executable, str(example), "a quiet harbour", "--server", st.address,
             "--out", str(tmp_path / "image.png"), "--previews", str(tmp_path / "previews"),
             "--steps", "2", "--seed", "5"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "step 2/2" in run.stdout and "saved" in run.stdout and "done in" in run.stdout
    want = reference.generate("a quiet harbour", width=64, height=64, steps=2, seed=5)
    got = Image.open(tmp_path / "image.png")
    np.testing.assert_array_equal(np.asarray(got.convert("RGB")), np.asarray(want.images[0]))
    assert list((tmp_path / "previews").glob("step*.jpg"))


def _serve(demo_model: Path, sock: Path, notify: FakeNotifySocket, *extra: str):
    env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="200000",
               PYTHONUNBUFFERED="1")
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen(
        [sys.executable, "-m", "edge_server", "serve", str(demo_model), "--listen",
         f"unix:{sock}", "--set", "generation.default_width=64",
         "--set", "generation.default_height=64", *extra],
        cwd=sock.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 20) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError("server did not exit:\n" + out) from None
    return out


def test_subprocess_serve_generate_and_sigterm_drain(demo_model, reference, tmp_path):
    sock = tmp_path / "grpc.sock"
    notify = FakeNotifySocket()
    proc = _serve(demo_model, sock, notify)
    try:
        notify.wait_for(lambda m: m.startswith("READY=1"), timeout=30)
        out = tmp_path / "out" / "boat.png"
        cli = subprocess.run(
            [sys.executable, "-m", "edge_server", "generate", "a small red boat", "--server",
             f"unix:{sock}", "-o", str(out), "--seed", "77", "--steps", "3", "--previews",
             str(tmp_path / "previews"), "--timeout", "60"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert "step 3/3" in cli.stderr and "seed 77" in cli.stderr
        img = Image.open(out)
        assert img.text["prompt"] == "a small red boat" and img.text["seed"] == "77"
        assert img.text["steps"] == "3" and img.text["model"] == "demo-model"
        want = reference.generate("a small red boat", width=64, height=64, steps=3, seed=77)
        np.testing.assert_array_equal(np.asarray(img.convert("RGB")), np.asarray(want.images[0]))
        assert list((tmp_path / "previews").glob("img0-step*.jpg"))

        # SIGTERM while a generation runs: NOT_SERVING, the running one finishes, clean exit
        with grpc.insecure_channel(f"unix:{sock}") as ch:
            stub = pb_grpc.ImageGenerationStub(ch)
            # long enough (about 3 s here) to still run through the checks below: when it
            # ended before them, the late request raced the server's exit on this channel
            call = stub.Generate(pb.GenerateRequest(prompt="x", width=1024, height=1024,
                                                    steps=40), timeout=60)
            for m in call:
                if m.HasField("step"):
                    break
            t_step = time.monotonic()
            time.sleep(0.35)
            proc.send_signal(signal.SIGTERM)
            notify.wait_for(lambda m: m.startswith("STOPPING=1"), timeout=10)
            h = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
            assert h.status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.RpcError) as ei:
                list(stub.Generate(pb.GenerateRequest(prompt="late"), timeout=5))
            assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
            rest = list(call)
            assert rest[-1].HasField("done")
            t_done = time.monotonic()
        pings = [t for t, m in notify.received if m == "WATCHDOG=1" and t_step <= t <= t_done]
        assert len(pings) >= 2, "no WATCHDOG=1 while the engine was busy"
        log = _finish(proc)
        assert proc.returncode == 0, log
        assert "draining" in log and "stopped" in log
        assert re.search(r"draining grace_s=\S+ running=1", log), log  # the premise: it ran
        assert not sock.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


@contextlib.contextmanager
def _served(demo_model: Path, sock: Path, *extra: str):
    """(server process, fake notify socket) once READY=1; killed if it is still up after."""
    notify = FakeNotifySocket()
    proc = _serve(demo_model, sock, notify, *extra)
    try:
        notify.wait_for(lambda m: m.startswith("READY=1"), timeout=30)
        yield proc, notify
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


def _long_run_at_its_first_step(stub: pb_grpc.ImageGenerationStub):
    call = stub.Generate(pb.GenerateRequest(prompt="x", width=1024, height=1024, steps=100),
                         timeout=60)
    for m in call:
        if m.HasField("step"):
            break
    return call


def test_subprocess_sigint_drains_and_a_second_signal_cancels(demo_model, tmp_path):
    """Ctrl-C drains like SIGTERM (the running generation goes on, health NOT_SERVING); a
    second one cancels it at once (UNAVAILABLE) and the server still exits cleanly."""
    sock = tmp_path / "i.sock"
    with _served(demo_model, sock) as (proc, notify):  # the default grace: 30 s
        with grpc.insecure_channel(f"unix:{sock}") as ch:
            stub = pb_grpc.ImageGenerationStub(ch)
            call = _long_run_at_its_first_step(stub)
            proc.send_signal(signal.SIGINT)
            notify.wait_for(lambda m: m.startswith("STOPPING=1"), timeout=10)
            h = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
            assert h.status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert next(call).HasField("step")  # still running
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            with pytest.raises(grpc.RpcError) as ei:
                list(call)
            assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - t0 < 5
        log = _finish(proc)
        assert proc.returncode == 0, log
        assert "signal=SIGINT" in log and "second signal" in log
        assert not sock.exists()


def test_subprocess_grace_expiry_cancels_and_bad_config_exits_2(demo_model, tmp_path):
    sock = tmp_path / "g.sock"
    with _served(demo_model, sock, "--grace", "0.2") as (proc, _notify):
        with grpc.insecure_channel(f"unix:{sock}") as ch:
            stub = pb_grpc.ImageGenerationStub(ch)
            call = _long_run_at_its_first_step(stub)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(grpc.RpcError) as ei:
                list(call)
            assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
        _finish(proc)
        assert proc.returncode == 0 and time.monotonic() - t0 < 8
    bad = subprocess.run([sys.executable, "-m", "edge_server", "serve", str(demo_model),
                          "--listen", "0.0.0.0:0", "--max-queue", "-3"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "server.max_queue" in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "edge_server", "serve",
                              str(tmp_path / "nope"), "--listen", f"unix:{tmp_path}/x.sock"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1 and "model load failed" in missing.stderr
