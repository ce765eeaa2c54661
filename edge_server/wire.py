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


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(message: Any, field: str) -> bytes:
    return _varint(message.DESCRIPTOR.fields_by_name[field].number << 3 | _WIRE_LEN)


_IMAGE_CHUNK_TAG = _tag(pb.GenerateResponse, "image_chunk")
_DATA_TAG = _tag(pb.ImageChunk, "data")


# an encoded file: one buffer, or pieces to concatenate in order
Payload = bytes | memoryview | list[bytes | memoryview]


def _views(data: Payload) -> list[memoryview]:
    return [memoryview(p).cast("B") for p in (data if isinstance(data, list) else [data])]


def payload_size(data: Payload) -> int:
    return sum(v.nbytes for v in _views(data))


def image_chunk_messages(request_id: str, data: Payload, chunk_bytes: int,
                         **meta: Any) -> list[bytes]:
    """Serialized GenerateResponse(request_id, image_chunk=ImageChunk(**meta, data, offset,
    total_size, last)) messages, one per chunk_bytes of data (one message for empty data);
    data may come in pieces (chunk boundaries do not depend on them)."""
    views = [v for v in _views(data) if v.nbytes]
    n = sum(v.nbytes for v in views)
    head = pb.GenerateResponse(request_id=request_id).SerializeToString()
    out = []
    i = pos = 0  # the next byte: views[i][pos]
    for off in range(0, max(n, 1), chunk_bytes):
        take = min(chunk_bytes, n - off)
        pieces: list[bytes | memoryview] = []
        while take:
            v = views[i][pos:pos + take]
            pieces.append(v)
            take -= v.nbytes
            pos += v.nbytes
            if pos == views[i].nbytes:
                i, pos = i + 1, 0
        size = sum(len(p) for p in pieces)
        last = off + chunk_bytes >= n
        fields = pb.ImageChunk(offset=off, total_size=n, last=last, **meta).SerializeToString()
        payload = [_DATA_TAG, _varint(size), *pieces] if size else []  # proto3: no empty field
        length = len(fields) + sum(len(p) for p in payload)
        out.append(b"".join([head, _IMAGE_CHUNK_TAG, _varint(length), fields, *payload]))
    return out


def serialize_response(msg: pb.GenerateResponse | bytes) -> bytes:
    """Generate's response serializer: messages are serialized, bytes are already."""
    return msg if isinstance(msg, bytes) else msg.SerializeToString()


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    """(value, next index) of the varint at data[i] (IndexError when it runs off the end)."""
    value = shift = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80 or shift > 63:
            return value, i
        shift += 7


def bad_utf8_field(data: bytes, message_type: Any) -> str | None:
    """The name of a top-level string field of message_type whose bytes in data (a serialized
    message) are not UTF-8, or None: protobuf's parser only says that some field was bad."""
    strings = {f.number: f.name for f in message_type.DESCRIPTOR.fields
               if f.type == f.TYPE_STRING}
    i = 0
    try:
        while i < len(data):
            key, i = _read_varint(data, i)
            number, wire_type = key >> 3, key & 7
            if wire_type == 0:
                _, i = _read_varint(data, i)
            elif wire_type in (1, 5):
                i += 8 if wire_type == 1 else 4
            elif wire_type == _WIRE_LEN:
                size, i = _read_varint(data, i)
                if number in strings:
                    try:
                        data[i:i + size].decode("utf-8")
                    except UnicodeDecodeError:
                        return strings[number]
                i += size
            else:
                return None  # groups: not in this proto
    except IndexError:
        return None
    return None
