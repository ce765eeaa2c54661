"""Server configuration: a TOML file, then QWEN_EDGE_* environment variables, then CLI flags.

    cfg = load_config("/etc/qwen-edge/config.toml", env=os.environ,
                      overrides={"server.max_queue": 4})

Every key is `section.key` (the TOML table and key); `model = "/path"` and `lora = "/file"` at
the top of the file (and QWEN_EDGE_MODEL / QWEN_EDGE_LORA) are shorthands for model.path and
model.lora. An empty model.path serves the demo model (edge_server.demo, noise images). The
environment form is QWEN_EDGE_<SECTION>_<KEY>, e.g.
QWEN_EDGE_SERVER_LISTEN="unix:/run/qwen-edge/grpc.sock,127.0.0.1:50051" (lists are
comma-separated, booleans 1/0/true/false/yes/no/on/off). QWEN_EDGE_CONFIG names the file when
none is given. Bearer tokens come from auth.token_file (one per line, `#` comments) and/or
QWEN_EDGE_AUTH_TOKENS (comma or whitespace separated); they are never read from the TOML file.
Paths expand ~ and ${VAR} (e.g. ${CREDENTIALS_DIRECTORY}/tokens,
unix:${RUNTIME_DIRECTORY}/grpc.sock).

validate() raises ConfigError naming the key and what is allowed. This module imports nothing
from the package.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "QWEN_EDGE_"
DEFAULT_LISTEN = ("127.0.0.1:50051",)


class ConfigError(ValueError):
    """A configuration value is missing, malformed or inconsistent (the message names the key)."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    path: str = ""  # diffusers-layout model folder; "" = the demo model (noise images)
    name: str = ""  # display name in ModelInfo (default: the folder name)
    lora: str = ""  # LoRA file merged at load (Lightning)
    lora_scale: float = 1.0
    threads: int = 0  # 0 = the engine default (physical cores)
    isa: str = ""  # "" = best for this CPU (or ENG_ISA)
    warmup: bool = True  # load every component before reporting SERVING
    # generations keep their activation memory (up to ~1.3 GB at 1024x1024) for the next one;
    # it is freed after this many seconds without a generation (0 = free after every one)
    idle_trim_s: float = 30.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: tuple[str, ...] = DEFAULT_LISTEN  # "host:port" and/or "unix:/path"
    unix_socket_mode: str = "0660"  # octal permissions applied to unix: sockets after bind
    max_concurrent: int = 1  # generations run at once (they share the engine's thread pool)
    max_queue: int = 8  # requests allowed to wait; beyond: RESOURCE_EXHAUSTED
    grace_s: float = 30.0  # on SIGTERM: time running generations get to finish
    # refuse (RESOURCE_EXHAUSTED, reason WOULD_MISS_DEADLINE) a request whose deadline is
    # shorter than the estimated queue + generation time
    deadline_admission: bool = True
    reflection: bool = True  # grpc.reflection (grpcurl / grpcui)
    keepalive_time_s: float = 60.0  # HTTP/2 pings to find dead clients (0 = off)
    max_connection_idle_s: float = 0.0  # close idle connections (0 = never)
    # cancel a Generate whose client has not taken a message for this long (0 = never)
    write_timeout_s: float = 60.0
    log_level: str = "info"
    log_format: str = "text"  # text (key=value) | json


@dataclass(frozen=True, slots=True)
class GenerationConfig:
    default_width: int = 1024
    default_height: int = 1024
    max_prompt_chars: int = 8000
    max_steps: int = 0  # 0 = the model's limit; else min(model limit, this)
    max_images: int = 0  # 0 = the model's limit
    preview_max_side: int = 512
    preview_quality: int = 80
    output_quality: int = 90
    png_metadata: bool = True  # prompt / seed / steps / model as PNG text chunks


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert_file: str = ""  # PEM chain; with key_file enables TLS on every TCP listener
    key_file: str = ""
    client_ca_file: str = ""  # PEM roots to verify client certificates (mTLS)
    require_client_auth: bool = False


@dataclass(frozen=True, slots=True)
class AuthConfig:
    token_file: str = ""
    tokens: tuple[str, ...] = ()  # filled from token_file + QWEN_EDGE_AUTH_TOKENS
    allow_insecure_tokens: bool = False  # accept tokens on plaintext non-loopback TCP
    exempt_health: bool = True  # grpc.health.v1 needs no token (probes)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    port: int = 0  # Prometheus /metrics port; 0 = off
    host: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls.cert_file)

    @property
    def unix_socket_mode(self) -> int:
        return int(self.server.unix_socket_mode, 8)

    def replace(self, **sections: Any) -> Config:
        """A copy with keys changed: cfg.replace(server={"max_queue": 2})."""
        new = {}
        for name, values in sections.items():
            new[name] = dataclasses.replace(getattr(self, name), **values)
        return dataclasses.replace(self, **new)

    def validate(self, *, check_files: bool = True) -> Config:
        """Raise ConfigError on the first bad key; returns self."""
        _validate(self, check_files)
        return self


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "server": ServerConfig,
    "generation": GenerationConfig,
    "tls": TlsConfig,
    "auth": AuthConfig,
    "metrics": MetricsConfig,
}
_SECRET_KEYS = {"auth.tokens"}  # not accepted from the TOML file or flags
# shorthands: top-level TOML keys and environment variables (systemd/config.toml.example)
_TOML_ALIASES = {"model": "model.path", "lora": "model.lora"}
_ENV_ALIASES = {"QWEN_EDGE_MODEL": "model.path", "QWEN_EDGE_LORA": "model.lora"}
_PATH_KEYS = {
    "model.path",
    "model.lora",
    "tls.cert_file",
    "tls.key_file",
    "tls.client_ca_file",
    "auth.token_file",
}


def keys() -> dict[str, Any]:
    """Every `section.key` with its type hint."""
    out: dict[str, Any] = {}
    for sec, cls in SECTIONS.items():
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out[f"{sec}.{f.name}"] = hints[f.name]
    return out


# ---- parsing ------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    where = f"{key} (from {source})"
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{where}: expected a boolean, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip(), 0)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, int) and not isinstance(value, bool) and key.endswith("_mode"):
            return f"{value:o}"  # TOML 0o660 -> "660"
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if hint == tuple[str, ...]:
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",")]
            return tuple(v for v in items if v)
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    raise ConfigError(f"{where}: unsupported type {hint!r}")  # pragma: no cover


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"config file {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path}: {e}") from None
    flat: dict[str, Any] = {}
    known = keys()
    for sec, table in data.items():
        if sec in _TOML_ALIASES and isinstance(table, str):  # model = "/path" shorthand
            flat[_TOML_ALIASES[sec]] = table
            continue
        if sec not in SECTIONS:
            raise ConfigError(
                f"config file {path}: unknown section [{sec}] (known: {', '.join(SECTIONS)})"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"config file {path}: {sec} must be a table")
        for k, v in table.items():
            key = f"{sec}.{k}"
            if key not in known or key in _SECRET_KEYS:
                names = ", ".join(n.split(".", 1)[1] for n in known if n.startswith(sec + "."))
                raise ConfigError(
                    f"config file {path}: unknown key {key} (known in [{sec}]: {names})")
            flat[key] = _coerce(key, v, known[key], str(path))
    return flat


def _read_env(env: Mapping[str, str]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, key in _ENV_ALIASES.items():  # the canonical names below win
        if name in env:
            flat[key] = env[name]
    for key, hint in keys().items():
        if key in _SECRET_KEYS:
            continue
        name = ENV_PREFIX + key.replace(".", "_").upper()
        if name in env:
            flat[key] = _coerce(key, env[name], hint, f"${name}")
    return flat


def _expand(value: str) -> str:
    return os.path.expanduser(os.path.expandvars(value)) if value else value


def _read_tokens(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"auth.token_file {path}: {e.strerror or e}") from None
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    if not out:  # fail closed: a file meant to turn auth on must not leave the server open
        raise ConfigError(f"auth.token_file {path} holds no token (one a line, # comments)")
    return out


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    validate: bool = True,
) -> Config:
    """Defaults < TOML file (path, or $QWEN_EDGE_CONFIG) < environment < overrides (CLI flags,
    as {"section.key": value}; None values are ignored). Returns a validated Config."""
    env = os.environ if env is None else env
    flat: dict[str, Any] = {}
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = env[ENV_PREFIX + "CONFIG"]
    if path is not None:
        flat.update(_read_toml(Path(_expand(os.fspath(path)))))
    flat.update(_read_env(env))
    known = keys()
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in known or key in _SECRET_KEYS:
            raise ConfigError(f"unknown configuration key {key}")
        flat[key] = _coerce(key, value, known[key], "command line")

    for key in _PATH_KEYS & flat.keys():
        flat[key] = _expand(flat[key])
    if "server.listen" in flat:
        flat["server.listen"] = tuple(
            "unix:" + _expand(a[5:]) if a.startswith("unix:") else a for a in flat["server.listen"]
        )

    sections: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in flat.items():
        sec, name = key.split(".", 1)
        sections[sec][name] = value
    tokens: list[str] = []
    if sections["auth"].get("token_file"):
        tokens += _read_tokens(sections["auth"]["token_file"])
    env_tokens = env.get(ENV_PREFIX + "AUTH_TOKENS", "")
    tokens += [t for t in env_tokens.replace(",", " ").split() if t]
    sections["auth"]["tokens"] = tuple(dict.fromkeys(tokens))
    cfg = Config(**{s: SECTIONS[s](**vals) for s, vals in sections.items()})
    return cfg.validate() if validate else cfg


# ---- validation ---------------------------------------------------------------------------


def parse_listen(addr: str) -> tuple[str, str, int]:
    """"unix:/p" -> ("unix", "/p", 0); "host:port" / "[v6]:port" -> ("tcp", host, port)."""
    if addr.startswith("unix:"):
        p = addr[5:]
        if p.startswith("//"):
            p = p[2:]
        if not p:
            raise ConfigError(f"server.listen: {addr!r} has no socket path")
        return "unix", p, 0
    if addr.startswith("unix-abstract:"):
        raise ConfigError(f"server.listen: {addr!r}: abstract sockets are not supported")
    host, sep, port = addr.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"server.listen: {addr!r} is not host:port or unix:/path")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        num = int(port)
    except ValueError:
        raise ConfigError(f"server.listen: {addr!r}: port must be an integer 0..65535") from None
    if not 0 <= num <= 65535:
        raise ConfigError(f"server.listen: {addr!r}: port must be in 0..65535")
    return "tcp", host, num


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IPs (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _need_file(key: str, path: str, check: bool) -> None:
    if check and path and not os.access(path, os.R_OK):
        raise ConfigError(f"{key}: cannot read {path!r}")


def _validate(cfg: Config, check_files: bool) -> None:
    m, s, g, t, a, me = cfg.model, cfg.server, cfg.generation, cfg.tls, cfg.auth, cfg.metrics
    if not (math.isfinite(m.lora_scale)):
        raise ConfigError(f"model.lora_scale must be a finite number, got {m.lora_scale}")
    if m.threads < 0:
        raise ConfigError(f"model.threads must be >= 0 (0 = engine default), got {m.threads}")
    _need_file("model.lora", m.lora, check_files)

    if not s.listen:
        raise ConfigError("server.listen needs at least one address (host:port or unix:/path)")
    tcp_hosts = []
    for addr in s.listen:
        kind, host, _ = parse_listen(addr)
        if kind == "tcp":
            tcp_hosts.append(host)
    try:
        mode = int(s.unix_socket_mode, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise ConfigError(
            f"server.unix_socket_mode must be octal 000..777, got {s.unix_socket_mode!r}")
    if not 1 <= s.max_concurrent <= 64:
        raise ConfigError(f"server.max_concurrent must be in 1..64, got {s.max_concurrent}")
    if not 0 <= s.max_queue <= 10000:
        raise ConfigError(f"server.max_queue must be in 0..10000, got {s.max_queue}")
    for key, v in (
        ("model.idle_trim_s", m.idle_trim_s),
        ("server.grace_s", s.grace_s),
        ("server.keepalive_time_s", s.keepalive_time_s),
        ("server.max_connection_idle_s", s.max_connection_idle_s),
        ("server.write_timeout_s", s.write_timeout_s),
    ):
        if not (math.isfinite(v) and v >= 0):
            raise ConfigError(f"{key} must be a finite number >= 0, got {v}")
    if s.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"server.log_level must be debug|info|warning|error, got {s.log_level!r}")
    if s.log_format not in ("text", "json"):
        raise ConfigError(f"server.log_format must be text|json, got {s.log_format!r}")

    for key, v in (("generation.default_width", g.default_width),
                   ("generation.default_height", g.default_height)):
        if v <= 0 or v % 16:
            raise ConfigError(f"{key} must be a positive multiple of 16, got {v}")
    if not 1 <= g.max_prompt_chars <= 1_000_000:
        raise ConfigError(
            f"generation.max_prompt_chars must be in 1..1000000, got {g.max_prompt_chars}")
    for key, v in (("generation.max_steps", g.max_steps), ("generation.max_images", g.max_images)):
        if v < 0:
            raise ConfigError(f"{key} must be >= 0 (0 = the model's limit), got {v}")
    if not 8 <= g.preview_max_side <= 4096:
        raise ConfigError(
            f"generation.preview_max_side must be in 8..4096, got {g.preview_max_side}")
    for key, v in (("generation.preview_quality", g.preview_quality),
                   ("generation.output_quality", g.output_quality)):
        if not 1 <= v <= 100:
            raise ConfigError(f"{key} must be in 1..100, got {v}")

    if bool(t.cert_file) != bool(t.key_file):
        raise ConfigError("tls.cert_file and tls.key_file must be given together")
    if t.client_ca_file and not t.cert_file:
        raise ConfigError("tls.client_ca_file needs tls.cert_file and tls.key_file (server TLS)")
    if t.require_client_auth and not t.client_ca_file:
        raise ConfigError("tls.require_client_auth needs tls.client_ca_file")
    for key in ("cert_file", "key_file", "client_ca_file"):
        _need_file(f"tls.{key}", getattr(t, key), check_files)
    if t.cert_file and not tcp_hosts:
        raise ConfigError("tls.cert_file is set but server.listen has no TCP address")

    for tok in a.tokens:
        if any(c.isspace() for c in tok) or not tok.isprintable():
            raise ConfigError("auth tokens must be printable with no whitespace")
    if a.tokens and not cfg.tls_enabled and not a.allow_insecure_tokens:
        exposed = [h for h in tcp_hosts if not is_loopback(h)]
        if exposed:
            raise ConfigError(
                f"server.listen has plaintext non-loopback TCP ({', '.join(exposed)}) and bearer "
                "tokens are configured: tokens would cross the network in clear text. Configure "
                "tls.cert_file/tls.key_file, listen on loopback or unix:, or set "
                "auth.allow_insecure_tokens = true"
            )

    if not 0 <= me.port <= 65535:
        raise ConfigError(f"metrics.port must be in 0..65535 (0 = off), got {me.port}")
    if not me.host:
        raise ConfigError("metrics.host must not be empty")
