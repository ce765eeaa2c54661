"""Server overhead of two or more builds, measured side by side with requests alternating.

    pip install --no-deps --target /tmp/build_a .      # one folder per build (git checkout ...)
    python benchmarks/ab_servers.py /tmp/build_a /tmp/build_b [--size 256] [--requests 200]
                                    [--server-args "--threads 1"] [--json]

One `qwen-edge serve` per build (PYTHONPATH=BUILD, the demo model, unix sockets) and one client
that sends the same request (PNG output, JPEG previews, 4 steps) to each server in turn, one
request at a time, the order reversed every round. Per build: the medians of the server overhead
(Done.timings: total - queue - engine, as load.py counts it), the PNG encode and the engine time,
and the median of the per-round differences to the first build.

Why not alternate whole load.py runs: on a shared VM the machine's speed changes from one
minute to the next (the 2-vCPU dev VM runs the demo engine at 256x256 in either ~10 or ~15 ms,
switching within a process), so two runs a minute apart can differ by more than a change
does. Paired requests a few ms apart see the same machine. Run an A/A comparison (the same build
twice) to see the noise left: on the dev VM 200 pairs at 256x256 differ by up to 0.03 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc

from edge_server._proto import imagegen_pb2 as pb
from edge_server._proto import imagegen_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import wait_serving


async def one(stub: pb_grpc.ImageGenerationStub, req: pb.GenerateRequest) -> tuple[float, ...]:
    """(server overhead, PNG encode, engine) of one request, in ms."""
    async for r in stub.Generate(req, timeout=300):
        if r.WhichOneof("event") == "done":
            t = r.done.timings
            return t.total_ms - t.queue_ms - t.engine_ms, t.image_encode_ms, t.engine_ms
    raise RuntimeError("the stream ended without Done")


async def alternate(targets: list[str], req: pb.GenerateRequest, n: int,
                    warmup: int) -> list[list[tuple[float, ...]]]:
    chans = [grpc.aio.insecure_channel(t) for t in targets]
    try:
        stubs = [pb_grpc.ImageGenerationStub(c) for c in chans]
        res: list[list[tuple[float, ...]]] = [[] for _ in targets]
        for i in range(warmup + n):
            order = range(len(stubs)) if i % 2 == 0 else reversed(range(len(stubs)))
            for k in order:
                r = await one(stubs[k], req)
                if i >= warmup:
                    res[k].append(r)
        return res
    finally:
        for c in chans:
            await c.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("builds", nargs="+", help="folders made by pip install --target")
    ap.add_argument("--size", type=int, default=256, help="square side (default 256)")
    ap.add_argument("--requests", type=int, default=200, help="per build, after 5 warm-ups")
    ap.add_argument("--server-args", default="", help="extra `qwen-edge serve` arguments")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    builds = [str(Path(b).resolve()) for b in args.builds]

    from edge_server.demo import write_demo_model

    tmp = tempfile.TemporaryDirectory(prefix="qwen-edge-ab-")
    work = Path(tmp.name)
    model = write_demo_model(work / "demo")
    procs: list[subprocess.Popen] = []
    targets = []
    try:
        for i, b in enumerate(builds):
            target = f"unix:{work}/server{i}.sock"
            log = open(work / f"server{i}.log", "w")  # noqa: SIM115 - the process keeps it
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "edge_server", "serve", str(model), "--listen", target,
                 "--log-level", "warning", *shlex.split(args.server_args)],
                cwd=work, env=dict(os.environ, PYTHONPATH=b), stdout=subprocess.DEVNULL,
                stderr=log))
            targets.append(target)
        for t, p in zip(targets, procs, strict=True):
            wait_serving(t, p)
        req = pb.GenerateRequest(
            prompt="a benchmark prompt", width=args.size, height=args.size, steps=4, seed=1,
            preview=pb.PreviewOptions(format=pb.PREVIEW_FORMAT_JPEG))
        res = asyncio.run(alternate(targets, req, args.requests, 5))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
    rows = []
    for b, r in zip(builds, res, strict=True):
        ov, enc, eng = (statistics.median(x[k] for x in r) for k in range(3))
        diff = statistics.median(a[0] - z[0] for a, z in zip(r, res[0], strict=True))
        rows.append({"build": b, "overhead_ms": round(ov, 3), "pct_of_engine": round(
            100 * ov / eng, 2), "encode_ms": round(enc, 3), "engine_ms": round(eng, 2),
            "paired_diff_ms": round(diff, 3)})
    if args.json:
        print(json.dumps({"size": args.size, "requests": args.requests, "builds": rows}))
    else:
        print(f"{args.size}x{args.size}, {args.requests} requests per build, alternating")
        for row in rows:
            print(f"  {row['build']}: overhead {row['overhead_ms']:.3f} ms "
                  f"({row['pct_of_engine']:.2f}% of {row['engine_ms']:.2f} ms engine), "
                  f"PNG encode {row['encode_ms']:.3f} ms, "
                  f"vs the first {row['paired_diff_ms']:+.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
