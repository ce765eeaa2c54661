#!/usr/bin/env python3
"""Regenerate the committed Python gRPC code in edge_server/_proto from protos/.

    pip install grpcio-tools==1.85.1 && python protos/generate.py [--out DIR]

The proto lives at protos/edge_server/_proto/imagegen.proto and is compiled with -Iprotos, so
the generated imagegen_pb2_grpc.py imports `edge_server._proto.imagegen_pb2` with no import
rewriting. The generated files check their protobuf / grpcio runtime at import, so the floors in
pyproject.toml (`grpcio>=`, `protobuf>=`) must equal the versions printed here; the freshness test
(tests/test_server_protos.py) regenerates into a temporary folder and compares byte for byte.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

GRPCIO_TOOLS = "1.85.1"  # pinned generator; bump together with the pyproject floors
ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTOS = ("edge_server/_proto/imagegen.proto",)


def generate(out: Path, *, check_version: bool = True) -> list[Path]:
    """Compile PROTOS into `out` (the repository root by default); returns the files written."""
    from importlib.metadata import version

    from grpc_tools import protoc

    have = version("grpcio-tools")
    if check_version and have != GRPCIO_TOOLS:
        raise SystemExit(f"grpcio-tools {have} installed, {GRPCIO_TOOLS} pinned (see docstring)")
    out.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"  # well-known types shipped with the tools
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *(str(PROTO_ROOT / p) for p in PROTOS),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = []
    for p in PROTOS:
        stem = out / Path(p).with_suffix("")
        written += [stem.with_name(stem.name + s) for s in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")]
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT, help="output root (default: the repo)")
    args = ap.parse_args(argv)
    for path in generate(args.out):
        print(path.relative_to(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
