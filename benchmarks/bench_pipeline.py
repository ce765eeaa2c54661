"""End-to-end benchmark: a full-width, reduced-depth Qwen-Image (2 transformer blocks at the
real width, 2 text-encoder layers at the real width, the real VAE config) generating 512x512
with 8 steps: the time per stage for qwen-edge and for diffusers' QwenImagePipeline (torch fp32)
in the same run, and the ratio per stage.

    python benchmarks/bench_pipeline.py [--size 512] [--steps 8] [--threads 2] [--json]

Weights are random (diffusers / transformers init), written once to a temporary folder in the
real layout; the tokenizer is the demo's byte-level one (so prompts are longer in tokens than
with the real vocabulary)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import (
    dump_json,
    limit_threads,
    peak_rss_mb,
    print_table,
    reexec_without_openblas_overrides,
)

PROMPT = "A cozy reading nook with a green armchair, warm lamp light and a sleeping cat"


def build(root: str, blocks: int, text_layers: int) -> None:
    import diffusers
    import torch
    import transformers

    from edge_server import demo

    torch.manual_seed(0)
    diffusers.QwenImageTransformer2DModel(num_layers=blocks).eval().save_pretrained(
        os.path.join(root, "transformer")
    )
    diffusers.AutoencoderKLQwenImage().eval().save_pretrained(os.path.join(root, "vae"))
    cfg = transformers.Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": text_layers,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "vocab_size": demo.DEMO_VOCAB,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "rope_scaling": {"mrope_section": [16, 24, 24], "rope_type": "default"},
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": 3584,
        },
        vocab_size=demo.DEMO_VOCAB,
    )
    transformers.Qwen2_5_VLForConditionalGeneration(cfg).eval().save_pretrained(
        os.path.join(root, "text_encoder")
    )
    demo.write_tokenizer(__import__("pathlib").Path(root) / "tokenizer")
    ln3 = math.log(3)
    index = {"_class_name": "QwenImagePipeline", "_diffusers_version": diffusers.__version__,
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             "text_encoder": ["transformers", "Qwen2_5_VLForConditionalGeneration"],
             "tokenizer": ["transformers", "Qwen2Tokenizer"],
             "transformer": ["diffusers", "QwenImageTransformer2DModel"],
             "vae": ["diffusers", "AutoencoderKLQwenImage"]}
    with open(os.path.join(root, "model_index.json"), "w") as f:
        json.dump(index, f)
    diffusers.FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256,
        base_shift=ln3,
        max_image_seq_len=8192,
        max_shift=ln3,
        use_dynamic_shifting=True,
        time_shift_type="exponential",
    ).save_pretrained(os.path.join(root, "scheduler"))


def run_diffusers(root: str, size: int, steps: int, latents) -> dict[str, float]:
    import diffusers
    import torch
    import transformers

    tok = transformers.Qwen2Tokenizer.from_pretrained(os.path.join(root, "tokenizer"))
    pipe = diffusers.QwenImagePipeline.from_pretrained(
        root, tokenizer=tok, torch_dtype=torch.float32
    )
    t = {}
    with torch.inference_mode():
        t0 = time.perf_counter()
        emb, mask = pipe.encode_prompt(PROMPT, device="cpu")
        t["prompt"] = time.perf_counter() - t0
        marks = [time.perf_counter()]

        def cb(p, i, ts, kw):
            marks.append(time.perf_counter())
            return {}

        lat = pipe(
            prompt_embeds=emb,
            prompt_embeds_mask=mask,
            height=size,
            width=size,
            num_inference_steps=steps,
            true_cfg_scale=1.0,
            output_type="latent",
            latents=torch.from_numpy(latents)[None],
            callback_on_step_end=cb,
        ).images
        t["steps"] = marks[-1] - marks[0]
        t0 = time.perf_counter()
        lat = pipe._unpack_latents(lat, size, size, pipe.vae_scale_factor).to(torch.float32)
        mean = torch.tensor(pipe.vae.config.latents_mean).view(1, 16, 1, 1, 1)
        std = 1.0 / torch.tensor(pipe.vae.config.latents_std).view(1, 16, 1, 1, 1)
        pipe.vae.decode(lat / std + mean, return_dict=False)
        t["vae"] = time.perf_counter() - t0
    t["total"] = t["prompt"] + t["steps"] + t["vae"]
    return t


def run_ours(root: str, size: int, steps: int, latents, threads: int) -> dict[str, float]:
    import edge_server

    m = edge_server.load_model(root, threads=threads)
    m.generate(PROMPT, width=64, height=64, steps=1, seed=0)  # load every component
    r = m.generate(PROMPT + " ", width=size, height=size, steps=steps, latents=latents)
    tm = r.timings
    return {
        "prompt": tm.prompt_encode_s,
        "steps": sum(tm.steps_s),
        "vae": tm.vae_decode_s,
        "total": tm.prompt_encode_s + sum(tm.steps_s) + tm.vae_decode_s,
    }


def main() -> int:
    reexec_without_openblas_overrides()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--text-layers", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from edge_server import _engine
    from edge_server.pipeline import pack_latents

    root = tempfile.mkdtemp(prefix="qe-bench-pipe-")
    build(root, args.blocks, args.text_layers)
    latents = pack_latents(_engine.randn(0, (16, args.size // 8, args.size // 8)))
    with limit_threads(args.threads):
        ours = run_ours(root, args.size, args.steps, latents, args.threads)
        ref = run_diffusers(root, args.size, args.steps, latents)
    rows = [
        {"stage": k, "ours_s": ours[k], "torch_s": ref[k], "ratio": ref[k] / ours[k]}
        for k in ("prompt", "steps", "vae", "total")
    ]
    meta = {
        "size": args.size,
        "steps": args.steps,
        "threads": args.threads,
        "blocks": args.blocks,
        "text_layers": args.text_layers,
        "peak_rss_mb": peak_rss_mb(),
    }
    if args.json:
        dump_json(rows, meta)
    else:
        print(
            f"{args.size}x{args.size}, {args.steps} steps, {args.blocks} full-width blocks, "
            f"{args.text_layers} text layers, real VAE, {args.threads} threads"
        )
        print_table(
            rows,
            [
                ("stage", "stage", ""),
                ("ours_s", "qwen-edge s", ".2f"),
                ("torch_s", "diffusers fp32 s", ".2f"),
                ("ratio", "speed ratio", ".2f"),
            ],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
