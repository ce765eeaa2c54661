"""What one server-streamed message costs grpc.aio to write, by size (no engine, no protobuf).

    python benchmarks/grpc_write.py [--sizes 65000 131000 140000 150000 163000 1048576]
                                    [--rpcs 300] [--json]

A grpc.aio server and client in this process, over a unix socket. Each RPC streams a 1-byte
message, then one message of SIZE random bytes; the server times the second `yield` (from
handing the bytes to gRPC until gRPC reports them written). Median and p10 over the RPCs after
the first 50. It shows gRPC's HTTP/2 write cycles: chttp2 writes at most 128 KiB per cycle on a
fresh connection (Chttp2WriteSizePolicy) and raises that only after two consecutive large
writes, so a message just over 128 KiB costs a second cycle (strace: sendmsg of 131,081 then
31,942 bytes for 163 KB); on the 2-vCPU dev VM 131 KB took 0.11-0.18 ms and 150-163 KB
0.14-0.35 ms (medians of five runs: the second cycle's cost varies). The 256x256 demo image
(163 KB) pays it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator

import grpc


async def measure(size: int, rpcs: int) -> list[float]:
    payload = os.urandom(size)
    times: list[float] = []

    async def handler(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield b"x"
        t0 = time.perf_counter()
        yield payload
        times.append(time.perf_counter() - t0)

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Write", {
        "Stream": grpc.unary_stream_rpc_method_handler(
            handler, request_deserializer=bytes, response_serializer=bytes)}),))
    with tempfile.TemporaryDirectory() as d:
        target = f"unix:{d}/grpc.sock"
        server.add_insecure_port(target)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(target) as ch:
                call = ch.unary_stream("/bench.Write/Stream", request_serializer=bytes,
                                       response_deserializer=bytes)
                for _ in range(rpcs):
                    async for _msg in call(b""):
                        pass
                    await asyncio.sleep(0.005)  # one RPC at a time, like load.py's overhead phase
        finally:
            await server.stop(0)
    return times[50:] if len(times) > 100 else times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+",
                    default=[65000, 131000, 140000, 150000, 163000, 1 << 20])
    ap.add_argument("--rpcs", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for size in args.sizes:
        t = sorted(asyncio.run(measure(size, args.rpcs)))
        rows.append({"bytes": size, "write_ms_p50": round(statistics.median(t) * 1e3, 3),
                     "write_ms_p10": round(t[len(t) // 10] * 1e3, 3)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("grpc.aio: one streamed message's write, unix socket, one process")
    print(f"{'bytes':>9}  {'p50 ms':>7}  {'p10 ms':>7}")
    for r in rows:
        print(f"{r['bytes']:>9}  {r['write_ms_p50']:>7.3f}  {r['write_ms_p10']:>7.3f}")


if __name__ == "__main__":
    main()
