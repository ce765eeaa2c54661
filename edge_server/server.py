"""`qwen-edge serve`: the grpc.aio server around an EngineAdapter.

Start-up order: bind every listener and start gRPC (health NOT_SERVING, reflection, metrics
and the systemd watchdog are live at once), then load the model on the engine thread
(STATUS= and EXTEND_TIMEOUT_USEC= per loading step), then health SERVING and READY=1.

Shutdown on SIGTERM / SIGINT (a second signal skips the grace period):
  1. STOPPING=1; grpc.health.v1 -> NOT_SERVING for every service (load balancers drain us)
  2. queued requests and new ones get UNAVAILABLE + RetryInfo; running generations get
     server.grace_s to finish, then are cancelled (the engine stops within one block)
  3. gRPC stops (a short grace flushes the last messages), unix sockets are removed.

Logs are one line per event on stderr: `time level logger: message key=value ...` (text) or
JSON objects (server.log_format = "json"); under systemd (JOURNAL_STREAM set) text lines carry a
`<N>` syslog priority prefix so `journalctl -p` filters work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import grpc
from grpc_health.v1 import _async as health_async
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from edge_server.auth import HEALTH_METHODS, TokenAuthInterceptor
from edge_server.config import Config, parse_listen
from edge_server.engine import EngineAdapter, GenerativeModel, ProgressFn
from edge_server.metrics import Metrics
from edge_server.notify import Notifier
from edge_server.service import SERVICE_NAME, ImageGenerationService, add_to_server

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
REQUIRED_COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer")
_FLUSH_GRACE_S = 2.0
_LOAD_EXTEND_S = 120.0  # EXTEND_TIMEOUT_USEC while loading makes progress


# ---- logging ------------------------------------------------------------------------------

_SYSLOG = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
           logging.CRITICAL: 2}


def _kv_text(kv: dict[str, Any]) -> str:
    parts = []
    for k, v in kv.items():
        s = str(v)
        if not s or any(c.isspace() or c in '="' for c in s):
            s = json.dumps(s, ensure_ascii=False)
        parts.append(f"{k}={s}")
    return " ".join(parts)


class KeyValueFormatter(logging.Formatter):
    """`2025-01-01T00:00:00.000Z INFO logger: message k=v ...`, optionally `<N>`-prefixed."""

    def __init__(self, syslog_prefix: bool = False) -> None:
        super().__init__()
        self.syslog_prefix = syslog_prefix

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        ts = ts.replace("+00:00", "Z")
        line = f"{ts} {record.levelname} {record.name}: {record.getMessage()}"
        kv = getattr(record, "kv", None)
        if kv:
            line += " " + _kv_text(kv)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if self.syslog_prefix:
            prio = _SYSLOG.get(record.levelno, 6)
            line = "\n".join(f"<{prio}>{ln}" for ln in line.splitlines())
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the record's kv fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        kv = getattr(record, "kv", None)
        if kv:
            obj.update({k: v for k, v in kv.items() if k not in obj})
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False, default=str)


def configure_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Root logging to stderr (journald captures it); idempotent."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(KeyValueFormatter(syslog_prefix=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_qwen_edge", False):
            root.removeHandler(h)
    handler._qwen_edge = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())


# ---- model loading ------------------------------------------------------------------------


def model_loader(cfg: Config) -> Callable[[ProgressFn], GenerativeModel]:
    """load_model(cfg.model...), a component check, and (model.warmup) every component loaded
    up front so the first request does not pay for it."""
    m = cfg.model

    def load(progress: ProgressFn) -> GenerativeModel:
        from edge_server.model import load_model

        path = m.path
        if not path:
            from edge_server.demo import ensure_demo_model

            path = str(ensure_demo_model())
            log.warning("no model.path: serving the demo model (random weights, noise images)",
                        extra={"kv": {"path": path}})
        model = load_model(path, lora=m.lora or None, lora_scale=m.lora_scale,
                           threads=m.threads or None, isa=m.isa or None, progress=progress)
        missing = [c for c in REQUIRED_COMPONENTS if not model.has(c)]
        if missing:
            raise FileNotFoundError(f"model '{path}' lacks {', '.join(missing)}: cannot generate")
        if m.warmup:
            model.load_transformer()
            progress("vae", 0, 1)
            model.load_vae()
            progress("text_encoder", 0, 1)
            model.text_encoder_info()  # loads the encoder
            _ = model.tokenizer
        return model

    return load


# ---- the server ---------------------------------------------------------------------------


MAX_HEALTH_WATCHERS = 256  # open grpc.health.v1 Watch streams (client-side health checking)
MAX_STREAMS_PER_CONNECTION = 100  # HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS


class CappedHealthServicer(health_async.HealthServicer):
    """grpc.health.v1 with at most max_watchers Watch streams open at once; one more gets
    RESOURCE_EXHAUSTED (gRPC's client-side health checking holds one per channel)."""

    def __init__(self, max_watchers: int) -> None:
        super().__init__()
        self._max_watchers = max_watchers
        self._watchers = 0

    async def Watch(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        if self._watchers >= self._max_watchers:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"too many health watchers (at most {self._max_watchers})")
        self._watchers += 1
        try:
            await super().Watch(request, context)
        finally:
            self._watchers -= 1


def max_request_bytes(cfg: Config) -> int:
    """gRPC's receive limit: room for a request whose prompt and negative prompt both have the
    most characters allowed (4 UTF-8 bytes each), so that validation, not gRPC, answers an
    over-long prompt (INVALID_ARGUMENT naming the field). Larger messages are refused by gRPC
    itself with RESOURCE_EXHAUSTED and no details."""
    return max(4 << 20, 8 * cfg.generation.max_prompt_chars + (64 << 10))


class EdgeServer:
    """One gRPC server + engine. start() returns once the listeners are up (the model loads in
    the background: wait_loaded()); stop() drains; `ports` maps each listen address to its bound
    port (TCP; 0 for unix sockets)."""

    def __init__(
        self,
        cfg: Config,
        *,
        loader: Callable[[ProgressFn], GenerativeModel] | None = None,
        notifier: Notifier | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.notifier = notifier if notifier is not None else Notifier.from_env()
        self.metrics = metrics if metrics is not None else Metrics()
        name = cfg.model.name or (os.path.basename(os.path.normpath(cfg.model.path))
                                  if cfg.model.path else "demo")
        self.adapter = EngineAdapter(
            loader or model_loader(cfg), name=name, max_concurrent=cfg.server.max_concurrent,
            max_queue=cfg.server.max_queue, idle_trim_s=cfg.model.idle_trim_s,
            on_change=self._on_change)
        self.health = CappedHealthServicer(MAX_HEALTH_WATCHERS)
        self.ports: dict[str, int] = {}
        self.metrics_port: int | None = None
        self.exit_code = 0
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._unix_paths: list[str] = []
        self._stopping: asyncio.Task[None] | None = None
        self.loaded = asyncio.Event()
        self.finished = asyncio.Event()  # load failed or stop() completed
        self._last_status = ""

    # -- status ---------------------------------------------------------------------------

    def _status_line(self) -> str:
        a = self.adapter
        if a.state == "ready":
            return f"ready: {a.in_flight} running, {a.queue_depth} queued"
        if a.state == "draining":
            return f"draining: {a.in_flight} running"
        return a.state

    def _on_change(self) -> None:
        self.metrics.queue_depth.set(self.adapter.queue_depth)
        self.metrics.in_flight.set(self.adapter.in_flight)
        line = self._status_line()
        if line != self._last_status and self.adapter.state in ("ready", "draining"):
            self._last_status = line
            self.notifier.status(line)

    # -- start ----------------------------------------------------------------------------

    def _options(self) -> list[tuple[str, Any]]:
        s = self.cfg.server
        opts: list[tuple[str, Any]] = [
            ("grpc.so_reuseport", 0),  # a second server must fail to bind, not steal the port
            ("grpc.max_receive_message_length", max_request_bytes(self.cfg)),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
            ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        if s.keepalive_time_s > 0:
            opts += [("grpc.keepalive_time_ms", int(s.keepalive_time_s * 1000)),
                     ("grpc.keepalive_timeout_ms", 20_000)]
        if s.max_connection_idle_s > 0:
            opts.append(("grpc.max_connection_idle_ms", int(s.max_connection_idle_s * 1000)))
        return opts

    def _credentials(self) -> grpc.ServerCredentials | None:
        t = self.cfg.tls
        if not t.cert_file:
            return None

        def read(p: str) -> bytes:
            with open(p, "rb") as f:
                return f.read()

        roots = read(t.client_ca_file) if t.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(read(t.key_file), read(t.cert_file))], root_certificates=roots,
            require_client_auth=t.require_client_auth)

    def _bind(self, server: grpc.aio.Server) -> None:
        creds = self._credentials()
        for addr in self.cfg.server.listen:
            kind, host, _ = parse_listen(addr)
            if kind == "unix":
                _clear_stale_socket(host)
                port = server.add_insecure_port(f"unix:{host}")
                self._unix_paths.append(host)
            elif creds is not None:
                port = server.add_secure_port(addr, creds)
            else:
                port = server.add_insecure_port(addr)
            if not port:
                raise OSError(f"server.listen: cannot bind {addr}")
            self.ports[addr] = port if kind == "tcp" else 0
            log.info("listening", extra={"kv": {
                "address": addr, "port": port if kind == "tcp" else None,
                "tls": kind == "tcp" and creds is not None,
                "mtls": kind == "tcp" and self.cfg.tls.require_client_auth}})

    async def start(self) -> None:
        cfg = self.cfg
        interceptors = []
        if cfg.auth.tokens:
            exempt = HEALTH_METHODS if cfg.auth.exempt_health else ()
            interceptors.append(TokenAuthInterceptor(cfg.auth.tokens, exempt))
        # No server-wide RPC cap: long-lived health Watch and reflection streams would count
        # against it and lock every client out. Generate is bounded by the adapter's queue,
        # Watch by CappedHealthServicer, one connection by grpc.max_concurrent_streams.
        server = grpc.aio.server(interceptors=interceptors, options=self._options())
        self._server = server
        service = ImageGenerationService(self.adapter, cfg, self.metrics)
        add_to_server(service, server)  # image chunks go out pre-serialized
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        await self.health.set("", NOT_SERVING)
        await self.health.set(SERVICE_NAME, NOT_SERVING)
        if cfg.server.reflection:
            reflection.enable_server_reflection(
                (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME), server)
        try:
            self._bind(server)
            await server.start()
        except BaseException:
            await server.stop(None)
            await self.adapter.close()
            raise
        for path in self._unix_paths:
            os.chmod(path, cfg.unix_socket_mode)
        if cfg.metrics.port:
            self.metrics_port = self.metrics.start_http(cfg.metrics.host, cfg.metrics.port)
        interval = self.notifier.watchdog_interval()
        if interval:
            self._tasks.append(asyncio.create_task(self._watchdog(interval), name="watchdog"))
        self._tasks.append(asyncio.create_task(self._load(), name="load"))

    async def _watchdog(self, interval: float) -> None:
        """WATCHDOG=1 from the event loop (so a blocked loop trips systemd's watchdog)."""
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def _load(self) -> None:
        n = self.notifier
        path = self.cfg.model.path or "(demo)"
        n.status(f"loading model {path}")
        n.extend_timeout(_LOAD_EXTEND_S)
        last = [0.0]

        bar = sys.stderr.isatty()  # an interactive `qwen-edge serve` shows a progress bar

        def progress(stage: str, done: int, total: int) -> None:  # engine thread
            now = time.monotonic()
            if bar and total > 0:
                filled = int(30 * done / total)
                sys.stderr.write(f"\rloading {stage:<12} [{'#' * filled}{'.' * (30 - filled)}] "
                                 f"{done}/{total}" + ("\n" if done == total else ""))
                sys.stderr.flush()
            if now - last[0] >= 0.5 or done == total:
                last[0] = now
                n.send(f"STATUS=loading {stage} {done}/{total}",
                       f"EXTEND_TIMEOUT_USEC={int(_LOAD_EXTEND_S * 1e6)}")

        t0 = time.perf_counter()
        try:
            desc = await self.adapter.load(progress)
        except Exception as e:
            if self.adapter.state == "draining":
                log.info("model load aborted: stopping")
                return
            self.exit_code = 1
            log.error("model load failed: %s", e, exc_info=not isinstance(e, OSError | ValueError),
                      extra={"kv": {"path": path}})
            n.status(f"model load failed: {e}")
            self.finished.set()
            return
        dt = time.perf_counter() - t0
        self.metrics.model_loaded.set(1)
        self.metrics.model_load_seconds.set(dt)
        await self.health.set("", SERVING)
        await self.health.set(SERVICE_NAME, SERVING)
        self.loaded.set()
        self._last_status = self._status_line()
        n.ready(self._last_status)
        log.info("model loaded", extra={"kv": {
            "path": desc.path, "seconds": round(dt, 2), "isa": desc.isa, "threads": desc.threads,
            "default_steps": desc.default_steps}})

    async def wait_loaded(self, timeout: float | None = None) -> bool:
        """True once SERVING; False if the load failed (or timeout)."""
        loaded = asyncio.create_task(self.loaded.wait())
        finished = asyncio.create_task(self.finished.wait())
        try:
            await asyncio.wait({loaded, finished}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            loaded.cancel()
            finished.cancel()
        return self.loaded.is_set()

    # -- stop -----------------------------------------------------------------------------

    def request_stop(self, grace: float | None = None) -> asyncio.Task[None]:
        """Begin the drain (idempotent); a second call with grace=0 cancels running work."""
        if self._stopping is None:
            self._stopping = asyncio.create_task(self.stop(grace), name="stop")
        elif grace == 0:
            self.adapter.cancel_running("the server is shutting down")
        return self._stopping

    async def stop(self, grace: float | None = None) -> None:
        grace = self.cfg.server.grace_s if grace is None else grace
        a = self.adapter
        log.info("draining", extra={"kv": {"grace_s": grace, "running": a.in_flight,
                                           "queued": a.queue_depth}})
        self.notifier.stopping(f"draining: {a.in_flight} running, {a.queue_depth} queued")
        await self.health.enter_graceful_shutdown()
        await a.drain(grace)
        if self._server is not None:
            await self._server.stop(_FLUSH_GRACE_S)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await a.close()
        self.metrics.stop_http()
        for path in self._unix_paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self.notifier.close()
        log.info("stopped")
        self.finished.set()


def _clear_stale_socket(path: str) -> None:
    """Remove a leftover unix socket file; refuse when something still listens on it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        d = os.path.dirname(path)
        if d and not os.path.isdir(d):
            raise OSError(f"server.listen: directory {d} does not exist") from None
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"server.listen: {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: stale
        return
    finally:
        probe.close()
    raise OSError(f"server.listen: another process is listening on {path}")


async def serve(
    cfg: Config, *, loader: Callable[[ProgressFn], GenerativeModel] | None = None
) -> int:
    """Run until SIGTERM / SIGINT (or a failed model load); returns the exit code."""
    server = EdgeServer(cfg, loader=loader)
    loop = asyncio.get_running_loop()
    signals_seen = [0]

    def on_signal(sig: signal.Signals) -> None:
        signals_seen[0] += 1
        if signals_seen[0] == 1:
            log.info("signal received: draining", extra={"kv": {"signal": sig.name}})
            server.request_stop()
        else:
            log.warning("second signal: cancelling running generations",
                        extra={"kv": {"signal": sig.name}})
            server.request_stop(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await server.start()
        await server.finished.wait()
        if server._stopping is None:  # load failed: shut the listeners down
            await server.stop(0)
        else:
            await server._stopping
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return server.exit_code
