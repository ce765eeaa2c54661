"""edge_server._engine.Weights: safetensors files written by the reference `safetensors`
library read back exactly; sharded index files; malformed files give clear errors."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from edge_server import _engine


def test_reads_reference_files(tmp_path, rng):
    tensors = {
        "a.weight": rng.standard_normal((3, 5), dtype=np.float32),
        "b.half": rng.standard_normal((4,), dtype=np.float32).astype(np.float16),
        "scalar.alpha": np.array(8.0, dtype=np.float32),
        "empty": np.zeros((0, 4), np.float32),
    }
    path = tmp_path / "m.safetensors"
    save_file(tensors, str(path))
    w = _engine.Weights(path)
    assert len(w) == 4 and w.names() == sorted(tensors)
    assert "a.weight" in w and "nope" not in w
    assert w.info("a.weight")["shape"] == (3, 5) and w.info("a.weight")["dtype"] == "f32"
    np.testing.assert_array_equal(w.read("a.weight"), tensors["a.weight"])
    np.testing.assert_array_equal(w.read("b.half"), tensors["b.half"].astype(np.float32))
    assert w.read("scalar.alpha").shape == () and float(w.read("scalar.alpha")) == 8.0
    assert w.read("empty").shape == (0, 4)


def write_raw(path, header: dict, data: bytes) -> None:
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


def test_bf16_tensor(tmp_path):
    vals = np.array([1.0, -2.5, 3.140625], np.float32)
    bits = _engine.to_bf16(vals)
    p = tmp_path / "b.safetensors"
    write_raw(p, {"t": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}, bits.tobytes())
    np.testing.assert_array_equal(_engine.Weights(p).read("t"), vals)


def test_sharded_index(tmp_path, rng):
    a = {"x.w": rng.standard_normal((2, 2), dtype=np.float32)}
    b = {"y.w": rng.standard_normal((3,), dtype=np.float32)}
    save_file(a, str(tmp_path / "m-00001-of-00002.safetensors"))
    save_file(b, str(tmp_path / "m-00002-of-00002.safetensors"))
    index = {
        "metadata": {"total_size": 28},
        "weight_map": {
            "x.w": "m-00001-of-00002.safetensors",
            "y.w": "m-00002-of-00002.safetensors",
        },
    }
    (tmp_path / "m.safetensors.index.json").write_text(json.dumps(index))
    w = _engine.Weights(tmp_path / "m.safetensors.index.json")
    assert w.names() == ["x.w", "y.w"]
    np.testing.assert_array_equal(w.read("y.w"), b["y.w"])
    assert w.info("y.w")["file"].endswith("m-00002-of-00002.safetensors")


def test_errors_name_file_and_tensor(tmp_path):
    with pytest.raises(_engine.EngineIOError, match=r"missing\.safetensors"):
        _engine.Weights(tmp_path / "missing.safetensors")
    p = tmp_path / "bad.safetensors"
    p.write_bytes(b"\x05\x00")
    with pytest.raises(_engine.FormatError, match=r"bad\.safetensors"):
        _engine.Weights(p)
    write_raw(p, {"w1": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}}, bytes(24))
    with pytest.raises(_engine.FormatError, match="w1"):
        _engine.Weights(p)
    write_raw(p, {"w2": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 1]}}, bytes(1))
    with pytest.raises(_engine.FormatError, match="Q9"):
        _engine.Weights(p)
    p.write_bytes(struct.pack("<Q", 1 << 62) + b"{}")
    with pytest.raises(_engine.FormatError, match=r"bad\.safetensors"):
        _engine.Weights(p)
    write_raw(p, {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4))
    w = _engine.Weights(p)
    with pytest.raises(_engine.FormatError, match="'nope' not found"):
        w.read("nope")
