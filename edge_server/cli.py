"""qwen-edge command line: `qwen-edge info` (and, as they land, serve / generate / demo-model)."""

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
