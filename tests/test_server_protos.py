"""The committed gencode in edge_server/_proto matches protos/ (regenerated with the pinned
grpcio-tools), and the proto keeps its public names."""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    path = ROOT / "protos" / "generate.py"
    spec = importlib.util.spec_from_file_location("protos_generate", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_code_is_fresh(tmp_path):
    pytest.importorskip("grpc_tools")
    gen = _generator()
    try:
        have = version("grpcio-tools")
    except PackageNotFoundError:
        pytest.skip("grpcio-tools is not installed")
    if have != gen.GRPCIO_TOOLS:
        pytest.skip(f"grpcio-tools {have} installed, {gen.GRPCIO_TOOLS} pinned")
    written = gen.generate(tmp_path)
    assert written
    for path in written:
        rel = path.relative_to(tmp_path)
        committed = ROOT / rel
        assert committed.exists(), f"{rel} is not committed; run python protos/generate.py"
        assert committed.read_bytes() == path.read_bytes(), (
            f"{rel} is stale: run python protos/generate.py")


def test_runtime_floors_match_the_generator():
    text = (ROOT / "pyproject.toml").read_text()
    gen = _generator()
    pb2 = (ROOT / "edge_server" / "_proto" / "imagegen_pb2.py").read_text()
    proto_version = pb2.split("# Protobuf Python Version: ", 1)[1].split()[0]
    assert f'"grpcio>={gen.GRPCIO_TOOLS}"' in text
    assert f'"protobuf>={proto_version}"' in text


def test_public_names():
    from edge_server._proto import imagegen_pb2 as pb

    svc = pb.DESCRIPTOR.services_by_name["ImageGeneration"]
    assert svc.full_name == "qwen_edge.v1.ImageGeneration"
    assert {m.name for m in svc.methods} == {"Generate", "GetModelInfo"}
    assert not svc.methods_by_name["Generate"].client_streaming
    events = pb.GenerateResponse.DESCRIPTOR.oneofs_by_name["event"]
    assert [f.name for f in events.fields] == ["queued", "started", "step", "image_chunk", "done"]
    req = pb.GenerateRequest.DESCRIPTOR.fields_by_name
    assert {"prompt", "negative_prompt", "width", "height", "steps", "seed", "true_cfg_scale",
            "num_images", "preview", "output_format", "output_quality", "request_id"} <= set(req)
    assert req["seed"].has_presence
    assert set(pb.PreviewFormat.keys()) >= {"PREVIEW_FORMAT_NONE", "PREVIEW_FORMAT_JPEG",
                                           "PREVIEW_FORMAT_PNG", "PREVIEW_FORMAT_WEBP",
                                           "PREVIEW_FORMAT_RAW_LATENT"}
    assert set(pb.ImageFormat.keys()) >= {"IMAGE_FORMAT_PNG", "IMAGE_FORMAT_JPEG",
                                         "IMAGE_FORMAT_WEBP", "IMAGE_FORMAT_RAW_RGB8"}
    chunk = pb.ImageChunk.DESCRIPTOR.fields_by_name
    assert {"image_index", "seed", "format", "width", "height", "data", "last"} <= set(chunk)
