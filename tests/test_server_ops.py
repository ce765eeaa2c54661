"""Operations: the systemd notify protocol, the watchdog during a long generation, Prometheus
metrics, reflection and structured logs."""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import socket
import time
import urllib.request

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from server_util import FakeModel, FakeNotifySocket, ServerThread, test_config

from edge_server._proto import imagegen_pb2 as pb
from edge_server._proto import imagegen_pb2_grpc as pb_grpc
from edge_server.notify import Notifier
from edge_server.server import JsonFormatter, KeyValueFormatter, configure_logging
from edge_server.service import SERVICE_NAME

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def notify_socket():
    s = FakeNotifySocket()
    yield s
    s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_notifier_from_env(notify_socket):
    n = Notifier.from_env({"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "3000000",
                           "WATCHDOG_PID": str(os.getpid())})
    assert n.enabled and n.watchdog_interval() == 1.5
    assert Notifier.from_env({"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "3000000",
                              "WATCHDOG_PID": "1"}).watchdog_interval() is None  # not ours
    assert n.ready("ready: 0 running")
    assert n.status("multi\nline   status")
    assert notify_socket.wait_for(lambda m: m.startswith("READY=1"))
    assert notify_socket.wait_for(lambda m: m == "STATUS=multi line status")
    off = Notifier.from_env({})
    assert not off.enabled and not off.ready() and off.watchdog_interval() is None
    n.close()


def test_notifier_abstract_namespace_and_dead_socket(tmp_path):
    name = f"qwen-edge-test-{os.getpid()}-{time.monotonic_ns()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(2)
    try:
        n = Notifier("@" + name)
        assert n.watchdog()
        assert s.recv(100) == b"WATCHDOG=1"
    finally:
        s.close()
    gone = Notifier(str(tmp_path / "nobody.sock"))
    assert gone.stopping() is False  # logged, never raised
    assert Notifier("vsock:2:1234").enabled is False


def test_notify_lifecycle_and_watchdog_during_a_long_generation(notify_socket):
    model = FakeModel(step_s=0.1, load_s=0.3)
    notifier = Notifier(notify_socket.path, watchdog_usec=200_000)  # ping every 0.1 s
    st = ServerThread(test_config(), model, notifier=notifier).start()
    try:
        ready = notify_socket.wait_for(lambda m: m.startswith("READY=1"))
        assert "STATUS=ready: 0 running, 0 queued" in ready
        msgs = notify_socket.messages
        i_ready = msgs.index(ready)
        assert any(m.startswith("STATUS=loading") for m in msgs[:i_ready])
        assert any("EXTEND_TIMEOUT_USEC=" in m for m in msgs[:i_ready])
        with grpc.insecure_channel(st.address) as ch:
            stub = pb_grpc.ImageGenerationStub(ch)
            call = stub.Generate(pb.GenerateRequest(prompt="x", width=64, height=64, steps=12),
                                 timeout=20)
            next(call)
            t0 = time.monotonic()
            notify_socket.wait_for(lambda m: m == "STATUS=ready: 1 running, 0 queued")
            rs = list(call)
            t1 = time.monotonic()
        assert rs[-1].HasField("done") and t1 - t0 > 1.0
        pings = [t for t, m in notify_socket.received if m == "WATCHDOG=1" and t0 <= t <= t1]
        assert len(pings) >= int((t1 - t0) / 0.1) - 2, (len(pings), t1 - t0)
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) < 0.5  # the loop kept pinging while the engine worked
        notify_socket.wait_for(lambda m: m == "STATUS=ready: 0 running, 0 queued")
    finally:
        st.stop(grace=1.0)
    stopping = notify_socket.wait_for(lambda m: m.startswith("STOPPING=1"))
    assert "STATUS=draining" in stopping


def test_metrics_endpoint():
    port = free_port()
    cfg = test_config(metrics={"port": port})
    with ServerThread(cfg, FakeModel(step_s=0.001)) as st, grpc.insecure_channel(st.address) as ch:
        stub = pb_grpc.ImageGenerationStub(ch)
        events = list(stub.Generate(pb.GenerateRequest(prompt="x", width=64, height=64, steps=3,
                                                       preview=pb.PreviewOptions(format=1)),
                                    timeout=10))
        with pytest.raises(grpc.RpcError):
            list(stub.Generate(pb.GenerateRequest(prompt=""), timeout=10))
        assert st.server.metrics_port == port
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in ('qwen_edge_generations_total{outcome="ok"} 1.0',
                 'qwen_edge_generations_total{outcome="invalid"} 1.0',
                 "qwen_edge_queue_depth 0.0", "qwen_edge_in_flight 0.0",
                 "qwen_edge_model_loaded 1.0",
                 'qwen_edge_stage_seconds_count{stage="step"} 3.0',
                 'qwen_edge_stage_seconds_count{stage="total"} 1.0'):
        assert line in body, line
    values = {ln.split()[0]: float(ln.split()[1]) for ln in body.splitlines()
              if ln.startswith("qwen_edge_") and " " in ln}
    # byte counters: counted as each message is built (service._response, _responses)
    previews = [e.step.preview_image for e in events if e.step.preview_image]
    image = sum(len(e.image_chunk.data) for e in events if e.HasField("image_chunk"))
    assert previews and events[-1].done.previews_sent == len(previews)
    assert values['qwen_edge_previews_total{result="sent"}'] == len(previews)
    assert values["qwen_edge_preview_bytes_total"] == sum(len(p) for p in previews)
    assert values["qwen_edge_image_bytes_total"] == image > 0


def test_reflection_lists_the_services():
    with ServerThread(test_config(), FakeModel()) as st, grpc.insecure_channel(st.address) as ch:
        db = ProtoReflectionDescriptorDatabase(ch)
        services = db.get_services()
        assert SERVICE_NAME == "qwen_edge.v1.ImageGeneration"
        assert SERVICE_NAME in services and "grpc.health.v1.Health" in services
        from google.protobuf.descriptor_pool import DescriptorPool

        pool = DescriptorPool(db)
        svc = pool.FindServiceByName(SERVICE_NAME)
        assert {m.name for m in svc.methods} == {"Generate", "GetModelInfo"}
        req = pool.FindMessageTypeByName("qwen_edge.v1.GenerateRequest")
        assert {"prompt", "seed", "preview", "output_format"} <= set(req.fields_by_name)
    cfg = test_config(server={"reflection": False})
    with ServerThread(cfg, FakeModel()) as st, grpc.insecure_channel(st.address) as ch:
        with pytest.raises(grpc.RpcError) as ei:
            ProtoReflectionDescriptorDatabase(ch).get_services()
        assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED


def _record(msg: str, **kv) -> logging.LogRecord:
    r = logging.LogRecord("edge_server.service", logging.WARNING, __file__, 1, msg, (), None)
    r.kv = kv
    return r


def test_log_formats():
    line = KeyValueFormatter().format(_record("generate finished", request_id="r1",
                                              peer="ipv4:127.0.0.1:5", note="two words"))
    assert " WARNING edge_server.service: generate finished request_id=r1 " in line
    assert 'note="two words"' in line and line.split()[0].endswith("Z")
    assert KeyValueFormatter(syslog_prefix=True).format(_record("x")).startswith("<4>")
    obj = json.loads(JsonFormatter().format(_record("hello", outcome="ok", ms=1.5)))
    assert obj["level"] == "warning" and obj["msg"] == "hello" and obj["outcome"] == "ok"
    buf = io.StringIO()
    root = logging.getLogger()
    old = root.level
    try:
        configure_logging("info", "json", stream=buf)
        logging.getLogger("edge_server.test").info("hi", extra={"kv": {"a": 1}})
        assert json.loads(buf.getvalue().splitlines()[-1])["a"] == 1
    finally:
        for h in list(root.handlers):
            if getattr(h, "_qwen_edge", False):
                root.removeHandler(h)
        root.setLevel(old)


def test_health_watchers_never_lock_clients_out(monkeypatch):
    """Long-lived Watch streams (one per channel with client-side health checking) must not
    use up an RPC limit that Generate needs: more than the old backstop of 64 are open here,
    and the watchers themselves are capped with RESOURCE_EXHAUSTED."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    import edge_server.server as server_mod

    monkeypatch.setattr(server_mod, "MAX_HEALTH_WATCHERS", 80)
    with ServerThread(test_config(), FakeModel(step_s=0.001)) as st, \
            grpc.insecure_channel(st.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        watches = [health.Watch(health_pb2.HealthCheckRequest()) for _ in range(80)]
        try:
            for w in watches:
                assert next(w).status == health_pb2.HealthCheckResponse.SERVING
            extra = health.Watch(health_pb2.HealthCheckRequest())
            with pytest.raises(grpc.RpcError) as ei:
                next(extra)
            assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "health watchers" in ei.value.details()
            stub = pb_grpc.ImageGenerationStub(ch)
            assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5).name
            events = list(stub.Generate(pb.GenerateRequest(prompt="x", width=64, height=64),
                                        timeout=10))
            assert events[-1].HasField("done")
        finally:
            for w in watches:
                w.cancel()
