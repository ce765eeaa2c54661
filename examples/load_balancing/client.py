#!/usr/bin/env python3
"""A load-balanced qwen-edge client: gRPC client-side round_robin over several servers with
health checking (a server that reports NOT_SERVING, e.g. while loading or draining, gets no
new requests), retries for UNAVAILABLE, and a deadline per request.

    qwen-edge serve --listen 127.0.0.1:50051 &
    qwen-edge serve --listen 127.0.0.1:50052 &
    python examples/load_balancing/client.py "a harbor at dawn" \\
        --servers 127.0.0.1:50051,127.0.0.1:50052 -n 4

With DNS (one name, several A records) use --target dns:///image-servers.local:50051
instead of --servers; round_robin then spreads over every address the name resolves to.
"""

from __future__ import annotations

import argparse
import json

import grpc

from edge_server._proto import imagegen_pb2 as pb
from edge_server._proto import imagegen_pb2_grpc as pb_grpc

SERVICE = "qwen_edge.v1.ImageGeneration"

# gRPC service config: round_robin + client-side health checking + retries of UNAVAILABLE
# (a server that is draining answers UNAVAILABLE to new work; another one takes it).
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": SERVICE},
    "methodConfig": [
        {
            "name": [{"service": SERVICE}],
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.2s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}


def channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
            ("grpc.enable_retries", 1),
        ],
    )


def target_for(servers: str) -> str:
    """ "a:1,b:2" -> "ipv4:a:1,b:2" (gRPC's static address list)."""
    return "ipv4:" + servers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prompt")
    ap.add_argument("--servers", default="127.0.0.1:50051,127.0.0.1:50052")
    ap.add_argument("--target", help="a full gRPC target (e.g. dns:///name:port) instead")
    ap.add_argument("-n", type=int, default=2, help="generations to run")
    ap.add_argument("--size", default="256x256")
    ap.add_argument("--timeout", type=float, default=600.0, help="deadline per request (s)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    with channel(args.target or target_for(args.servers)) as ch:
        stub = pb_grpc.ImageGenerationStub(ch)
        for i in range(args.n):
            req = pb.GenerateRequest(
                prompt=args.prompt, width=w, height=h, seed=i, output_format=pb.IMAGE_FORMAT_PNG
            )
            data = bytearray()
            for ev in stub.Generate(req, timeout=args.timeout, wait_for_ready=True):
                if ev.WhichOneof("event") == "image_chunk":
                    data += ev.image_chunk.data
            path = f"lb_{i}.png"
            with open(path, "wb") as f:
                f.write(data)
            print(f"{path}: {len(data)} bytes")


if __name__ == "__main__":
    main()
