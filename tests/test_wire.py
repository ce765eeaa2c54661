"""Pre-serialized image chunks (edge_server/wire.py) parse to exactly the messages protobuf
would build."""

from __future__ import annotations

import itertools
import os

import pytest

from edge_server._proto import imagegen_pb2 as pb
from edge_server.wire import image_chunk_messages, payload_size, serialize_response

META = {"image_index": 2, "seed": 2**63 + 5, "format": pb.IMAGE_FORMAT_PNG, "width": 1024,
        "height": 768}


def expected(rid: str, data: bytes, chunk: int) -> list[pb.GenerateResponse]:
    out = []
    for off in range(0, max(len(data), 1), chunk):
        r = pb.GenerateResponse(request_id=rid)
        r.image_chunk.MergeFrom(pb.ImageChunk(
            data=data[off:off + chunk], offset=off, total_size=len(data),
            last=off + chunk >= len(data), **META))
        out.append(r)
    return out


@pytest.mark.parametrize("n", [0, 1, 6, 7, 8, 127, 128, 3 * 7 + 5, 300])
@pytest.mark.parametrize("rid", ["", "r-1", "ünï-çødé" * 20])
def test_chunks_parse_to_the_protobuf_messages(n, rid):
    data = os.urandom(n)
    got = image_chunk_messages(rid, data, 7, **META)
    want = expected(rid, data, 7)
    assert [pb.GenerateResponse.FromString(b) for b in got] == want
    assert b"".join(pb.GenerateResponse.FromString(b).image_chunk.data for b in got) == data


def test_large_image_in_one_mib_chunks():
    data = os.urandom(int(2.5 * (1 << 20)))
    got = image_chunk_messages("x", memoryview(data), 1 << 20, **META)
    assert len(got) == 3 and all(len(b) < (1 << 20) + 64 for b in got)
    assert [pb.GenerateResponse.FromString(b) for b in got] == expected("x", data, 1 << 20)


@pytest.mark.parametrize("cuts", [[], [0], [3, 3, 10], [1, 2, 3, 4, 5, 6, 7, 8, 9], [299]])
def test_pieces_give_the_same_messages(cuts):
    data = os.urandom(300)
    edges = [0, *cuts, len(data)]
    pieces = [memoryview(data)[a:b] for a, b in itertools.pairwise(edges)]
    assert payload_size(pieces) == len(data)
    want = image_chunk_messages("r", data, 7, **META)
    assert image_chunk_messages("r", pieces, 7, **META) == want


def test_serializer_passes_bytes_through():
    msg = pb.GenerateResponse(request_id="a", done=pb.Done(steps=3))
    assert serialize_response(msg) == msg.SerializeToString()
    raw = b"\x0a\x01a"
    assert serialize_response(raw) is raw
