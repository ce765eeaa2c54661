"""Helpers for the server tests: a fake model with the QwenImageModel.generate contract, an
in-process server on its own event-loop thread, certificates, a fake NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
from PIL import Image

from edge_server import _engine
from edge_server.config import Config, ModelConfig, ServerConfig
from edge_server.notify import Notifier
from edge_server.pipeline import GenerationResult, SizeLimits, StepInfo, Timings
from edge_server.server import EdgeServer


def bad_requests(lim: SizeLimits, max_prompt_chars: int) -> list[tuple[str, dict[str, Any], str]]:
    """(case name, GenerateRequest fields, the field INVALID_ARGUMENT must name) for limits."""
    from edge_server._proto import imagegen_pb2 as pb

    over = lim.max_side  # a legal side whose square exceeds max_pixels, when there is one
    wide = dict(width=over, height=over) if over * over > lim.max_pixels else None
    cases = [
        ("empty prompt", dict(prompt=""), "prompt"),
        ("blank prompt", dict(prompt=" \n\t"), "prompt"),
        ("invisible prompt", dict(prompt="\u200b\u2060\x07 "), "prompt"),
        ("NUL in prompt", dict(prompt="a\0b"), "prompt"),
        ("NUL in negative", dict(negative_prompt="a\0b"), "negative_prompt"),
        ("long prompt", dict(prompt="x" * (max_prompt_chars + 1)), "prompt"),
        ("long negative", dict(negative_prompt="x" * (max_prompt_chars + 1)), "negative_prompt"),
        ("width not /16", dict(width=lim.min_side + 8), "width"),
        ("width too small", dict(width=lim.min_side - lim.multiple), "width"),
        ("height too large", dict(height=lim.max_side + lim.multiple), "height"),
        ("steps too many", dict(steps=lim.max_steps + 1), "steps"),
        ("too many images", dict(num_images=lim.max_images + 1), "num_images"),
        ("seed overflow", dict(seed=2**64 - 1, num_images=2), "seed"),
        ("cfg nan", dict(true_cfg_scale=float("nan")), "true_cfg_scale"),
        ("cfg negative", dict(true_cfg_scale=-1.0), "true_cfg_scale"),
        ("cfg inf", dict(true_cfg_scale=float("inf")), "true_cfg_scale"),
        ("preview enum", dict(preview=pb.PreviewOptions(format=42)), "preview.format"),
        ("preview side", dict(preview=pb.PreviewOptions(format=1, max_side=4)),
         "preview.max_side"),
        ("preview every", dict(steps=4, preview=pb.PreviewOptions(format=1, every_n_steps=5)),
         "preview.every_n_steps"),
        ("preview quality", dict(preview=pb.PreviewOptions(format=1, quality=101)),
         "preview.quality"),
        ("output enum", dict(output_format=17), "output_format"),
        ("output quality", dict(output_quality=500), "output_quality"),
        ("request id", dict(request_id="x" * 129), "request_id"),
    ]
    if wide:
        cases.insert(7, ("too many pixels", wide, "width"))
    return cases


def fake_image(seed: int, width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


@dataclass
class FakeModel:
    """Sleeps step_s per step in block_s slices, polling the cancel token like the C engine
    polls it per transformer block. Records what ran."""

    path: str = "/models/fake-qwen"
    step_s: float = 0.01
    block_s: float = 0.002
    load_s: float = 0.0
    default_steps: int = 4
    limits: SizeLimits = field(default_factory=lambda: SizeLimits(max_steps=50, max_images=4))
    fail_with: BaseException | None = None
    lora: str | None = None
    lora_scale: float = 1.0
    isa: str = "fake"
    threads: int = 1
    calls: list[dict[str, Any]] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    cancelled_at: list[float] = field(default_factory=list)  # perf_counter when it noticed
    finished_at: list[float] = field(default_factory=list)
    trims: list[float] = field(default_factory=list)  # perf_counter of every trim()
    lock: threading.Lock = field(default_factory=threading.Lock)

    def has(self, component: str) -> bool:
        return True

    def trim(self) -> None:
        with self.lock:
            self.trims.append(time.perf_counter())

    def transformer_info(self) -> dict[str, Any]:
        return {"weight_dtype": "f32", "n_layers": 2, "dim": 64}

    def vae_info(self) -> dict[str, Any]:
        return {"weight_dtype": "f32", "z_dim": 16}

    def text_encoder_info(self) -> dict[str, Any]:
        return {"weight_dtype": "bf16", "hidden": 64}

    def _sleep(self, seconds: float, cancel: Any) -> None:
        end = time.perf_counter() + seconds
        while True:
            if cancel is not None and cancel.cancelled:
                self.cancelled_at.append(time.perf_counter())
                raise _engine.Cancelled(6, "cancelled")
            left = end - time.perf_counter()
            if left <= 0:
                return
            time.sleep(min(self.block_s, left))

    def generate(self, prompt: str, *, width: int = 1024, height: int = 1024,
                 steps: int | None = None, seed: int | None = None,
                 negative_prompt: str | None = None, true_cfg_scale: float = 1.0,
                 num_images: int = 1, on_step: Callable[[StepInfo], object] | None = None,
                 cancel: Any = None, **_: Any) -> GenerationResult:
        steps = steps or self.default_steps
        seed = 0 if seed is None else seed
        self.calls.append({"prompt": prompt, "width": width, "height": height, "steps": steps,
                           "seed": seed, "negative_prompt": negative_prompt,
                           "true_cfg_scale": true_cfg_scale, "num_images": num_images})
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        t0 = time.perf_counter()
        timings = Timings()
        try:
            if self.fail_with is not None:
                raise self.fail_with
            images, seeds = [], []
            sig = np.linspace(1.0, 0.0, steps + 1)
            for i in range(num_images):
                for s in range(1, steps + 1):
                    ts = time.perf_counter()
                    self._sleep(self.step_s, cancel)
                    timings.steps_s.append(time.perf_counter() - ts)
                    x0 = np.full((16, height // 8, width // 8), s / steps, np.float32)
                    info = StepInfo(i, s, steps, float(sig[s]), x0, time.perf_counter() - t0)
                    if on_step is not None and on_step(info):
                        self.cancelled_at.append(time.perf_counter())
                        raise _engine.Cancelled(6, "stopped by the step callback")
                images.append(fake_image(seed + i, width, height))
                seeds.append(seed + i)
            timings.total_s = time.perf_counter() - t0
            info = SimpleNamespace(truncated=len(prompt) > 200)
            return GenerationResult(images, seeds, steps, list(map(float, sig)), info, None,
                                    timings, [])
        finally:
            with self.lock:
                self.active -= 1
            self.finished_at.append(time.perf_counter())


def fake_loader(model: FakeModel) -> Callable[[Any], FakeModel]:
    def load(progress: Any) -> FakeModel:
        n = 5
        for i in range(n + 1):
            if progress("transformer", i, n):
                raise _engine.Cancelled(6, "load aborted")
            time.sleep(model.load_s / n if i < n else 0)
        return model

    return load


def test_config(**sections: dict[str, Any]) -> Config:
    cfg = Config(model=ModelConfig(path="/models/fake-qwen"),
                 server=ServerConfig(listen=("127.0.0.1:0",), grace_s=5.0))
    return cfg.replace(**sections).validate(check_files=False) if sections else cfg


test_config.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


class ServerThread:
    """An EdgeServer on its own event loop in a daemon thread (the tests' clients are
    synchronous grpc channels, like real clients)."""

    def __init__(self, cfg: Config, model: FakeModel | None = None, *,
                 loader: Callable[[Any], Any] | None = None,
                 notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.model = model
        self._loader = loader or (fake_loader(model) if model is not None else None)
        self._notifier = notifier or Notifier(None)
        self.server: EdgeServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="test-server")

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            try:
                self.server = EdgeServer(self.cfg, loader=self._loader, notifier=self._notifier)
                await self.server.start()
            except BaseException as e:
                self._error = e
                self._started.set()
                return
            self._started.set()
            await self.server.finished.wait()
            if self.server._stopping is None:
                await self.server.stop(0)
            else:
                await self.server._stopping

        asyncio.run(main())

    def start(self, *, wait_loaded: bool = True, timeout: float = 20.0) -> ServerThread:
        if self._thread.is_alive() or self._thread.ident is not None:
            return self  # already started (start() then `with`)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("server did not start")
        if self._error is not None:
            raise self._error
        if wait_loaded and not self.call(self.server.wait_loaded(timeout), timeout + 1):
            raise RuntimeError("model did not load")
        return self

    def call(self, coro: Any, timeout: float = 20.0) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run_in_loop(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        async def wrap() -> Any:
            return fn()

        return self.call(wrap(), timeout)

    @property
    def address(self) -> str:
        assert self.server is not None
        for addr, port in self.server.ports.items():
            if addr.startswith("unix:"):
                continue
            host = addr.rpartition(":")[0]
            return f"{host}:{port}"
        return next(iter(self.server.ports))

    def stop(self, grace: float | None = None, timeout: float = 30.0) -> None:
        if self.server is not None and self.loop is not None and self._thread.is_alive():
            async def go() -> None:
                assert self.server is not None
                await self.server.request_stop(grace)

            with contextlib.suppress(RuntimeError):
                self.call(go(), timeout)
        self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop(grace=0)


def collect(call: Any) -> list[Any]:
    """Drain a response iterator (sync)."""
    return list(call)


def event_kinds(responses: list[Any]) -> list[str]:
    return [r.WhichOneof("event") for r in responses]


def status_details(err: grpc.RpcError) -> list[Any]:
    """The google.rpc.Status details of an RpcError, unpacked."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    st = rpc_status.from_call(err)
    out = []
    if st is None:
        return out
    for d in st.details:
        for cls in (error_details_pb2.BadRequest, error_details_pb2.RetryInfo,
                    error_details_pb2.ErrorInfo):
            if d.Is(cls.DESCRIPTOR):
                m = cls()
                d.Unpack(m)
                out.append(m)
    return out


# ---- notify socket ------------------------------------------------------------------------


class FakeNotifySocket:
    """An AF_UNIX datagram socket collecting sd_notify messages with their arrival times."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="notify-")
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.received: list[tuple[float, str]] = []  # (time.monotonic(), message)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                return
            self.received.append((time.monotonic(), data.decode()))

    @property
    def messages(self) -> list[str]:
        return [m for _, m in self.received]

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 10.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for m in self.messages:
                if predicate(m):
                    return m
            time.sleep(0.01)
        raise AssertionError(f"no matching notify message in {self.messages}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            os.rmdir(self.dir)


# ---- certificates -------------------------------------------------------------------------


def make_pki(directory: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for localhost / 127.0.0.1 and a client certificate
    (EC P-256, valid for a day), written as PEM files. Generated per test run, never committed."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, k: Any, cert: x509.Certificate) -> tuple[Path, Path]:
        kp, cp = directory / f"{stem}.key", directory / f"{stem}.crt"
        kp.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
        cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return kp, cp

    ca_key = key()
    ca = (x509.CertificateBuilder().subject_name(name("qwen-edge test CA"))
          .issuer_name(name("qwen-edge test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, usage: Any, san: list[Any] | None) -> tuple[Any, x509.Certificate]:
        k = key()
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
             .public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return k, b.sign(ca_key, hashes.SHA256())

    out: dict[str, Path] = {}
    ca_pem = directory / "ca.crt"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out["ca"] = ca_pem
    sk, sc = leaf("localhost", ExtendedKeyUsageOID.SERVER_AUTH,
                  [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    out["server_key"], out["server_cert"] = write("server", sk, sc)
    ck, cc = leaf("robot-1", ExtendedKeyUsageOID.CLIENT_AUTH, None)
    out["client_key"], out["client_cert"] = write("client", ck, cc)
    return out


@contextlib.contextmanager
def env(**values: str | None) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
