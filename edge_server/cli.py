"""qwen-edge command line: `qwen-edge info | demo-model | serve | generate`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from edge_server import __version__


def _info(args: argparse.Namespace) -> int:
    from edge_server import _engine

    facts = {
        "version": __version__,
        "engine_version": _engine.version(),
        "build": _engine.build_info(),
        "cpu_features": _engine.cpu_features(),
        "compiled_isas": _engine.compiled_isas(),
        "supported_isas": _engine.supported_isas(),
        "best_isa": _engine.best_isa(),
        "isa_env": os.environ.get("ENG_ISA") or None,
    }
    try:
        facts["isa"] = _engine.resolve_isa(None)
        rt = _engine.get_runtime(None, None)
        facts["threads"] = rt.threads
        facts["backend"] = rt.backend
    except _engine.EngineError as e:
        facts["isa"] = f"error: {e}"
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        if isinstance(value, list):
            value = " ".join(value)
        print(f"{key:<{width}}  {value}")
    return 0


def _demo_model(args: argparse.Namespace) -> int:
    from edge_server.demo import write_demo_model

    root = write_demo_model(args.dir, seed=args.seed)
    print(f"wrote the demo model (random weights: its images are noise) to {root}")
    return 0


# `serve` flags -> configuration keys (flags override the environment and the TOML file)
_SERVE_FLAGS = {
    "model": "model.path",
    "lora": "model.lora",
    "lora_scale": "model.lora_scale",
    "threads": "model.threads",
    "isa": "model.isa",
    "listen": "server.listen",
    "max_concurrent": "server.max_concurrent",
    "max_queue": "server.max_queue",
    "grace": "server.grace_s",
    "reflection": "server.reflection",
    "deadline_admission": "server.deadline_admission",
    "log_level": "server.log_level",
    "log_format": "server.log_format",
    "tls_cert": "tls.cert_file",
    "tls_key": "tls.key_file",
    "tls_client_ca": "tls.client_ca_file",
    "require_client_auth": "tls.require_client_auth",
    "token_file": "auth.token_file",
    "allow_insecure_tokens": "auth.allow_insecure_tokens",
    "metrics_port": "metrics.port",
    "metrics_host": "metrics.host",
}


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from edge_server.config import ConfigError, load_config
    from edge_server.server import configure_logging, serve

    overrides = {key: getattr(args, dest) for dest, key in _SERVE_FLAGS.items()}
    if args.listen:
        overrides["server.listen"] = tuple(args.listen)
    for item in args.set or ():
        key, sep, value = item.partition("=")
        if not sep:
            print(f"qwen-edge: --set expects section.key=value, got {item!r}", file=sys.stderr)
            return 2
        overrides[key.strip()] = value
    try:
        cfg = load_config(args.config, overrides=overrides)
    except ConfigError as e:
        print(f"qwen-edge: configuration error: {e}", file=sys.stderr)
        return 2
    if args.check_config:
        model = cfg.model.path or "(the demo model)"
        print(f"configuration OK: model {model}, listen {', '.join(cfg.server.listen)}")
        return 0
    configure_logging(cfg.server.log_level, cfg.server.log_format)
    return asyncio.run(serve(cfg))


def _add_serve(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve", help="run the gRPC server",
        description="Run the qwen_edge.v1 gRPC server. Configuration: --config TOML (or "
        "$QWEN_EDGE_CONFIG), then QWEN_EDGE_<SECTION>_<KEY> variables, then these flags.")
    p.add_argument("model", nargs="?", help="model folder (model.path)")
    p.add_argument("-c", "--config", help="TOML configuration file")
    p.add_argument("--lora", help="LoRA file merged at load (model.lora)")
    p.add_argument("--lora-scale", type=float)
    p.add_argument("--threads", type=int, help="engine threads (0 = physical cores)")
    p.add_argument("--isa", help="kernel set (scalar/avx2/avx512/neon; default: best)")
    p.add_argument("--listen", action="append", metavar="ADDR",
                   help="host:port or unix:/path; repeatable (default 127.0.0.1:50051)")
    p.add_argument("--max-concurrent", type=int, help="generations at once (default 1)")
    p.add_argument("--max-queue", type=int, help="waiting requests before RESOURCE_EXHAUSTED")
    p.add_argument("--grace", type=float, help="seconds running work gets on SIGTERM")
    p.add_argument("--no-reflection", dest="reflection", action="store_const", const=False)
    p.add_argument("--no-deadline-admission", dest="deadline_admission", action="store_const",
                   const=False, help="admit requests whose deadline the queue would overrun")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["text", "json"])
    p.add_argument("--tls-cert", help="server certificate chain PEM (enables TLS on TCP)")
    p.add_argument("--tls-key", help="server private key PEM")
    p.add_argument("--tls-client-ca", help="client CA PEM (mutual TLS)")
    p.add_argument("--require-client-auth", action="store_const", const=True,
                   help="mutual TLS: reject clients without a certificate from --tls-client-ca")
    p.add_argument("--token-file", help="bearer tokens, one per line")
    p.add_argument("--allow-insecure-tokens", action="store_const", const=True,
                   help="accept tokens over plaintext non-loopback TCP")
    p.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (0 = off)")
    p.add_argument("--metrics-host", help="metrics bind address (default 127.0.0.1)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="any configuration key, e.g. --set generation.default_width=512")
    p.add_argument("--check-config", action="store_true",
                   help="validate the configuration and exit")
    p.set_defaults(func=_serve)


def _generate(args: argparse.Namespace) -> int:
    from edge_server import client

    return client.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qwen-edge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"qwen-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="version, build options, CPU features and chosen ISA")
    p_info.add_argument("--json", action="store_true", help="machine-readable output")
    p_info.set_defaults(func=_info)
    p_demo = sub.add_parser(
        "demo-model", help="write a tiny random-weight model in the diffusers layout (noise images)"
    )
    p_demo.add_argument("dir", help="output folder")
    p_demo.add_argument("--seed", type=int, default=0, help="weight seed (deterministic)")
    p_demo.set_defaults(func=_demo_model)
    _add_serve(sub)
    from edge_server.client import add_arguments

    p_gen = sub.add_parser("generate", help="generate an image on a running server")
    add_arguments(p_gen)
    p_gen.set_defaults(func=_generate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the CLI reports, it does not dump tracebacks on user errors
        print(f"qwen-edge: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
