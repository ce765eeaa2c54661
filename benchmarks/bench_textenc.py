"""Text-encoder benchmark: qwen-edge (C, f32 and bf16 weights) against torch fp32
(transformers Qwen2_5_VLTextModel) on the real Qwen2.5-VL-7B width (hidden 3584, 28 heads,
4 kv heads, MLP 18944) with 2 layers, at 64 and 300 tokens, in the same run.

    python benchmarks/bench_textenc.py              # table
    python benchmarks/bench_textenc.py --json       # machine-readable
    python benchmarks/bench_textenc.py --quick      # fewer repetitions

The random-weight checkpoints (legacy Qwen-Image layout, bf16 and f32; about 6 GB together
with the real vocabulary of 152064, whose embedding alone is 2.2 GB in f32; --vocab shrinks it)
are written once to --dir (default build/bench-data/textenc). Both sides touch only the
embedding rows they gather (safetensors' torch loader maps the file too), so peak RSS is about
the layer weights plus the runtime. Every side runs in its own worker process, so each
reports its own peak RSS; the workers are run in alternating rounds (ours f32, ours bf16,
torch, then again) and each reports the best of its repetitions. The ratio column is
ours / torch in time: <= 1.0 means qwen-edge is at least as fast.

The qwen-edge worker also measures edge memory mode: resident memory after a forward and after
eng_text_encoder_release (madvise DONTNEED on the weight mapping).
Run it alone on a quiet machine; threads are pinned for both sides (torch.set_num_threads,
the engine runtime's thread count).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import print_table, reexec_without_openblas_overrides

REAL = dict(hidden=3584, heads=28, kv_heads=4, intermediate=18944)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- checkpoint writer (streams tensors: never holds the whole model in memory) ------------

def _bf16_bits(x):
    import numpy as np

    u = x.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def _tensor_specs(layers: int, vocab: int) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, kind) in the legacy layout; kind: embed / linear / bias / norm."""
    D, kv, inter = REAL["hidden"], REAL["kv_heads"] * REAL["hidden"] // REAL["heads"], REAL[
        "intermediate"]
    out = [("model.embed_tokens.weight", (vocab, D), "embed"), ("model.norm.weight", (D,), "norm")]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (D,), "norm"),
            (p + "post_attention_layernorm.weight", (D,), "norm"),
            (p + "self_attn.q_proj.weight", (D, D), "linear"),
            (p + "self_attn.q_proj.bias", (D,), "bias"),
            (p + "self_attn.k_proj.weight", (kv, D), "linear"),
            (p + "self_attn.k_proj.bias", (kv,), "bias"),
            (p + "self_attn.v_proj.weight", (kv, D), "linear"),
            (p + "self_attn.v_proj.bias", (kv,), "bias"),
            (p + "self_attn.o_proj.weight", (D, D), "linear"),
            (p + "mlp.gate_proj.weight", (inter, D), "linear"),
            (p + "mlp.up_proj.weight", (inter, D), "linear"),
            (p + "mlp.down_proj.weight", (D, inter), "linear"),
        ]
    return sorted(out)


def write_checkpoint(folder: str, layers: int, vocab: int, dtype: str, seed: int = 0) -> None:
    import numpy as np

    te = os.path.join(folder, "text_encoder")
    os.makedirs(te, exist_ok=True)
    cfg = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
        "hidden_size": REAL["hidden"], "intermediate_size": REAL["intermediate"],
        "num_hidden_layers": layers, "num_attention_heads": REAL["heads"],
        "num_key_value_heads": REAL["kv_heads"], "vocab_size": vocab, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "max_position_embeddings": 128000, "hidden_act": "silu", "use_sliding_window": False,
        "tie_word_embeddings": False,
    }
    with open(os.path.join(te, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    specs = _tensor_specs(layers, vocab)
    esz = 2 if dtype == "bf16" else 4
    header, off = {}, 0
    for name, shape, _ in specs:
        n = int(np.prod(shape)) * esz
        header[name] = {"dtype": "BF16" if esz == 2 else "F32", "shape": list(shape),
                        "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal(1 << 24, dtype=np.float32)  # 64 MB of normals, reused
    tmp = os.path.join(te, "model.safetensors.tmp")
    with open(tmp, "wb") as f:
        f.write(len(hb).to_bytes(8, "little") + hb)
        for _name, shape, kind in specs:
            n = int(np.prod(shape))
            scale = {"embed": 1.0, "bias": 0.1, "norm": 0.1,
                     "linear": 1.0 / np.sqrt(shape[-1])}[kind]
            for s in range(0, n, len(pool) // 2):
                k = min(len(pool) // 2, n - s)
                o = int(rng.integers(0, len(pool) // 2))
                v = pool[o:o + k] * np.float32(scale)
                if kind == "norm":
                    v = v + np.float32(1.0)
                f.write((_bf16_bits(v) if esz == 2 else v).tobytes())
    os.replace(tmp, os.path.join(te, "model.safetensors"))


def ensure_checkpoints(base: str, layers: int, vocab: int) -> dict[str, str]:
    out = {}
    for dt in ("f32", "bf16"):
        folder = os.path.join(base, f"L{layers}-V{vocab}-{dt}")
        if not os.path.isfile(os.path.join(folder, "text_encoder", "model.safetensors")):
            t0 = time.perf_counter()
            write_checkpoint(folder, layers, vocab, dt)
            print(f"wrote {folder} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        out[dt] = folder
    return out


# ---- workers --------------------------------------------------------------------------------

def _status_mb() -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) / 1024.0
    return out


def _best(fn, reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def worker_ours(folder: str, tokens: list[int], threads: int, reps: int) -> dict:
    import numpy as np

    from edge_server import _engine

    rt = _engine.Runtime(None, threads)
    m = _engine.Model(rt, folder)
    info = _engine.text_encoder_info(m)
    rng = np.random.default_rng(0)
    res: dict = {"isa": rt.isa, "threads": rt.threads, "weight_dtype": info["weight_dtype"],
                 "times": {}}
    mem = {"start": _status_mb()}
    for n in tokens:
        ids = rng.integers(0, info["vocab"], n).astype(np.int32)
        _engine.text_encoder_forward(m, ids)  # warm-up: faults the weight pages in
        res["times"][n] = _best(lambda ids=ids: _engine.text_encoder_forward(m, ids), reps)
    mem["after_forward"] = _status_mb()
    _engine.text_encoder_release(m)
    mem["after_release"] = _status_mb()
    t0 = time.perf_counter()
    _engine.text_encoder_forward(m, rng.integers(0, info["vocab"], tokens[0]).astype(np.int32))
    res["first_forward_after_release_s"] = time.perf_counter() - t0
    mem["after_reforward"] = _status_mb()
    res["mem"] = mem
    res["peak_rss_mb"] = _status_mb()["VmHWM"]
    return res


def worker_torch(folder: str, tokens: list[int], threads: int, reps: int) -> dict:
    import numpy as np
    import torch
    from safetensors.torch import load_file
    from transformers import Qwen2_5_VLConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
        Qwen2_5_VLRotaryEmbedding,
        Qwen2_5_VLTextModel,
    )

    torch.set_num_threads(threads)
    te = os.path.join(folder, "text_encoder")
    cfg = Qwen2_5_VLConfig.from_pretrained(te).text_config
    cfg._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = Qwen2_5_VLTextModel(cfg)
    sd = {k[len("model."):]: v.float() for k, v in load_file(
        os.path.join(te, "model.safetensors")).items()}
    model.load_state_dict(sd, assign=True, strict=True)
    del sd
    model.rotary_emb = Qwen2_5_VLRotaryEmbedding(config=cfg)
    model.eval()
    rng = np.random.default_rng(0)
    res: dict = {"threads": torch.get_num_threads(), "torch": torch.__version__, "times": {}}
    for n in tokens:
        ids = torch.from_numpy(rng.integers(0, cfg.vocab_size, n)).long()[None]

        def run(ids=ids):
            with torch.inference_mode():
                return model(input_ids=ids, use_cache=False).last_hidden_state

        run()
        res["times"][n] = _best(run, reps)
    res["peak_rss_mb"] = _status_mb()["VmHWM"]
    return res


def run_worker(kind: str, folder: str, tokens: list[int], threads: int, reps: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--model", folder,
           "--tokens", ",".join(map(str, tokens)), "--threads", str(threads),
           "--reps", str(reps)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- driver ---------------------------------------------------------------------------------

def main() -> int:
    reexec_without_openblas_overrides()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", default="64,300")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=152064)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 round, 2 repetitions")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--dir", default=os.path.join(REPO, "build", "bench-data", "textenc"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", choices=["ours", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    a = ap.parse_args()
    tokens = [int(t) for t in a.tokens.split(",")]
    if a.worker:
        fn = worker_ours if a.worker == "ours" else worker_torch
        print(json.dumps(fn(a.model, tokens, a.threads, a.reps)))
        return 0
    if a.quick:
        a.rounds, a.reps = 1, 2
    folders = ensure_checkpoints(a.dir, a.layers, a.vocab)
    sides = [("ours", "f32"), ("ours", "bf16")] + ([] if a.no_torch else [("torch", "f32")])
    best: dict = {}
    runs: dict = {}
    for r in range(a.rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        for kind, dt in order:
            res = run_worker(kind, folders[dt], tokens, a.threads, a.reps)
            runs.setdefault((kind, dt), []).append(res)
            for n in tokens:
                t = min(res["times"][str(n)])
                key = (kind, dt, n)
                best[key] = min(best.get(key, float("inf")), t)
            print(f"round {r + 1}: {kind} {dt} done", file=sys.stderr)
    D, inter = REAL["hidden"], REAL["intermediate"]
    kvd = REAL["kv_heads"] * D // REAL["heads"]
    lin_params = 2 * D * D + 2 * D * kvd + 3 * D * inter  # q, o, k, v, gate, up, down

    def gflop(n: int) -> float:  # linears + causal attention (q k^T and p v, half the square)
        return a.layers * (2.0 * n * lin_params + 2.0 * n * n * D) / 1e9

    rows = []
    for n in tokens:
        ref = best.get(("torch", "f32", n))
        for kind, dt in sides:
            last = runs[(kind, dt)][-1]
            row = {
                "impl": "qwen-edge" if kind == "ours" else "torch fp32",
                "weights": dt, "tokens": n, "threads": a.threads,
                "ms": best[(kind, dt, n)] * 1e3,
                "ratio": best[(kind, dt, n)] / ref if ref else float("nan"),
                "gflops": gflop(n) / best[(kind, dt, n)],
                "peak_rss_mb": max(x["peak_rss_mb"] for x in runs[(kind, dt)]),
            }
            if kind == "ours":
                row["isa"] = last["isa"]
            rows.append(row)
    edge = {}
    for dt in ("f32", "bf16"):
        mem = runs[("ours", dt)][-1]["mem"]
        edge[dt] = {
            "rss_after_forward_mb": mem["after_forward"]["VmRSS"],
            "rss_file_after_forward_mb": mem["after_forward"]["RssFile"],
            "rss_after_release_mb": mem["after_release"]["VmRSS"],
            "rss_file_after_release_mb": mem["after_release"]["RssFile"],
            "rss_after_next_forward_mb": mem["after_reforward"]["VmRSS"],
            "first_forward_after_release_s":
                runs[("ours", dt)][-1]["first_forward_after_release_s"],
        }
    meta = {
        "machine": platform.machine(), "cpu_count": os.cpu_count(), "layers": a.layers,
        "vocab": a.vocab, **REAL, "rounds": a.rounds, "reps": a.reps,
        "torch": runs.get(("torch", "f32"), [{}])[-1].get("torch"),
    }
    if a.json:
        print(json.dumps({"meta": meta, "results": rows, "edge_memory": edge}, indent=2))
        return 0
    print(f"Qwen2.5-VL text encoder, {a.layers} layers at the real width "
          f"(hidden {REAL['hidden']}, {REAL['heads']}/{REAL['kv_heads']} heads, MLP "
          f"{REAL['intermediate']}), vocab {a.vocab}, {a.threads} threads; best of "
          f"{a.rounds} rounds x {a.reps} reps; ratio = time / torch fp32 time")
    print_table(rows, [("impl", "impl", ""), ("weights", "weights", ""), ("tokens", "tokens", "d"),
                       ("ms", "ms", ".1f"), ("ratio", "ratio", ".2f"),
                       ("gflops", "GFLOP/s", ".0f"),
                       ("peak_rss_mb", "peak RSS MB", ".0f")])
    print("\nEdge memory mode (qwen-edge worker, current RSS in MB):")
    for dt, e in edge.items():
        print(f"  {dt:4s} weights: after forward {e['rss_after_forward_mb']:.0f} (file pages "
              f"{e['rss_file_after_forward_mb']:.0f}) -> after release "
              f"{e['rss_after_release_mb']:.0f} (file pages {e['rss_file_after_release_mb']:.0f});"
              f" next forward {e['first_forward_after_release_s'] * 1e3:.0f} ms, RSS back to "
              f"{e['rss_after_next_forward_mb']:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
