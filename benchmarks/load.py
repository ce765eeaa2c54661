"""Load benchmark for `qwen-edge serve`: streaming clients against a server subprocess.

    python benchmarks/load.py [--model DIR] [--transport unix|tcp] [--clients 4]
                              [--duration 20] [--size 1024x1024] [--small-size 256x256]
                              [--steps 4] [--max-queue 2] [--generations 200] [--json]

Without --model the demo model (tiny random weights) is written to a temporary folder. Every
phase requests --size, by default the server's default request size (generation.default_width
x default_height: 1024x1024, what a client gets when it leaves width and height at 0); the
targets are checked there. Phases, in order:
  small     the overhead phase's measurement at --small-size (256x256 by default; "none" skips
            it), reported beside the targets: there the demo engine takes only 10-20 ms on a
            2-core machine, so the server's fixed cost a request (thread hand-offs, gRPC's
            completion-queue thread, the image write) is its largest share of engine time;
  baseline  the engine alone: model.generate() in this process (no server), median time;
  overhead  one client, one request at a time: server wall time (Done.timings.total_ms -
            queue_ms) against engine time (engine_ms) per request, per step and in %, with the
            final image encoding (format-dependent: PNG of noise is the worst case) shown
            separately, plus the client's end-to-end time against the baseline;
  load      --clients concurrent streaming clients for --duration seconds with JPEG previews:
            completed generations, deliberate rejections (RESOURCE_EXHAUSTED when more clients
            than max_concurrent + max_queue), failures, p50/p99 time to first preview and to
            the final image (from sending the request);
  rss       server RSS after warm-up and again once --generations more have completed.
Targets (issue 7): overhead < 2 ms per step and < 5 % of engine time; RSS growth < 5 MB over
200 generations; zero failures besides deliberate rejections. The last line says whether each
held. The exit status reports failures only (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edge_server._proto import imagegen_pb2 as pb
from edge_server._proto import imagegen_pb2_grpc as pb_grpc


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def parse_size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def yes(ok: bool) -> str:
    return "held" if ok else "MISSED"


def overhead_summary(st: Stats, steps: int) -> dict[str, float | int]:
    """Medians of the sequential requests' server overhead, as ms, ms/step and % of engine."""
    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    ov, enc, eng = med(st.overhead_ms), med(st.encode_ms), med(st.engine_ms)
    stream = med([o - e for o, e in zip(st.overhead_ms, st.encode_ms, strict=True)])
    return {
        "requests": st.completed,
        "engine_ms_p50": round(eng, 2),
        "server_overhead_ms_p50": round(ov, 3),
        "server_overhead_ms_per_step": round(ov / steps, 3),
        "server_overhead_pct_of_engine": round(100 * ov / eng, 2),
        "final_image_encode_ms_p50": round(enc, 3),
        "streaming_overhead_ms_p50": round(stream, 3),
        "streaming_overhead_ms_per_step": round(stream / steps, 3),
        "streaming_overhead_pct_of_engine": round(100 * stream / eng, 2),
    }


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


@dataclass
class Stats:
    completed: int = 0
    rejected: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    first_preview_ms: list[float] = field(default_factory=list)
    final_ms: list[float] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)  # server wall - engine, per request
    encode_ms: list[float] = field(default_factory=list)  # final image encoding (in overhead)
    engine_ms: list[float] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)  # client: send -> Done
    steps: int = 0


async def one(stub: pb_grpc.ImageGenerationStub, req: pb.GenerateRequest, st: Stats) -> bool:
    t0 = time.perf_counter()
    first = final = None
    done = None
    try:
        async for r in stub.Generate(req, timeout=120):
            kind = r.WhichOneof("event")
            if kind == "step" and first is None and (r.step.preview_image or r.step.raw_latent):
                first = time.perf_counter()
            elif kind == "image_chunk" and r.image_chunk.last:
                final = time.perf_counter()
            elif kind == "done":
                done = r.done
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            st.rejected += 1
            return False
        st.failed += 1
        st.errors.append(f"{e.code().name}: {e.details()}")
        return False
    t_end = time.perf_counter()
    if done is None or final is None:
        st.failed += 1
        st.errors.append("stream ended without an image and Done")
        return False
    st.completed += 1
    t = done.timings
    if first is not None:
        st.first_preview_ms.append((first - t0) * 1e3)
    st.final_ms.append((final - t0) * 1e3)
    st.overhead_ms.append(t.total_ms - t.queue_ms - t.engine_ms)
    st.encode_ms.append(t.image_encode_ms)
    st.engine_ms.append(t.engine_ms)
    st.wall_ms.append((t_end - t0) * 1e3 - t.queue_ms)
    st.steps += len(t.step_ms)
    return True


async def clients(target: str, req: pb.GenerateRequest, n: int, duration: float,
                  limit: int | None = None) -> Stats:
    st = Stats()
    end = time.monotonic() + duration
    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.ImageGenerationStub(ch)

        async def worker() -> None:
            while time.monotonic() < end and (limit is None or st.completed < limit):
                if not await one(stub, req, st) and st.rejected:
                    await asyncio.sleep(0.02)  # back off after a rejection

        await asyncio.gather(*(worker() for _ in range(n)))
    return st


def wait_serving(target: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with grpc.insecure_channel(target) as ch:
                r = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(), timeout=2)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not become SERVING")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model folder (default: a fresh demo model)")
    ap.add_argument("--transport", choices=["unix", "tcp"], default="unix")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--size", default=None,
                    help="WxH (default: the server's default request size, 1024x1024)")
    ap.add_argument("--small-size", default="256x256",
                    help="WxH of the extra small-image overhead measurement ('none': skip)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--max-queue", type=int, default=2)
    ap.add_argument("--overhead-requests", type=int, default=100)
    ap.add_argument("--generations", type=int, default=200, help="for the RSS measurement")
    ap.add_argument("--threads", type=int, default=0, help="engine threads (0 = default)")
    ap.add_argument("--output", default="png", choices=["png", "jpeg", "webp", "raw_rgb8"])
    ap.add_argument("--previews", default="jpeg",
                    choices=["none", "jpeg", "png", "webp", "raw_latent"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.size is None:
        from edge_server.config import GenerationConfig

        w, h = GenerationConfig().default_width, GenerationConfig().default_height
    else:
        w, h = parse_size(args.size)
    small = None if args.small_size.lower() in ("none", "0", "") else parse_size(args.small_size)

    tmp = tempfile.TemporaryDirectory(prefix="qwen-edge-load-")
    work = Path(tmp.name)
    model_dir = args.model
    if model_dir is None:
        from edge_server.demo import write_demo_model

        model_dir = str(write_demo_model(work / "demo"))

    # baseline: the engine alone in this process, timed in rounds alternating with the
    # server's sequential requests (the server is idle then), so machine drift hits both
    import edge_server

    model = edge_server.load_model(model_dir, threads=args.threads or None)
    model.generate("warm up", width=w, height=h, steps=args.steps, seed=0)
    base: list[float] = []

    def baseline(n: int) -> None:
        for i in range(n):
            t0 = time.perf_counter()
            model.generate("a benchmark prompt", width=w, height=h, steps=args.steps, seed=i)
            base.append((time.perf_counter() - t0) * 1e3)

    target = f"unix:{work}/grpc.sock"
    listen = target
    if args.transport == "tcp":
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        target = listen = f"127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "edge_server", "serve", model_dir, "--listen", listen,
           "--max-queue", str(args.max_queue), "--log-level", "warning"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    # the server's log goes to a file: a pipe nobody reads would block the server once full
    log_path = Path(work) / "server.log"
    log_file = open(log_path, "w")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        wait_serving(target, proc)
        req = pb.GenerateRequest(
            prompt="a benchmark prompt", width=w, height=h, steps=args.steps, seed=1,
            output_format=pb.ImageFormat.Value("IMAGE_FORMAT_" + args.output.upper()),
            preview=pb.PreviewOptions(format=pb.PreviewFormat.Value(
                "PREVIEW_FORMAT_" + args.previews.upper())))
        sm = Stats()
        if small is not None:  # first: its buffers are in place before the RSS baseline
            small_req = pb.GenerateRequest()
            small_req.CopyFrom(req)
            small_req.width, small_req.height = small
            asyncio.run(clients(target, small_req, 1, 60, limit=5))  # warm-up
            sm = asyncio.run(clients(target, small_req, 1, 300, limit=args.overhead_requests))
        asyncio.run(clients(target, req, 1, 60, limit=5))  # warm-up
        rss0 = rss_mb(proc.pid)
        t_phase = time.monotonic()
        ov = Stats()
        rounds = 4
        for _ in range(rounds):
            baseline(max(2, args.overhead_requests // (2 * rounds)))
            part = asyncio.run(clients(target, req, 1, 300,
                                       limit=max(1, args.overhead_requests // rounds)))
            for name in ("completed", "failed", "steps"):
                setattr(ov, name, getattr(ov, name) + getattr(part, name))
            for name in ("errors", "overhead_ms", "encode_ms", "engine_ms", "wall_ms",
                         "first_preview_ms", "final_ms"):
                getattr(ov, name).extend(getattr(part, name))
        baseline_ms = statistics.median(base)
        load = asyncio.run(clients(target, req, args.clients, args.duration))
        total = ov.completed + load.completed
        top = Stats()
        if total < args.generations:
            top = asyncio.run(clients(target, req, 2, 600, limit=args.generations - total))
        rss1 = rss_mb(proc.pid)
        gens = total + top.completed
        elapsed = time.monotonic() - t_phase
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()
        err = log_path.read_text(errors="replace")
    steps_per = args.steps
    overhead = overhead_summary(ov, steps_per)
    wall_med = statistics.median(ov.wall_ms) if ov.wall_ms else float("nan")
    overhead.update({
        "client_wall_ms_p50": round(wall_med, 2),
        "end_to_end_overhead_ms_per_step_vs_baseline":
            round((wall_med - baseline_ms) / steps_per, 3),
        "end_to_end_overhead_pct_vs_baseline":
            round(100 * (wall_med - baseline_ms) / baseline_ms, 2),
    })
    small_overhead = None
    if small is not None:
        small_overhead = {"size": f"{small[0]}x{small[1]}", **overhead_summary(sm, steps_per)}
    result = {
        "config": {"model": model_dir, "transport": args.transport, "clients": args.clients,
                   "duration_s": args.duration, "size": f"{w}x{h}", "steps": args.steps,
                   "output": args.output, "previews": args.previews,
                   "max_queue": args.max_queue, "max_concurrent": 1, "cpus": os.cpu_count()},
        "baseline_engine_ms": round(baseline_ms, 2),
        "overhead": overhead,
        "small_image_overhead": small_overhead,
        "load": {
            "completed": load.completed, "rejected": load.rejected, "failed": load.failed,
            "throughput_per_s": round(load.completed / args.duration, 2),
            "first_preview_ms_p50": round(pct(load.first_preview_ms, 50), 1),
            "first_preview_ms_p99": round(pct(load.first_preview_ms, 99), 1),
            "final_image_ms_p50": round(pct(load.final_ms, 50), 1),
            "final_image_ms_p99": round(pct(load.final_ms, 99), 1),
            "errors": sorted(set(load.errors + ov.errors + top.errors + sm.errors))[:5],
        },
        "rss": {"generations": gens, "before_mb": round(rss0, 1), "after_mb": round(rss1, 1),
                "growth_mb": round(rss1 - rss0, 2), "seconds": round(elapsed, 1)},
        "failed_total": ov.failed + load.failed + top.failed + sm.failed,
        "server_exit_code": proc.returncode,
    }
    result["targets"] = {
        "overhead_below_2_ms_per_step": overhead["server_overhead_ms_per_step"] < 2.0,
        "overhead_below_5_pct_of_engine": overhead["server_overhead_pct_of_engine"] < 5.0,
        "rss_growth_below_5_mb": gens >= args.generations and rss1 - rss0 < 5.0,
        "no_failed_requests": result["failed_total"] == 0 and proc.returncode == 0,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        c, o, lo, r = result["config"], result["overhead"], result["load"], result["rss"]
        print(f"qwen-edge load benchmark: {c['size']}, {c['steps']} steps, {c['transport']}, "
              f"{c['output']} output, {c['previews']} previews, max_concurrent 1, "
              f"max_queue {c['max_queue']}, {c['cpus']} CPUs")
        print(f"  engine alone (no server)        {result['baseline_engine_ms']:9.2f} ms/gen")
        print(f"  overhead ({o['requests']} sequential requests)")
        print(f"    engine time p50               {o['engine_ms_p50']:9.2f} ms")
        print(f"    server overhead p50           {o['server_overhead_ms_p50']:9.3f} ms "
              f"= {o['server_overhead_ms_per_step']:.3f} ms/step "
              f"= {o['server_overhead_pct_of_engine']:.2f} % of engine time")
        print(f"      of which final image encode {o['final_image_encode_ms_p50']:9.3f} ms")
        print(f"      streaming (all but encode)  {o['streaming_overhead_ms_p50']:9.3f} ms "
              f"= {o['streaming_overhead_ms_per_step']:.3f} ms/step "
              f"= {o['streaming_overhead_pct_of_engine']:.2f} % of engine time")
        print(f"    client wall p50               {o['client_wall_ms_p50']:9.2f} ms "
              f"(vs engine alone: {o['end_to_end_overhead_ms_per_step_vs_baseline']:+.3f} "
              f"ms/step, {o['end_to_end_overhead_pct_vs_baseline']:+.2f} %)")
        if small_overhead is not None:
            so = small_overhead
            print(f"  small image: {so['size']} ({so['requests']} sequential requests; not the "
                  "target size)")
            print(f"    engine time p50               {so['engine_ms_p50']:9.2f} ms")
            print(f"    server overhead p50           {so['server_overhead_ms_p50']:9.3f} ms "
                  f"= {so['server_overhead_ms_per_step']:.3f} ms/step "
                  f"= {so['server_overhead_pct_of_engine']:.2f} % of engine time")
            print(f"      of which final image encode {so['final_image_encode_ms_p50']:9.3f} ms")
        print(f"  load ({c['clients']} clients, {c['duration_s']:g} s)")
        print(f"    completed {lo['completed']}, rejected (deliberate) {lo['rejected']}, "
              f"failed {lo['failed']}, {lo['throughput_per_s']}/s")
        print(f"    first preview p50/p99         {lo['first_preview_ms_p50']:.1f} / "
              f"{lo['first_preview_ms_p99']:.1f} ms")
        print(f"    final image p50/p99           {lo['final_image_ms_p50']:.1f} / "
              f"{lo['final_image_ms_p99']:.1f} ms")
        print(f"  server RSS: {r['before_mb']} MB -> {r['after_mb']} MB after {r['generations']} "
              f"generations ({r['growth_mb']:+.2f} MB)")
        print(f"  failed requests (all phases): {result['failed_total']}; server exit code "
              f"{result['server_exit_code']}")
        if lo["errors"]:
            print("  errors:", *lo["errors"], sep="\n    ")
        t = result["targets"]
        print(f"  targets at {c['size']} (issue 7): overhead < 2 ms/step "
              f"{yes(t['overhead_below_2_ms_per_step'])}, < 5 % of engine time "
              f"{yes(t['overhead_below_5_pct_of_engine'])}; RSS growth < 5 MB over "
              f"{args.generations} generations {yes(t['rss_growth_below_5_mb'])}; no failed "
              f"requests {yes(t['no_failed_requests'])}")
    if proc.returncode != 0:
        print(err[-2000:], file=sys.stderr)
    tmp.cleanup()
    return 0 if result["failed_total"] == 0 and proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
