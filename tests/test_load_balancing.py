"""The scaling-out example (examples/load_balancing): two local servers behind gRPC
client-side round_robin with health checking; a server that stops serving gets no requests."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from server_util import FakeModel, ServerThread, test_config

from edge_server._proto import imagegen_pb2 as pb
from edge_server._proto import imagegen_pb2_grpc as pb_grpc
from edge_server.server import NOT_SERVING, SERVICE_NAME

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "load_balancing" / "client.py"


def load_example():
    spec = importlib.util.spec_from_file_location("lb_client", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def names(stub, n):
    return [
        stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5, wait_for_ready=True).name
        for _ in range(n)
    ]


def test_round_robin_with_health_checking():
    lb = load_example()
    a = ServerThread(test_config(model={"path": "/models/a", "name": "server-a"}), FakeModel())
    b = ServerThread(test_config(model={"path": "/models/b", "name": "server-b"}), FakeModel())
    with a, b:
        target = lb.target_for(f"{a.address},{b.address}")
        with lb.channel(target) as ch:
            stub = pb_grpc.ImageGenerationStub(ch)
            seen = names(stub, 8)
            assert set(seen) == {"server-a", "server-b"}, seen
            assert abs(seen.count("server-a") - seen.count("server-b")) <= 2
            # generation requests are spread too
            for i in range(4):
                req = pb.GenerateRequest(prompt="x", width=64, height=64, seed=i)
                kinds = [e.WhichOneof("event") for e in stub.Generate(req, timeout=30)]
                assert kinds[-1] == "done"
            # server b stops serving (as while draining or loading): traffic moves to a
            b.call(b.server.health.set(SERVICE_NAME, NOT_SERVING))
            deadline = time.time() + 10
            while time.time() < deadline:
                if set(names(stub, 4)) == {"server-a"}:
                    break
                time.sleep(0.2)
            assert set(names(stub, 6)) == {"server-a"}
