"""EngineAdapter: the asyncio face of the blocking engine.

It owns the model, loads it on the engine thread, and runs QwenImageModel.generate() on a
dedicated ThreadPoolExecutor (the C engine releases the GIL, so the event loop never blocks).
Admission is single-flight by default (max_concurrent generations at once) with a bounded FIFO
queue: a full queue raises Busy *before* the stream yields anything, so the gRPC layer can answer
RESOURCE_EXHAUSTED before any response message. Waiting requests get Queued events whenever
their position changes.

Per-step callbacks run on the engine thread; they only record the latest x0 due for a preview
and post a small Step message to the loop with call_soon_threadsafe. Previews are encoded on a
separate worker ("encode" threads; small ones, up to INLINE_PREVIEW_PIXELS, on the loop itself),
latest-wins: a preview that is superseded by a newer step before it is encoded is skipped, so a
slow client never makes the engine wait and memory stays bounded (one x0 per running request).
The final images are never dropped.

Cancellation: every run has an _engine.CancelToken. Whatever ends the consumer (client cancel
-> GeneratorExit at a yield, deadline or disconnect -> CancelledError at an await, server
drain) reaches the `finally:` in generate(), which cancels the token (the engine stops within
one transformer block) and waits for the engine thread. The engine slot is released by the
engine future's own completion callback, i.e. exactly when the engine thread is free, so the next
queued request starts at once and a slot can never leak or be released early.

Events (plain dataclasses, no protobuf): Queued -> Started -> Step* -> Image* -> Finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edge_server import _engine
from edge_server.png import encode_png_parts, png_head
from edge_server.previews import encode_image, latent_to_rgb
from edge_server.wire import Payload

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], object]
PREVIEW_FORMATS = ("JPEG", "PNG", "WEBP", "RAW_LATENT")
OUTPUT_FORMATS = ("PNG", "JPEG", "WEBP", "RAW_RGB8")
COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")


class GenerativeModel(Protocol):
    """What the adapter needs from a model (QwenImageModel, or a fake in tests)."""

    path: str
    limits: Any  # pipeline.SizeLimits

    @property
    def default_steps(self) -> int: ...

    @property
    def generate(self) -> Callable[..., Any]: ...  # QwenImageModel.generate's signature


# ---- errors -------------------------------------------------------------------------------


class AdapterError(Exception):
    """Admission failures (mapped to gRPC codes by the service)."""


class Busy(AdapterError):
    """The queue is full."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class WouldMissDeadline(Busy):
    """The work queued ahead plus this request would not finish before the client's deadline
    (estimated from the engine's measured speed): refused at once, so the client can go to
    another server instead of waiting for a result it cannot use."""


class Unavailable(AdapterError):
    """Not serving: the model is loading or failed, or the server is draining."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


# ---- jobs and events ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GenerateJob:
    """A validated request (every default already resolved)."""

    prompt: str
    width: int
    height: int
    steps: int
    seed: int
    num_images: int = 1
    negative_prompt: str | None = None
    true_cfg_scale: float = 1.0
    preview_format: str = ""  # "" = none, else one of PREVIEW_FORMATS
    preview_max_side: int = 512
    preview_every: int = 1
    preview_quality: int = 80
    output_format: str = "PNG"
    output_quality: int = 90
    png_text: tuple[tuple[str, str], ...] = ()  # PNG text chunks for the final image
    request_id: str = ""
    deadline_s: float | None = None  # seconds the client allows from admission (None = any)

    @property
    def work_units(self) -> float:
        """The job's size for engine-time estimates: (steps + 1) per image (the VAE decode
        costs about one step; a step with true CFG two) times megapixels (at least a 256x256
        image's worth)."""
        passes = 2 if self.negative_prompt is not None and self.true_cfg_scale > 1.0 else 1
        return (self.num_images * (passes * self.steps + 1)
                * max(self.width * self.height, 1 << 16) / 2**20)


@dataclass(frozen=True, slots=True)
class Queued:
    position: int  # 0 = starting now, 1 = next, ...
    queue_depth: int


@dataclass(frozen=True, slots=True)
class Started:
    job: GenerateJob
    queue_s: float


@dataclass(frozen=True, slots=True)
class Preview:
    format: str
    data: bytes
    width: int = 0
    height: int = 0
    latent_shape: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Step:
    image_index: int
    step: int
    n_steps: int
    sigma: float
    elapsed_s: float
    eta_s: float
    preview: Preview | None = None


@dataclass(frozen=True, slots=True)
class Image:
    index: int
    seed: int
    format: str
    width: int
    height: int
    data: Payload  # the encoded file, whole or as pieces to concatenate


@dataclass(frozen=True, slots=True)
class Finished:
    seeds: tuple[int, ...]
    steps: int
    prompt_truncated: bool
    negative_truncated: bool
    queue_s: float
    prompt_encode_s: float
    steps_s: tuple[float, ...]
    vae_decode_s: float
    image_encode_s: float
    engine_s: float
    previews_sent: int
    previews_skipped: int


Event = Queued | Started | Step | Image | Finished


@dataclass(frozen=True, slots=True)
class ModelDescription:
    name: str
    path: str
    components: tuple[dict[str, Any], ...]
    lora: str
    lora_scale: float
    lightning: bool
    default_steps: int
    limits: Any
    isa: str
    backend: str
    threads: int
    engine_version: str
    load_s: float


# ---- internals ----------------------------------------------------------------------------


@dataclass(eq=False)
class _Ticket:
    request_id: str
    units: float = 0.0  # GenerateJob.work_units
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    granted: bool = False
    rejected: bool = False


@dataclass(frozen=True, slots=True)
class _StepMsg:
    seq: int
    image_index: int
    step: int
    n_steps: int
    sigma: float
    elapsed_s: float
    due: bool


@dataclass(eq=False)
class _Run:
    job: GenerateJob
    token: Any
    t_start: float = field(default_factory=time.perf_counter)
    future: asyncio.Future[Any] | None = None
    queue: asyncio.Queue[Any] | None = None
    latest: tuple[int, np.ndarray] | None = None  # (seq, x0) of the newest step due a preview
    stop: bool = False
    reason: str = ""  # why the server cancelled it ("" = not the server)
    sent: int = 0
    skipped: int = 0
    delivered: bool = False  # the engine's result reached the consumer (nothing to stop)
    png_heads: list[bytes] | None = None  # per image: png_head(), made while the engine runs


_END = object()
# Previews of latents up to this many pixels (64x64: a 512x512 image) are encoded on the loop:
# about 0.1 ms, less than the two thread hops to an encode thread and back, which also took a
# core from the engine's pool on a 2-core machine (the demo's engine time at 256x256 in the
# server: 23.8 -> 23.1 ms with 4 previews, A/B).
INLINE_PREVIEW_PIXELS = 64 * 64
# After starting the engine the loop steps aside this long before it writes Queued / Started:
# the engine thread needs the GIL for the Python before the C engine (prompt cache, noise,
# sigmas) and would otherwise wait behind those writes (the hop into the engine took 0.19 ms
# instead of 0.08 at 256x256). The messages are not urgent: the first step takes longer.
ENGINE_HEADSTART_S = 0.001


@dataclass(frozen=True, slots=True)
class _Result:
    value: tuple[Any, list[Image], float]  # work()'s return value


def _png_text(base: tuple[tuple[str, str], ...], seed: int) -> tuple[tuple[str, str], ...]:
    """The request's PNG text chunks plus this image's seed (also in the A1111-style
    "parameters" line)."""
    if not base:
        return ()
    out = [(k, f"{v}, Seed: {seed}" if k == "parameters" else v) for k, v in base]
    return (*out, ("seed", str(seed)))


def encode_final(
    image: Any, fmt: str, quality: int, png_text: tuple[tuple[str, str], ...] = (),
    runtime: Any = None, png_head: bytes | None = None,
) -> tuple[Payload, int, int]:
    """A PIL image or uint8 (h, w, 3) array -> (encoded file, width, height) in PNG / JPEG /
    WEBP / RAW_RGB8 (runtime: the _engine.Runtime whose pool compresses a PNG; default: this
    thread; png_head: png.png_head() of the image with png_text, made beforehand). PNG and
    RAW_RGB8 come as pieces (the server sends them without joining them into one bytes
    first)."""
    if isinstance(image, np.ndarray):
        rgb = image
    else:
        rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
    h, w = rgb.shape[:2]
    if fmt == "RAW_RGB8":
        return [memoryview(np.ascontiguousarray(rgb)).cast("B")], w, h
    if fmt == "PNG":  # the fast writer, with the text chunks, on the runtime's pool
        return encode_png_parts(rgb, png_text, runtime, png_head), w, h
    if fmt not in ("JPEG", "WEBP"):
        raise ValueError(f"unknown output format {fmt!r}")
    return encode_image(rgb, fmt, 0, quality)  # full size


def encode_preview(x0: np.ndarray, fmt: str, max_side: int, quality: int) -> Preview:
    """x0 (16, h, w) float32 -> a Preview (encoded image, never upscaled, or float16 latent)."""
    if fmt == "RAW_LATENT":
        return Preview(fmt, x0.astype("<f2").tobytes(), 0, 0, tuple(int(d) for d in x0.shape))
    rgb = latent_to_rgb(x0)
    side = min(max_side, max(rgb.shape[0], rgb.shape[1]))
    data, w, h = encode_image(rgb, fmt, side, quality)
    return Preview(fmt, data, w, h)


def describe_model(model: Any, name: str, load_s: float) -> ModelDescription:
    """Facts for ModelInfo, gathered defensively (a fake or partial model still works)."""

    def call(fn: str, *args: Any) -> Any:
        f = getattr(model, fn, None)
        return f(*args) if callable(f) else None

    comps = []
    info_fns = {"transformer": "transformer_info", "vae": "vae_info",
                "text_encoder": "text_encoder_info"}
    for comp in COMPONENTS:
        present = call("has", comp)
        entry: dict[str, Any] = {"name": comp, "present": bool(present), "dtype": "", "details": {}}
        if present and comp in info_fns:
            try:
                info = call(info_fns[comp]) or {}
                entry["dtype"] = str(info.get("weight_dtype", ""))
                entry["details"] = {k: str(v) for k, v in info.items() if k != "weight_dtype"}
            except Exception as e:  # describing must never fail the load
                entry["details"] = {"error": str(e)}
        comps.append(entry)
    runtime = getattr(model, "runtime", None)
    return ModelDescription(
        name=name,
        path=str(getattr(model, "path", "")),
        components=tuple(comps),
        lora=str(getattr(model, "lora", None) or ""),
        lora_scale=float(getattr(model, "lora_scale", 1.0)),
        lightning=bool(getattr(model, "is_lightning", False)),
        default_steps=int(model.default_steps),
        limits=model.limits,
        isa=str(getattr(model, "isa", "") or ""),
        backend=str(getattr(runtime, "backend", "") or "cpu"),
        threads=int(getattr(model, "threads", 0) or 0),
        engine_version=_engine.version(),
        load_s=load_s,
    )


# ---- the adapter --------------------------------------------------------------------------


class EngineAdapter:
    """Owns the model and the engine thread(s); see the module docstring."""

    def __init__(
        self,
        loader: Callable[[ProgressFn], GenerativeModel],
        *,
        name: str = "",
        max_concurrent: int = 1,
        max_queue: int = 8,
        cancel_wait_s: float = 30.0,
        idle_trim_s: float = 30.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._loader = loader
        self.name = name
        self.max_concurrent = max(1, int(max_concurrent))
        self.max_queue = max(0, int(max_queue))
        self._cancel_wait_s = cancel_wait_s
        self._idle_trim_s = idle_trim_s
        self._trim_timer: asyncio.TimerHandle | None = None
        self._on_change = on_change
        self._executor = ThreadPoolExecutor(self.max_concurrent, thread_name_prefix="engine")
        # preview encoding (one at a time per run: latest-wins)
        self._aux = ThreadPoolExecutor(self.max_concurrent, thread_name_prefix="encode")
        self._model: GenerativeModel | None = None
        self.description: ModelDescription | None = None
        self.state = "new"  # new | loading | ready | failed | draining | closed
        self.load_error: BaseException | None = None
        self._abort_load = threading.Event()
        self._running = 0
        self._waiters: deque[_Ticket] = deque()
        self._runs: set[_Run] = set()
        self._idle: asyncio.Event | None = None
        self._seq = itertools.count(1)
        self._mean_engine_s = 0.0  # EMA of engine time per request (retry hints)
        self._s_per_unit = 0.0  # EMA of engine seconds per GenerateJob.work_units
        self._speed_samples = 0  # completed generations behind _s_per_unit

    # -- state ----------------------------------------------------------------------------

    @property
    def model(self) -> GenerativeModel:
        if self._model is None:
            raise Unavailable("the model is not loaded")
        return self._model

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def in_flight(self) -> int:
        return self._running

    @property
    def queue_depth(self) -> int:
        return len(self._waiters)

    def _changed(self) -> None:
        if self._idle is not None:
            if self._running == 0:
                self._idle.set()
            else:
                self._idle.clear()
        if self._on_change is not None:
            try:
                self._on_change()
            except Exception:  # observers must not break admission
                log.exception("on_change observer failed")

    # -- loading --------------------------------------------------------------------------

    async def load(self, progress: ProgressFn | None = None) -> ModelDescription:
        """Load the model on the engine thread; progress(stage, done, total) is called there.
        drain() during the load aborts it (the loader sees a truthy progress return)."""
        if self.state != "new":
            raise RuntimeError(f"load() in state {self.state}")
        self.state = "loading"
        self._idle = asyncio.Event()
        self._idle.set()
        loop = asyncio.get_running_loop()

        def prog(stage: str, done: int, total: int) -> bool:
            if progress is not None:
                progress(stage, done, total)
            return self._abort_load.is_set()

        def work() -> tuple[GenerativeModel, ModelDescription]:
            t0 = time.perf_counter()
            model = self._loader(prog)
            if self._abort_load.is_set():
                raise _engine.Cancelled(6, "model load aborted: the server is stopping")
            return model, describe_model(model, self.name, time.perf_counter() - t0)

        try:
            self._model, self.description = await loop.run_in_executor(self._executor, work)
        except BaseException as e:
            self.load_error = e
            if self.state == "loading":
                self.state = "failed"
            raise
        if self.state == "loading":
            self.state = "ready"
        self._changed()
        assert self.description is not None
        return self.description

    # -- generation -----------------------------------------------------------------------

    def _retry_hint(self) -> float:
        per = self._mean_engine_s or 1.0
        return round(per * (1 + len(self._waiters)) / self.max_concurrent, 3)

    def finish_estimate_s(self, job: GenerateJob) -> float | None:
        """Seconds until job would finish if admitted now: what runs and waits ahead of it,
        shared by max_concurrent engines, plus its own work; None before two generations have
        measured the engine's speed."""
        if self._speed_samples < 2:
            return None
        rate, now = self._s_per_unit, time.perf_counter()
        ahead = sum(max(0.0, r.job.work_units * rate - (now - r.t_start)) for r in self._runs)
        ahead += sum(t.units for t in self._waiters) * rate
        must_wait = self._running >= self.max_concurrent or bool(self._waiters)
        return (ahead / self.max_concurrent if must_wait else 0.0) + job.work_units * rate

    def _admit(self, job: GenerateJob) -> _Ticket:
        if self.state != "ready":
            if self.state in ("new", "loading"):
                raise Unavailable("the model is still loading", retry_after_s=5.0)
            if self.state == "failed":
                raise Unavailable(f"the model failed to load: {self.load_error}", 60.0)
            raise Unavailable("the server is shutting down")
        if job.deadline_s is not None:
            eta = self.finish_estimate_s(job)
            if eta is not None and eta > job.deadline_s:
                raise WouldMissDeadline(
                    f"the request would finish in about {eta:.2f} s ({self._running} running, "
                    f"{len(self._waiters)} waiting), after its deadline of {job.deadline_s:.2f} s",
                    retry_after_s=self._retry_hint(),
                )
        ticket = _Ticket(job.request_id, job.work_units)
        if self._running < self.max_concurrent and not self._waiters:
            self._running += 1
            ticket.granted = True
        elif len(self._waiters) < self.max_queue:
            self._waiters.append(ticket)
        else:
            raise Busy(
                f"the queue is full ({self._running} running, {len(self._waiters)} waiting, "
                f"max_queue={self.max_queue})",
                retry_after_s=self._retry_hint(),
            )
        self._changed()
        return ticket

    def _position(self, ticket: _Ticket) -> int:
        if ticket.granted:
            return 0
        try:
            return self._waiters.index(ticket) + 1
        except ValueError:
            return 0

    def _release(self) -> None:
        self._running -= 1
        while self._waiters and self._running < self.max_concurrent and self.state == "ready":
            t = self._waiters.popleft()
            t.granted = True
            self._running += 1
            t.wake.set()
        for t in self._waiters:  # positions moved up
            t.wake.set()
        if not self._running:
            self._schedule_trim()
        self._changed()

    def _schedule_trim(self) -> None:
        """The engine is idle: free the activation memory generations keep for the next one
        once it has been idle for idle_trim_s (a burst of requests keeps it)."""
        trim = getattr(self._model, "trim", None)
        if trim is None or self.state != "ready":
            return
        self._cancel_trim()

        def fire() -> None:
            self._trim_timer = None
            if not self._running and self.state == "ready":
                self._executor.submit(trim)  # waits for nothing; serialised with generations

        self._trim_timer = asyncio.get_running_loop().call_later(self._idle_trim_s, fire)

    def _engine_done(self, run: _Run, fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled():
            fut.exception()  # mark retrieved: the consumer may be gone
        self._runs.discard(run)
        self._release()

    async def generate(self, job: GenerateJob) -> AsyncGenerator[Event, None]:
        """Queued (first, and on every position change) -> Started -> Step per step of every
        image -> Image per image -> Finished. Raises Busy / Unavailable before yielding
        anything when the request is not admitted; engine errors (_engine.EngineError)
        propagate after Started."""
        t_accept = time.perf_counter()
        ticket = self._admit(job)  # raises before the first yield
        run: _Run | None = None
        queue_s = 0.0
        try:
            if ticket.granted:  # start the engine first: Queued(0) is written while it runs
                run = self._start(job)
                queue_s = run.t_start - t_accept
                await asyncio.sleep(ENGINE_HEADSTART_S)
            last = self._position(ticket)
            yield Queued(last, len(self._waiters))
            while not ticket.granted:
                await ticket.wake.wait()
                ticket.wake.clear()
                if ticket.rejected:
                    raise Unavailable("the server is shutting down")
                pos = self._position(ticket)
                if not ticket.granted and pos != last:
                    last = pos
                    yield Queued(pos, len(self._waiters))
            if run is None:
                run = self._start(job)
                queue_s = run.t_start - t_accept
                await asyncio.sleep(ENGINE_HEADSTART_S)
            yield Started(job, queue_s)
            async for event in self._events(run, queue_s):
                yield event
        finally:
            if not ticket.granted:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(ticket)
                for t in self._waiters:
                    t.wake.set()
                self._changed()
            elif run is None or run.future is None:
                self._release()  # admitted but never reached the engine
            elif not run.future.done() and not run.delivered:
                await self._stop(run, "")

    def _cancel_trim(self) -> None:
        if self._trim_timer is not None:
            self._trim_timer.cancel()
            self._trim_timer = None

    def _start(self, job: GenerateJob) -> _Run:
        """A run of job on the engine thread, started now."""
        self._cancel_trim()  # busy again: keep the memory
        run = _Run(job, _engine.CancelToken())
        loop = asyncio.get_running_loop()
        model = self.model
        q: asyncio.Queue[Any] = asyncio.Queue()
        run_q = q
        every = max(1, job.preview_every)
        seq = self._seq
        want = bool(job.preview_format)

        def on_step(info: Any) -> bool:  # engine thread: keep it tiny
            if run.stop:
                return True
            s = next(seq)
            due = want and (info.step % every == 0 or info.step == info.n_steps)
            if due:
                run.latest = (s, info.x0)
            msg = _StepMsg(s, info.image_index, info.step, info.n_steps, float(info.sigma),
                           float(info.elapsed_s), due)
            try:
                loop.call_soon_threadsafe(run_q.put_nowait, msg)
            except RuntimeError:  # the loop is closed: stop the engine
                return True
            return False

        def work() -> tuple[Any, list[Image], float]:
            if run.stop:
                raise _engine.Cancelled(6, "cancelled before start")
            runtime = getattr(model, "runtime", None)
            try:
                result = model.generate(
                    job.prompt,
                    width=job.width,
                    height=job.height,
                    steps=job.steps,
                    seed=job.seed,
                    negative_prompt=job.negative_prompt,
                    true_cfg_scale=job.true_cfg_scale,
                    num_images=job.num_images,
                    on_step=on_step,
                    cancel=run.token,
                    park=False,  # the pool encodes the PNG next (the cores are idle now)
                )
                # encode here on the engine thread, on the engine's pool: no hop through the
                # event loop to another thread
                t0 = time.perf_counter()
                pixels = getattr(result, "pixels", None) or result.images  # arrays skip PIL
                images = []
                heads = run.png_heads  # None when the loop has not made them yet
                for i, (img, seed) in enumerate(zip(pixels, result.seeds, strict=True)):
                    head = heads[i] if heads else None
                    text = () if head else _png_text(job.png_text, int(seed))
                    data, w, h = encode_final(img, job.output_format, job.output_quality,
                                              text, runtime, head)
                    images.append(Image(i, int(seed), job.output_format, w, h, data))
            finally:
                if runtime is not None:
                    runtime.park()  # the pool's threads stop spinning: the cores go to the loop
            out = (result, images, time.perf_counter() - t0)
            # straight into the event queue: the consumer wakes one loop pass sooner than
            # through the future's callbacks (the future still completes for bookkeeping)
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(run_q.put_nowait, _Result(out))
            return out

        run.future = loop.run_in_executor(self._executor, work)
        run.future.add_done_callback(lambda f: self._engine_done(run, f))
        run.future.add_done_callback(lambda f: q.put_nowait(_END))
        run.queue = q
        self._runs.add(run)
        return run

    async def _events(self, run: _Run, queue_s: float) -> AsyncIterator[Event]:
        loop = asyncio.get_running_loop()
        job = run.job
        q = run.queue
        assert q is not None and run.future is not None
        total = job.steps * job.num_images
        done_steps = 0
        if job.output_format == "PNG":  # the PNG heads, while the engine runs: not after it
            run.png_heads = [png_head(job.width, job.height, 3, _png_text(job.png_text,
                                                                          job.seed + i))
                             for i in range(job.num_images)]
        while (msg := await q.get()) is not _END and not isinstance(msg, _Result):
            preview = None
            if msg.due:
                latest = run.latest
                if latest is not None and latest[0] == msg.seq:
                    run.latest = None
                    args = (latest[1], job.preview_format, job.preview_max_side,
                            job.preview_quality)
                    if latest[1][0].size <= INLINE_PREVIEW_PIXELS:
                        preview = encode_preview(*args)
                    else:
                        preview = await loop.run_in_executor(self._aux, encode_preview, *args)
                    run.sent += 1
                else:
                    run.skipped += 1
            done_steps += 1
            eta = msg.elapsed_s / done_steps * (total - done_steps) if done_steps else 0.0
            yield Step(msg.image_index, msg.step, msg.n_steps, msg.sigma, msg.elapsed_s, eta,
                       preview)
        try:
            out = msg.value if isinstance(msg, _Result) else run.future.result()
            result, images, encode_s = out
            run.delivered = True
        except _engine.Cancelled:
            if run.reason:
                raise Unavailable(f"generation stopped: {run.reason}") from None
            raise
        t = result.timings
        self._mean_engine_s = (0.8 * self._mean_engine_s + 0.2 * t.total_s
                               if self._mean_engine_s else t.total_s)
        per_unit = t.total_s / job.work_units
        self._s_per_unit = (0.8 * self._s_per_unit + 0.2 * per_unit
                            if self._speed_samples else per_unit)
        self._speed_samples += 1
        for image in images:
            yield image
        neg = result.negative_info
        yield Finished(
            seeds=tuple(int(s) for s in result.seeds),
            steps=int(result.steps),
            prompt_truncated=bool(result.truncated),
            negative_truncated=bool(getattr(neg, "truncated", False)) if neg else False,
            queue_s=queue_s,
            prompt_encode_s=float(t.prompt_encode_s),
            steps_s=tuple(float(x) for x in t.steps_s),
            vae_decode_s=float(t.vae_decode_s),
            image_encode_s=encode_s,
            engine_s=float(t.total_s),
            previews_sent=run.sent,
            previews_skipped=run.skipped,
        )

    async def _stop(self, run: _Run, reason: str) -> None:
        """Cancel the engine (within one transformer block) and wait for its thread."""
        run.reason = run.reason or reason
        run.stop = True
        run.token.cancel()
        if run.future is None:
            return
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.shield(run.future), self._cancel_wait_s)
        except TimeoutError:
            log.error("engine did not stop within %.0f s of cancel", self._cancel_wait_s)
        except BaseException:  # Cancelled (expected) or the engine's own error
            pass
        log.debug("engine stopped %.1f ms after cancel", (time.perf_counter() - t0) * 1e3)

    # -- shutdown -------------------------------------------------------------------------

    async def drain(self, grace_s: float) -> None:
        """Stop admitting (new and queued requests get Unavailable), give running generations
        grace_s to finish, then cancel them and wait for the engine threads."""
        if self.state in ("draining", "closed"):
            return
        self.state = "draining"
        self._abort_load.set()
        for t in self._waiters:
            t.rejected = True
            t.wake.set()
        self._waiters.clear()
        self._changed()
        if self._idle is not None and self._running:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace_s)
        runs = [r for r in self._runs if r.future is not None and not r.future.done()]
        if runs:
            log.warning("grace period over: cancelling %d running generation(s)", len(runs))
            await asyncio.gather(*(self._stop(r, "the server is shutting down") for r in runs))

    def cancel_running(self, reason: str) -> None:
        """Cancel every running generation now (a second SIGTERM)."""
        for r in list(self._runs):
            r.reason = r.reason or reason
            r.stop = True
            r.token.cancel()

    async def close(self) -> None:
        """drain(0) if needed, then shut the executors down (waits for the engine threads)."""
        if self.state != "closed":
            await self.drain(0.0)
            self.state = "closed"
        self._cancel_trim()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._executor.shutdown, True)
        await loop.run_in_executor(None, self._aux.shutdown, True)

    def stats(self) -> Mapping[str, Any]:
        return {"state": self.state, "running": self._running, "queued": len(self._waiters)}
