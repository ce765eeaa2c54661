"""Pre-serialized GenerateResponse messages for the final image's chunks.

Building an ImageChunk with protobuf copies its data three times before gRPC sees it: slicing
the encoded image, assigning the `data` field and SerializeToString. For a 1024x1024 PNG that
is ~8 MB of copying on the critical path between the engine's result and Done. Here the small
fields are serialized by protobuf and the payload is appended in wire format (field number,
length, bytes) straight from a memoryview of the encoded image: one copy. Protobuf parsers
accept the fields in any order, so clients see the same message (tests compare the two).
The Generate handler's response serializer passes such bytes through (serialize_response).
"""

from __future__ import annotations

from typing import Any

from edge_server._proto import imagegen_pb2 as pb

_WIRE_LEN = 2  # length-delimited wire type
_IMAGE_CHUNK_TAG = bytes([pb.GenerateResponse.DESCRIPTOR.fields_by_name["image_chunk"].number << 3
                          | _WIRE_LEN])
_DATA_TAG = bytes([pb.ImageChunk.DESCRIPTOR.fields_by_name["data"].number << 3 | _WIRE_LEN])


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def image_chunk_messages(request_id: str, data: bytes | memoryview, chunk_bytes: int,
                         **meta: Any) -> list[bytes]:
    """Serialized GenerateResponse(request_id, image_chunk=ImageChunk(**meta, data, offset,
    total_size, last)) messages, one per chunk_bytes of data (one message for empty data)."""
    mv = memoryview(data).cast("B")
    n = mv.nbytes
    head = pb.GenerateResponse(request_id=request_id).SerializeToString()
    out = []
    for off in range(0, max(n, 1), chunk_bytes):
        piece = mv[off:off + chunk_bytes]
        last = off + chunk_bytes >= n
        fields = pb.ImageChunk(offset=off, total_size=n, last=last, **meta).SerializeToString()
        payload = [_DATA_TAG, _varint(len(piece)), piece] if len(piece) else []  # proto3: no empty
        size = len(fields) + sum(len(p) for p in payload)
        out.append(b"".join([head, _IMAGE_CHUNK_TAG, _varint(size), fields, *payload]))
    return out


def serialize_response(msg: pb.GenerateResponse | bytes) -> bytes:
    """Generate's response serializer: messages are serialized, bytes are already."""
    return msg if isinstance(msg, bytes) else msg.SerializeToString()
