"""The qwen_edge.v1.ImageGeneration servicer: proto <-> domain mapping and status codes only.

Validation collects every bad field into one INVALID_ARGUMENT whose google.rpc.BadRequest
details name the field and the allowed range. Admission failures are raised by the adapter
before the first response message (RESOURCE_EXHAUSTED with ErrorInfo QUEUE_FULL + RetryInfo, or
UNAVAILABLE + RetryInfo). Engine errors map through one table (_STATUS_FOR). Cleanup of the
engine run lives in the adapter's `finally:` and this handler closes the adapter's generator in
its own `finally:`, so a client cancel (GeneratorExit at a yield), a deadline or a disconnect
(CancelledError at an await) all stop the engine, and so does a client that stops reading
(_StallGuard: server.write_timeout_s). Request bytes that do not parse reach the handler as
Malformed (the deserializer never raises: gRPC would answer UNKNOWN).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
import time
import unicodedata
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from edge_server import __version__, _engine
from edge_server._proto import imagegen_pb2 as pb
from edge_server._proto import imagegen_pb2_grpc as pb_grpc
from edge_server.config import Config
from edge_server.engine import (
    Busy,
    EngineAdapter,
    Finished,
    GenerateJob,
    Image,
    Queued,
    Started,
    Step,
    Unavailable,
    WouldMissDeadline,
)
from edge_server.metrics import Metrics
from edge_server.wire import (
    bad_utf8_field,
    image_chunk_messages,
    payload_size,
    serialize_response,
)

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ImageGeneration"].full_name
CHUNK_BYTES = 1 << 20  # ImageChunk.data is at most 1 MiB
ERROR_DOMAIN = "qwen-edge"
MAX_REQUEST_ID = 128
MAX_CFG = 100.0

PREVIEW_NAMES = {
    pb.PREVIEW_FORMAT_JPEG: "JPEG",
    pb.PREVIEW_FORMAT_PNG: "PNG",
    pb.PREVIEW_FORMAT_WEBP: "WEBP",
    pb.PREVIEW_FORMAT_RAW_LATENT: "RAW_LATENT",
}
PREVIEW_ENUM = {v: k for k, v in PREVIEW_NAMES.items()}
OUTPUT_NAMES = {
    pb.IMAGE_FORMAT_UNSPECIFIED: "PNG",
    pb.IMAGE_FORMAT_PNG: "PNG",
    pb.IMAGE_FORMAT_JPEG: "JPEG",
    pb.IMAGE_FORMAT_WEBP: "WEBP",
    pb.IMAGE_FORMAT_RAW_RGB8: "RAW_RGB8",
}
OUTPUT_ENUM = {"PNG": pb.IMAGE_FORMAT_PNG, "JPEG": pb.IMAGE_FORMAT_JPEG,
               "WEBP": pb.IMAGE_FORMAT_WEBP, "RAW_RGB8": pb.IMAGE_FORMAT_RAW_RGB8}

# One table from engine errors to gRPC codes (most specific first).
_STATUS_FOR: tuple[tuple[type[BaseException], grpc.StatusCode, str], ...] = (
    (_engine.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    (_engine.OutOfMemory, grpc.StatusCode.RESOURCE_EXHAUSTED, "OUT_OF_MEMORY"),
    (_engine.Unsupported, grpc.StatusCode.FAILED_PRECONDITION, "UNSUPPORTED"),
    (_engine.EngineIOError, grpc.StatusCode.FAILED_PRECONDITION, "MODEL_IO"),
    (_engine.FormatError, grpc.StatusCode.FAILED_PRECONDITION, "MODEL_FORMAT"),
    (_engine.Cancelled, grpc.StatusCode.CANCELLED, "CANCELLED"),
)


class Malformed:
    """A request whose bytes do not parse (what the deserializer returns instead of raising:
    gRPC would answer UNKNOWN); the handler answers INVALID_ARGUMENT naming the field."""

    def __init__(self, data: bytes, message_type: Any, error: Exception) -> None:
        self.field = bad_utf8_field(data, message_type)
        what = "not UTF-8" if self.field else f"not a valid {message_type.DESCRIPTOR.name}"
        self.field = self.field or "request"
        self.description = f"{what} ({error})"


def _parser(message_type: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except DecodeError as e:
            return Malformed(data, message_type, e)
    return parse


async def _abort_malformed(context: grpc.aio.ServicerContext, bad: Malformed) -> None:
    await context.abort_with_status(_status(
        grpc.StatusCode.INVALID_ARGUMENT, f"{bad.field}: {bad.description}",
        error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=bad.field,
                                                        description=bad.description)])))


class _StallGuard:
    """Cancels the handler's task when one message's write has waited timeout_s for the
    client to take it (a client that stops reading would hold the engine and its images
    forever). arm() before each yield, disarm() after; timeout_s 0: never."""

    def __init__(self, timeout_s: float, context: grpc.aio.ServicerContext) -> None:
        self._timeout_s = timeout_s
        self._context = context
        self._task = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._aborting: asyncio.Future[None] | None = None
        self.fired = False

    def arm(self) -> None:
        if self._timeout_s > 0 and self._task is not None:
            self._handle = self._loop.call_later(self._timeout_s, self._fire)

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        """Queues the call's final status (the client sees it once it reads again; the status
        waits behind the stalled message) and stops the handler, which waits in the write: its
        finally stops the engine. Both run in the next loop pass, the status first."""
        self._handle = None
        self.fired = True
        self._aborting = asyncio.ensure_future(self._abort())
        assert self._task is not None
        self._task.cancel()

    async def _abort(self) -> None:
        with contextlib.suppress(Exception):  # AbortError is how abort() returns
            await self._context.abort(
                grpc.StatusCode.CANCELLED,
                f"the client took no message for {self._timeout_s:g} s (server.write_timeout_s)")


class RequestInvalid(Exception):
    """Field violations of a GenerateRequest: [(field, description)]."""

    def __init__(self, violations: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {d}" for f, d in violations))
        self.violations = violations


def _pack(msg: Any) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def _status(code: grpc.StatusCode, message: str, *details: Any) -> grpc.Status:
    return rpc_status.to_status(
        status_pb2.Status(code=code.value[0], message=message, details=[_pack(d) for d in details])
    )


def _retry(seconds: float) -> error_details_pb2.RetryInfo:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(max(0.0, seconds) * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=d)


def _error_info(reason: str, **meta: str) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=meta)


def _blank(text: str) -> bool:
    """No visible character: only white space, control and format characters (such as the
    zero-width space), which str.strip() partly keeps."""
    return not any(unicodedata.category(c)[0] in "LMNPS" for c in text)


class Limits:
    """The effective request limits: the model's SizeLimits capped by the configuration."""

    def __init__(self, model_limits: Any, cfg: Config) -> None:
        g = cfg.generation
        self.min_side = int(model_limits.min_side)
        self.max_side = int(model_limits.max_side)
        self.max_pixels = int(model_limits.max_pixels)
        self.multiple = int(model_limits.multiple)
        self.max_steps = int(model_limits.max_steps)
        if g.max_steps:
            self.max_steps = min(self.max_steps, g.max_steps)
        self.max_images = int(model_limits.max_images)
        if g.max_images:
            self.max_images = min(self.max_images, g.max_images)
        self.max_prompt_chars = g.max_prompt_chars


def to_job(request: pb.GenerateRequest, limits: Limits, default_steps: int, cfg: Config,
           model_name: str, deadline_s: float | None = None) -> GenerateJob:
    """Validate and resolve defaults; raises RequestInvalid listing every bad field.
    deadline_s: the seconds the client allows (None: no deadline admission)."""
    g = cfg.generation
    bad: list[tuple[str, str]] = []
    lim = limits

    prompt = request.prompt
    if _blank(prompt):
        bad.append(("prompt", "must not be empty or blank (it needs a visible character)"))
    elif len(prompt) > lim.max_prompt_chars:
        bad.append(("prompt", f"{len(prompt)} characters; at most {lim.max_prompt_chars} allowed"))
    elif "\0" in prompt:
        bad.append(("prompt", "contains a NUL character (U+0000)"))
    neg = request.negative_prompt
    if len(neg) > lim.max_prompt_chars:
        bad.append(("negative_prompt",
                    f"{len(neg)} characters; at most {lim.max_prompt_chars} allowed"))
    elif "\0" in neg:
        bad.append(("negative_prompt", "contains a NUL character (U+0000)"))

    width = request.width or g.default_width
    height = request.height or g.default_height
    side_rule = f"a multiple of {lim.multiple} in [{lim.min_side}, {lim.max_side}]"
    for name, v in (("width", width), ("height", height)):
        if v % lim.multiple or not lim.min_side <= v <= lim.max_side:
            default = getattr(g, "default_" + name)
            bad.append((name, f"{v}: must be {side_rule} (0 = default {default})"))
    if not any(f in ("width", "height") for f, _ in bad) and width * height > lim.max_pixels:
        bad.append(("width", f"width x height = {width}x{height} = {width * height} pixels; at "
                             f"most {lim.max_pixels} allowed"))

    steps = request.steps or default_steps
    if not 1 <= steps <= lim.max_steps:
        bad.append(("steps",
                    f"{steps}: must be in [1, {lim.max_steps}] (0 = default {default_steps})"))

    num_images = request.num_images or 1
    if not 1 <= num_images <= lim.max_images:
        bad.append(("num_images", f"{num_images}: must be in [1, {lim.max_images}] (0 = 1)"))

    if request.HasField("seed"):
        seed = int(request.seed)
        if seed > 2**64 - num_images:  # the images use seed .. seed + num_images - 1
            bad.append(("seed", f"{seed}: must be in [0, 2^64 - num_images]"))
    else:
        seed = secrets.randbits(63)

    if request.HasField("true_cfg_scale"):
        cfg_scale = float(request.true_cfg_scale)
        if not math.isfinite(cfg_scale) or not 0.0 <= cfg_scale <= MAX_CFG:
            bad.append(("true_cfg_scale",
                        f"{request.true_cfg_scale}: must be a finite number in [0, {MAX_CFG:g}] "
                        "(unset = 4 with a negative_prompt, else 1)"))
    else:
        cfg_scale = 4.0 if neg.strip() else 1.0

    p = request.preview
    pfmt = ""
    if p.format != pb.PREVIEW_FORMAT_NONE:
        if p.format not in PREVIEW_NAMES:
            bad.append(("preview.format", f"unknown value {p.format}; one of "
                                          + ", ".join(pb.PreviewFormat.keys())))
        else:
            pfmt = PREVIEW_NAMES[p.format]
    if p.max_side and not 8 <= p.max_side <= 4096:
        bad.append(("preview.max_side", f"{p.max_side}: must be in [8, 4096] (0 = default "
                                         f"{g.preview_max_side})"))
    if p.every_n_steps and not 1 <= p.every_n_steps <= max(1, steps):
        bad.append(("preview.every_n_steps", f"{p.every_n_steps}: must be in [1, steps={steps}] "
                                              "(0 = every step)"))
    if p.quality and not 1 <= p.quality <= 100:
        bad.append(("preview.quality", f"{p.quality}: must be in [1, 100] (0 = default)"))

    if request.output_format not in OUTPUT_NAMES:
        bad.append(("output_format", f"unknown value {request.output_format}; one of "
                                      + ", ".join(pb.ImageFormat.keys())))
    ofmt = OUTPUT_NAMES.get(request.output_format, "PNG")
    if request.output_quality and not 1 <= request.output_quality <= 100:
        bad.append(("output_quality",
                    f"{request.output_quality}: must be in [1, 100] (0 = default)"))

    rid = request.request_id
    if len(rid) > MAX_REQUEST_ID or not (rid.isascii() and rid.isprintable()):
        bad.append(("request_id", f"at most {MAX_REQUEST_ID} printable ASCII characters"))
    if bad:
        raise RequestInvalid(bad)
    if not (neg.strip() and cfg_scale > 1.0):
        cfg_scale = 1.0  # no guidance runs (diffusers' do_true_cfg): report what is applied

    png_text: tuple[tuple[str, str], ...] = ()
    if ofmt == "PNG" and g.png_metadata:
        params = (f"{prompt}\n" + (f"Negative prompt: {neg}\n" if neg else "")
                  + f"Steps: {steps}, Size: {width}x{height}, CFG scale: {cfg_scale:g}, "
                  f"Model: {model_name}")
        png_text = (("prompt", prompt), ("negative_prompt", neg), ("steps", str(steps)),
                    ("width", str(width)), ("height", str(height)),
                    ("true_cfg_scale", f"{cfg_scale:g}"), ("model", model_name),
                    ("software", f"qwen-edge {__version__}"), ("parameters", params))
    return GenerateJob(
        prompt=prompt,
        width=width,
        height=height,
        steps=steps,
        seed=seed,
        num_images=num_images,
        negative_prompt=neg if neg.strip() else None,
        true_cfg_scale=cfg_scale,
        preview_format=pfmt,
        preview_max_side=p.max_side or g.preview_max_side,
        preview_every=p.every_n_steps or 1,
        preview_quality=p.quality or g.preview_quality,
        output_format=ofmt,
        output_quality=request.output_quality or g.output_quality,
        png_text=png_text,
        request_id=rid or f"{random.getrandbits(128):032x}",  # an id, not a secret
        deadline_s=deadline_s,
    )


class ImageGenerationService(pb_grpc.ImageGenerationServicer):
    """Generate and GetModelInfo over an EngineAdapter."""

    def __init__(self, adapter: EngineAdapter, cfg: Config, metrics: Metrics) -> None:
        self._adapter = adapter
        self._cfg = cfg
        self._metrics = metrics
        self._limits: Limits | None = None

    def limits(self) -> Limits:
        if self._limits is None:
            desc = self._adapter.description
            if desc is None:
                raise Unavailable("the model is still loading", retry_after_s=5.0)
            self._limits = Limits(desc.limits, self._cfg)
        return self._limits

    async def _abort_unavailable(self, context: grpc.aio.ServicerContext, e: Unavailable) -> None:
        self._metrics.outcome("unavailable")
        await context.abort_with_status(
            _status(grpc.StatusCode.UNAVAILABLE, str(e), _retry(e.retry_after_s),
                    _error_info("UNAVAILABLE"))
        )

    async def Generate(
        self, request: pb.GenerateRequest | Malformed, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateResponse | bytes]:
        t0 = time.perf_counter()
        m = self._metrics
        if isinstance(request, Malformed):
            m.outcome("invalid")
            await _abort_malformed(context, request)
            return
        try:
            lim = self.limits()  # raises Unavailable while loading
            desc = self._adapter.description
            assert desc is not None
            remaining = (context.time_remaining() if self._cfg.server.deadline_admission
                         else None)
            job = to_job(request, lim, desc.default_steps, self._cfg, desc.name, remaining)
        except RequestInvalid as e:
            m.outcome("invalid")
            log.info("invalid request", extra={"kv": {"peer": context.peer(), "error": str(e)}})
            bad = error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in e.violations
            ])
            await context.abort_with_status(
                _status(grpc.StatusCode.INVALID_ARGUMENT, str(e), bad))
            return
        except Unavailable as e:
            await self._abort_unavailable(context, e)
            return

        rid = job.request_id
        kv: dict[str, Any] = {"request_id": rid, "peer": context.peer()}
        guard = _StallGuard(self._cfg.server.write_timeout_s, context)
        events = self._adapter.generate(job)
        outcome = ""
        finished: Finished | None = None
        try:
            try:
                first = await events.__anext__()  # admission: raises before any message
            except WouldMissDeadline as e:
                outcome = "rejected"
                log.info("would miss its deadline: rejected", extra={"kv": kv})
                await context.abort_with_status(_status(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, str(e), _retry(e.retry_after_s),
                    _error_info("WOULD_MISS_DEADLINE")))
                return
            except Busy as e:
                outcome = "rejected"
                log.info("queue full: rejected", extra={"kv": kv})
                await context.abort_with_status(_status(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, str(e), _retry(e.retry_after_s),
                    _error_info("QUEUE_FULL", max_queue=str(self._adapter.max_queue))))
                return
            except Unavailable as e:
                outcome = "unavailable"
                await context.abort_with_status(_status(
                    grpc.StatusCode.UNAVAILABLE, str(e), _retry(e.retry_after_s),
                    _error_info("UNAVAILABLE")))
                return
            guard.arm()
            yield self._response(rid, first)
            guard.disarm()
            try:
                async for ev in events:
                    if isinstance(ev, Finished):  # its metrics: after Done is on its way
                        finished = ev
                    for msg in self._responses(rid, ev, t0):
                        guard.arm()
                        yield msg
                        guard.disarm()
            except Unavailable as e:
                outcome = "unavailable"
                await context.abort_with_status(_status(
                    grpc.StatusCode.UNAVAILABLE, str(e), _retry(e.retry_after_s),
                    _error_info("UNAVAILABLE")))
                return
            except _engine.EngineError as e:  # never GeneratorExit / CancelledError here
                code, reason = next(((c, r) for t, c, r in _STATUS_FOR if isinstance(e, t)),
                                    (grpc.StatusCode.INTERNAL, "ENGINE_ERROR"))
                outcome = "error" if code is not grpc.StatusCode.CANCELLED else "cancelled"
                if code is grpc.StatusCode.INTERNAL:
                    log.error("engine error", exc_info=True, extra={"kv": kv})
                    text = "internal engine error (see the server log)"
                else:
                    log.warning("engine error: %s", e, extra={"kv": kv})
                    text = str(e)
                await context.abort_with_status(_status(code, text, _error_info(reason)))
                return
            except Exception:
                outcome = "error"
                log.exception("generation failed", extra={"kv": kv})
                await context.abort_with_status(_status(
                    grpc.StatusCode.INTERNAL, "internal server error (see the server log)",
                    _error_info("INTERNAL")))
                return
            outcome = "ok"
        finally:
            if finished is not None:
                self._observe_finished(finished)
            await events.aclose()  # stops the engine if we got here early (cancel, deadline)
            guard.disarm()
            if guard.fired:
                outcome = "stalled"
                log.warning("the client stopped reading: cancelled", extra={"kv": {
                    **kv, "write_timeout_s": self._cfg.server.write_timeout_s}})
            if not outcome:
                remaining = context.time_remaining()
                outcome = ("deadline_exceeded" if remaining is not None and remaining <= 0
                           else "cancelled")
            m.outcome(outcome)
            m.observe("total", time.perf_counter() - t0)
            kv.update(outcome=outcome, ms=round((time.perf_counter() - t0) * 1e3, 1))
            log.info("generate finished", extra={"kv": kv})

    def _response(self, rid: str, ev: Any) -> pb.GenerateResponse:
        if isinstance(ev, Queued):
            return pb.GenerateResponse(
                request_id=rid, queued=pb.Queued(position=ev.position, queue_depth=ev.queue_depth))
        if isinstance(ev, Started):
            j = ev.job
            self._metrics.observe("queue", ev.queue_s)
            return pb.GenerateResponse(request_id=rid, started=pb.Started(
                seed=j.seed, width=j.width, height=j.height, steps=j.steps,
                num_images=j.num_images, true_cfg_scale=j.true_cfg_scale,
                queue_ms=ev.queue_s * 1e3, model=self._adapter.name))
        if isinstance(ev, Step):
            # filled in place: a sub-message passed to the constructor would be copied again
            resp = pb.GenerateResponse(request_id=rid)
            s = resp.step
            s.image_index, s.step, s.total_steps = ev.image_index, ev.step, ev.n_steps
            s.sigma, s.elapsed_ms, s.eta_ms = ev.sigma, ev.elapsed_s * 1e3, ev.eta_s * 1e3
            if ev.preview is not None:
                pv = ev.preview
                s.preview_format = PREVIEW_ENUM[pv.format]
                if pv.format == "RAW_LATENT":
                    s.raw_latent = pv.data
                    s.latent_shape.extend(pv.latent_shape)
                else:
                    s.preview_image = pv.data
                    s.preview_width, s.preview_height = pv.width, pv.height
                self._metrics.previews.labels("sent").inc()
                self._metrics.preview_bytes.inc(len(pv.data))
            return resp
        raise TypeError(f"unexpected event {type(ev).__name__}")  # pragma: no cover

    def _responses(self, rid: str, ev: Any, t0: float) -> list[pb.GenerateResponse | bytes]:
        if isinstance(ev, Image):  # pre-serialized: the payload is copied once (wire.py)
            self._metrics.image_bytes.inc(payload_size(ev.data))
            return image_chunk_messages(
                rid, ev.data, CHUNK_BYTES, image_index=ev.index, seed=ev.seed,
                format=OUTPUT_ENUM[ev.format], width=ev.width, height=ev.height)
        if isinstance(ev, Finished):
            t = pb.StageTimings(
                queue_ms=ev.queue_s * 1e3, prompt_encode_ms=ev.prompt_encode_s * 1e3,
                denoise_ms=sum(ev.steps_s) * 1e3, vae_decode_ms=ev.vae_decode_s * 1e3,
                image_encode_ms=ev.image_encode_s * 1e3, engine_ms=ev.engine_s * 1e3,
                total_ms=(time.perf_counter() - t0) * 1e3, step_ms=[s * 1e3 for s in ev.steps_s])
            return [pb.GenerateResponse(request_id=rid, done=pb.Done(
                timings=t, prompt_truncated=ev.prompt_truncated,
                negative_prompt_truncated=ev.negative_truncated, seeds=list(ev.seeds),
                steps=ev.steps, num_images=len(ev.seeds), previews_sent=ev.previews_sent,
                previews_skipped=ev.previews_skipped))]
        return [self._response(rid, ev)]

    def _observe_finished(self, ev: Finished) -> None:
        m = self._metrics
        m.observe("prompt_encode", ev.prompt_encode_s)
        for s in ev.steps_s:
            m.observe("step", s)
        m.observe("vae_decode", ev.vae_decode_s)
        m.observe("image_encode", ev.image_encode_s)
        m.observe("engine", ev.engine_s)
        m.previews.labels("skipped").inc(ev.previews_skipped)

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest | Malformed,
        context: grpc.aio.ServicerContext
    ) -> pb.ModelInfo:
        if isinstance(request, Malformed):
            await _abort_malformed(context, request)
        try:
            lim = self.limits()
        except Unavailable as e:
            await self._abort_unavailable(context, e)
            raise  # pragma: no cover (abort raises)
        d = self._adapter.description
        assert d is not None
        g = self._cfg.generation
        info = pb.ModelInfo(
            name=d.name, path=d.path, default_steps=d.default_steps, isa=d.isa,
            backend=d.backend, threads=d.threads, version=__version__,
            engine_version=d.engine_version, default_width=g.default_width,
            default_height=g.default_height, max_concurrent=self._adapter.max_concurrent,
            max_queue=self._adapter.max_queue,
            limits=pb.SizeLimits(
                min_side=lim.min_side, max_side=lim.max_side, max_pixels=lim.max_pixels,
                multiple=lim.multiple, max_steps=lim.max_steps, max_images=lim.max_images,
                max_prompt_chars=lim.max_prompt_chars),
            preview_formats=[pb.PREVIEW_FORMAT_NONE, *PREVIEW_NAMES],
            output_formats=list(OUTPUT_ENUM.values()),
        )
        for c in d.components:
            info.components.add(name=c["name"], present=c["present"], dtype=c["dtype"],
                                details=c["details"])
        if d.lora:
            info.lora.CopyFrom(pb.Lora(path=d.lora, scale=d.lora_scale, lightning=d.lightning))
        return info


def add_to_server(service: ImageGenerationService, server: grpc.aio.Server) -> None:
    """pb_grpc.add_ImageGenerationServicer_to_server, with one change: Generate's response
    serializer passes pre-serialized messages (bytes: the image chunks, wire.py) through."""
    handlers = {
        "Generate": grpc.unary_stream_rpc_method_handler(
            service.Generate, request_deserializer=_parser(pb.GenerateRequest),
            response_serializer=serialize_response),
        "GetModelInfo": grpc.unary_unary_rpc_method_handler(
            service.GetModelInfo, request_deserializer=_parser(pb.GetModelInfoRequest),
            response_serializer=pb.ModelInfo.SerializeToString),
    }
    methods = {m.name for m in pb.DESCRIPTOR.services_by_name["ImageGeneration"].methods}
    if set(handlers) != methods:  # a new RPC in the proto must be registered here too
        raise RuntimeError(f"{SERVICE_NAME} has RPCs {sorted(methods)}, handlers for "
                           f"{sorted(handlers)}")
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
