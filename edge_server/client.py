"""`qwen-edge generate`: a command-line client for the qwen_edge.v1 server.

    qwen-edge generate "a red bicycle" --server unix:/run/qwen-edge/grpc.sock -o bike.png \\
        --steps 8 --seed 42 --size 1024x768 --previews previews/

It streams the generation: a progress bar (image, step, sigma, ETA) on stderr, previews written
to --previews as they arrive, and the final image(s) reassembled from their chunks. PNG output
carries the parameters (prompt, seed, steps, model, ...) as PNG text chunks.

Security: TLS with --tls (system roots) or --ca FILE; mutual TLS adds --cert/--key. A bearer
token (--token-file or $QWEN_EDGE_TOKEN) is sent as `authorization: Bearer ...`; it is refused
over plaintext TCP to a non-loopback host (like Stability's SDK) unless --allow-insecure-token.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from edge_server.config import is_loopback

if TYPE_CHECKING:  # grpc is imported when a command runs (keeps `qwen-edge info` light)
    import grpc

DEFAULT_SERVER = "127.0.0.1:50051"
TOKEN_ENV = "QWEN_EDGE_TOKEN"
EXT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".rgb": "RAW_RGB8",
               ".raw": "RAW_RGB8"}
PREVIEW_EXT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "RAW_LATENT": ".npy"}
META_KEYS = ("prompt", "seed", "steps", "model")


class ClientError(Exception):
    """A usage or connection problem reported without a traceback."""


def parse_size(text: str) -> tuple[int, int]:
    """"1024x768" -> (1024, 768)."""
    w, sep, h = text.lower().partition("x")
    try:
        if not sep:
            raise ValueError
        return int(w), int(h)
    except ValueError:
        raise ClientError(
            f"--size must look like WIDTHxHEIGHT (e.g. 1024x768), got {text!r}") from None


def is_local_target(target: str) -> bool:
    """unix sockets and loopback hosts (where a plaintext token does not cross a network)."""
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    t = target.split("///", 1)[1] if target.startswith("dns:///") else target
    host = t.rpartition(":")[0] if ":" in t else t
    return is_loopback(host.strip("[]"))


def read_token(token_file: str | None) -> str | None:
    if token_file:
        try:
            lines = Path(token_file).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ClientError(f"--token-file {token_file}: {e.strerror or e}") from None
        tokens = [ln.split("#", 1)[0].strip() for ln in lines]
        tokens = [t for t in tokens if t]
        if not tokens:
            raise ClientError(f"--token-file {token_file} holds no token")
        return tokens[0]
    return os.environ.get(TOKEN_ENV) or None


def make_channel(
    target: str,
    *,
    tls: bool = False,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    server_name: str | None = None,
    token: str | None = None,
    allow_insecure_token: bool = False,
) -> tuple[grpc.Channel, list[tuple[str, str]]]:
    """A channel plus the call metadata to send (the token, when it is not in the channel's
    call credentials)."""
    import grpc

    def read(p: str | None) -> bytes | None:
        if not p:
            return None
        try:
            return Path(p).read_bytes()
        except OSError as e:
            raise ClientError(f"{p}: {e.strerror or e}") from None

    options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", 8 * 1024 * 1024)]
    metadata: list[tuple[str, str]] = []
    if bool(cert_file) != bool(key_file):
        raise ClientError("--cert and --key go together (mutual TLS)")
    if tls or ca_file or cert_file:
        creds = grpc.ssl_channel_credentials(read(ca_file), read(key_file), read(cert_file))
        if token:
            creds = grpc.composite_channel_credentials(
                creds, grpc.access_token_call_credentials(token))
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        return grpc.secure_channel(target, creds, options), metadata
    if token:
        if not is_local_target(target) and not allow_insecure_token:
            raise ClientError(
                f"refusing to send the bearer token in clear text to {target}: use --tls/--ca, "
                "a unix: socket or loopback, or --allow-insecure-token")
        metadata.append(("authorization", f"Bearer {token}"))
    return grpc.insecure_channel(target, options), metadata


# ---- progress -----------------------------------------------------------------------------


class Progress:
    """One redrawn line on a terminal; one line per ~second (and the last step) otherwise."""

    def __init__(self, stream: TextIO, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        self._last = 0.0
        self._drawn = False

    def line(self, text: str, *, final: bool = False) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\x1b[K" + text + ("\n" if final else ""))
            self._drawn = not final
            self.stream.flush()
        elif final or now - self._last >= 1.0:
            self._last = now
            self.stream.write(text + "\n")
            self.stream.flush()

    def message(self, text: str, *, error: bool = False) -> None:
        if self.quiet and not error:
            return
        if self._drawn:
            self.stream.write("\n")
            self._drawn = False
        self.stream.write(text + "\n")
        self.stream.flush()


def bar(done: int, total: int, width: int = 24) -> str:
    n = int(width * done / max(total, 1))
    return "[" + "#" * n + "-" * (width - n) + f"] {100 * done // max(total, 1):3d}%"


def fmt_eta(seconds: float) -> str:
    if seconds >= 60:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{seconds:.1f}s"


# ---- images -------------------------------------------------------------------------------


def output_paths(out: Path, n: int) -> list[Path]:
    if n == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(n)]


def with_png_metadata(data: bytes, text: dict[str, str]) -> bytes:
    """PNG bytes carrying at least `text` (re-encoded losslessly only when keys are missing)."""
    from PIL import Image, PngImagePlugin

    img = Image.open(io.BytesIO(data))
    have = dict(getattr(img, "text", {}) or {})
    if all(k in have for k in text):
        return data
    info = PngImagePlugin.PngInfo()
    for k, v in {**have, **text}.items():
        if v.isascii():
            info.add_text(k, v)
        else:
            info.add_itxt(k, v)
    buf = io.BytesIO()
    img.save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


@dataclass
class GenerateOutcome:
    """What one streamed generation produced (the client keeps it for tests and callers)."""

    images: dict[int, bytearray] = field(default_factory=dict)
    chunks: dict[int, Any] = field(default_factory=dict)  # image_index -> last ImageChunk
    queued: list[int] = field(default_factory=list)
    steps: int = 0
    previews: int = 0
    started: Any = None
    done: Any = None
    first_preview_s: float | None = None
    final_s: float | None = None


# ---- the command --------------------------------------------------------------------------


def generate(args: Any, *, stderr: TextIO | None = None) -> int:
    """Run `qwen-edge generate` with parsed arguments; returns the exit code."""
    import grpc

    from edge_server._proto import imagegen_pb2 as pb
    from edge_server._proto import imagegen_pb2_grpc as pb_grpc

    err = stderr or sys.stderr
    progress = Progress(err, quiet=args.quiet)
    out = Path(args.output)
    fmt = (args.format or EXT_FORMATS.get(out.suffix.lower(), "")).upper()
    if fmt not in ("PNG", "JPEG", "WEBP", "RAW_RGB8"):
        raise ClientError(f"cannot tell the image format from {out.name!r}: use .png/.jpg/.webp/"
                          ".rgb or --format")
    width = height = 0
    if args.size:
        width, height = parse_size(args.size)
    preview_fmt = args.preview_format.upper() if args.previews else "NONE"
    req = pb.GenerateRequest(
        prompt=args.prompt, negative_prompt=args.negative_prompt or "", width=width,
        height=height, steps=args.steps or 0, num_images=args.num_images,
        output_format=pb.ImageFormat.Value(f"IMAGE_FORMAT_{fmt}"),
        output_quality=args.quality or 0, request_id=args.request_id or "",
        preview=pb.PreviewOptions(
            format=pb.PreviewFormat.Value(f"PREVIEW_FORMAT_{preview_fmt}"),
            max_side=args.preview_max_side or 0, every_n_steps=args.preview_every or 0),
    )
    if args.seed is not None:
        req.seed = args.seed
    if args.cfg is not None:
        req.true_cfg_scale = args.cfg
    token = read_token(args.token_file)
    channel, metadata = make_channel(
        args.server, tls=args.tls, ca_file=args.ca, cert_file=args.cert, key_file=args.key,
        server_name=args.server_name, token=token,
        allow_insecure_token=args.allow_insecure_token)
    previews_dir = Path(args.previews) if args.previews else None
    if previews_dir is not None:
        previews_dir.mkdir(parents=True, exist_ok=True)
    res = GenerateOutcome()
    t0 = time.monotonic()
    with channel:
        stub = pb_grpc.ImageGenerationStub(channel)
        call = stub.Generate(req, timeout=args.timeout or None, metadata=metadata,
                             wait_for_ready=args.wait)
        try:
            for msg in call:
                _handle(msg, res, progress, previews_dir, t0, pb)
        except KeyboardInterrupt:
            call.cancel()
            progress.message("cancelled")
            return 130
        except grpc.RpcError as e:
            lines = _status_lines(e)
            fields = [ln for ln in lines if not ln.startswith("retry after")]
            head = "invalid request" if fields else e.details()
            progress.message(f"qwen-edge: {e.code().name}: {head}", error=True)
            for line in lines:
                progress.message("  " + line, error=True)
            return 1
    if res.done is None:
        progress.message("qwen-edge: the stream ended without a Done message", error=True)
        return 1
    st = res.started
    written = []
    for i, path in zip(sorted(res.images), output_paths(out, len(res.images)), strict=True):
        data = bytes(res.images[i])
        chunk = res.chunks[i]
        if fmt == "PNG":
            data = with_png_metadata(data, {
                "prompt": args.prompt, "seed": str(chunk.seed), "steps": str(st.steps),
                "model": st.model, "negative_prompt": args.negative_prompt or "",
                "width": str(chunk.width), "height": str(chunk.height),
                "true_cfg_scale": f"{st.true_cfg_scale:g}"})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    d = res.done
    t = d.timings
    progress.message(
        f"wrote {', '.join(map(str, written))} (seed {st.seed}, {st.steps} steps, "
        f"{st.width}x{st.height}) in {time.monotonic() - t0:.2f}s: queue {t.queue_ms:.0f} ms, "
        f"prompt {t.prompt_encode_ms:.0f} ms, denoise {t.denoise_ms:.0f} ms, vae "
        f"{t.vae_decode_ms:.0f} ms" + (" [prompt truncated]" if d.prompt_truncated else ""))
    return 0


def _handle(msg: Any, res: GenerateOutcome, progress: Progress, previews_dir: Path | None,
            t0: float, pb: Any) -> None:
    kind = msg.WhichOneof("event")
    if kind == "queued":
        res.queued.append(msg.queued.position)
        if msg.queued.position:
            progress.line(f"queued: position {msg.queued.position}")
    elif kind == "started":
        res.started = msg.started
        s = msg.started
        progress.line(f"started: {s.width}x{s.height}, {s.steps} steps, seed {s.seed}")
    elif kind == "step":
        s = msg.step
        res.steps += 1
        n_img = res.started.num_images if res.started else 1
        done = s.image_index * s.total_steps + s.step
        img = f"image {s.image_index + 1}/{n_img} " if n_img > 1 else ""
        progress.line(f"{img}step {s.step}/{s.total_steps} {bar(done, s.total_steps * n_img)} "
                      f"sigma {s.sigma:.4f} ETA {fmt_eta(s.eta_ms / 1e3)}",
                      final=done == s.total_steps * n_img)
        if s.preview_image or s.raw_latent:
            res.previews += 1
            if res.first_preview_s is None:
                res.first_preview_s = time.monotonic() - t0
            if previews_dir is not None:
                name = pb.PreviewFormat.Name(s.preview_format).removeprefix("PREVIEW_FORMAT_")
                path = previews_dir / f"img{s.image_index}-step{s.step:03d}{PREVIEW_EXT[name]}"
                if s.raw_latent:
                    import numpy as np

                    arr = np.frombuffer(s.raw_latent, "<f2").reshape(tuple(s.latent_shape))
                    np.save(path, arr)
                else:
                    path.write_bytes(s.preview_image)
    elif kind == "image_chunk":
        c = msg.image_chunk
        buf = res.images.setdefault(c.image_index, bytearray())
        if c.offset != len(buf):
            raise ClientError(f"image {c.image_index}: chunk at offset {c.offset}, have {len(buf)}")
        buf += c.data
        res.chunks[c.image_index] = c
        if c.last:
            res.final_s = time.monotonic() - t0
            if len(buf) != c.total_size:
                raise ClientError(
                    f"image {c.image_index}: {len(buf)} bytes, expected {c.total_size}")
    elif kind == "done":
        res.done = msg.done


def _status_lines(e: grpc.RpcError) -> list[str]:
    try:
        from google.rpc import error_details_pb2
        from grpc_status import rpc_status

        st = rpc_status.from_call(e)  # type: ignore[arg-type]
    except Exception:
        return []
    lines = []
    for d in st.details if st else ():
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            lines += [f"{v.field}: {v.description}" for v in br.field_violations]
        elif d.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            ri = error_details_pb2.RetryInfo()
            d.Unpack(ri)
            lines.append(f"retry after {ri.retry_delay.ToTimedelta().total_seconds():.1f}s")
    return lines


def add_arguments(p: Any) -> None:
    """The `generate` subcommand's arguments (cli.py builds the parser)."""
    p.add_argument("prompt", help="what to draw")
    p.add_argument("--server", default=os.environ.get("QWEN_EDGE_SERVER", DEFAULT_SERVER),
                   help="host:port or unix:/path (default $QWEN_EDGE_SERVER or %(default)s)")
    p.add_argument("-o", "--output", default="out.png",
                   help="output file; the extension picks the format (default %(default)s)")
    p.add_argument("--format", choices=["png", "jpeg", "webp", "raw_rgb8"],
                   help="output format (default: from the extension)")
    p.add_argument("--quality", type=int, help="JPEG/WEBP quality 1..100")
    p.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    p.add_argument("--seed", type=int, help="seed (default: random, printed)")
    p.add_argument("--size", help="WIDTHxHEIGHT, multiples of 16 (default: the server's)")
    p.add_argument("--negative-prompt", help="negative prompt (true CFG)")
    p.add_argument("--cfg", type=float, help="true_cfg_scale (default 4 with a negative prompt)")
    p.add_argument("-n", "--num-images", type=int, default=1, help="images (seeds seed, seed+1...)")
    p.add_argument("--previews", metavar="DIR", help="write per-step previews into DIR")
    p.add_argument("--preview-format", default="jpeg",
                   choices=["jpeg", "png", "webp", "raw_latent"], help="(default %(default)s)")
    p.add_argument("--preview-max-side", type=int, help="longest preview side in pixels")
    p.add_argument("--preview-every", type=int, help="a preview every N steps (default 1)")
    p.add_argument("--request-id", help="id for the server's logs")
    p.add_argument("--timeout", type=float, default=0.0,
                   help="deadline in seconds for queue + generation (default none)")
    p.add_argument("--wait", action="store_true",
                   help="wait for the server to come up instead of failing fast")
    p.add_argument("--token-file", help=f"bearer token file (default ${TOKEN_ENV})")
    p.add_argument("--allow-insecure-token", action="store_true",
                   help="send the token over plaintext TCP to a non-loopback host")
    p.add_argument("--tls", action="store_true", help="TLS with the system roots")
    p.add_argument("--ca", help="PEM roots to verify the server (implies --tls)")
    p.add_argument("--cert", help="client certificate PEM (mutual TLS)")
    p.add_argument("--key", help="client key PEM (mutual TLS)")
    p.add_argument("--server-name", help="TLS name to verify (when it differs from the host)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def run(args: Any) -> int:
    try:
        return generate(args)
    except ClientError as e:
        print(f"qwen-edge: {e}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover (cli.py is the entry)
    import argparse

    p = argparse.ArgumentParser(prog="qwen-edge generate")
    add_arguments(p)
    return run(p.parse_args(argv))
