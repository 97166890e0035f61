"""Benchmarks that print ratios measured side by side in one run (never timed tests).

    python -m omnigen.bench kv_cache [--ckpt PATH | --override model/backbone=...] [--size 32] [--steps 20]
    python -m omnigen.bench loader [--override data=mixture] [--batches 20] [--workers 0]
    python -m omnigen.bench packing [--override data=mixture] [--batches 20] [--pack-tokens 1024]
    python -m omnigen.bench train_step [--override ...] [--batch 8] [--size 32] [--pack-tokens 1024] [--memory]
    python -m omnigen.bench sampling [--override ...] [--size 32] [--steps 50] [--batch 1] [--memory]
    (any of them: --json PATH writes the settings and rows; kv_cache, train_step, sampling:
    --device cuda, --dtype bfloat16 for autocast)

kv_cache: wall time of sampling with and without the prefix kv-cache for prompts with 0, 1 and
2 input images, guided (three branches with images, two without). The two variants alternate
within each repeat so machine noise hits both alike; medians and their ratio are printed, with
the largest pixel difference between the two outputs.

loader: samples/s the fit config's DataModule delivers (one loader, `--workers` processes) next
to samples/s the fit config's model trains at (forward, backward, AdamW step on ready batches),
alternated within each repeat; a loader/training ratio above 1 means the loader keeps up.

packing: padding waste of the fit config's own batches, one sample per row (padded) against
packed up to --pack-tokens per row, and the estimated compute that saves (a count, not a timing).

train_step: forward + backward of our transformer (its training path: samples packed up to
--pack-tokens per row) next to diffusers' OmniGenTransformer2DModel holding the same weights
(exported by omnigen.convert; one left-padded sample per row), on the same batch (prompts with
0, 1 and 2 input images, then a mixed batch of all three), alternated within each repeat;
medians, speed-up = diffusers / ours, padding per side, each side's achieved matmul FLOP/s on
the useful (unpadded) work as a share of this device's measured matmul throughput (in
--dtype), and the largest velocity difference between the two are printed.

sampling: full guided sampling (--steps Euler steps, --guidance, --img-guidance) of --batch
prompts with 0, 1 and 2 input images: our OmniGenPipeline.generate with the kv-cache next to
diffusers' transformer + scheduler in its pipeline's loop (its OmniGenPipeline needs
torchvision), same weights, prompts and initial noise; medians, speed-up = diffusers / ours,
token counts and the largest difference between the final images (see omnigen.bench.sampling).

Peak memory (train_step, sampling): on CUDA always, the allocator's peak above what was
allocated before the step; on the CPU with --memory, the resident-set peak of one step in a
fresh interpreter per side (see omnigen.bench.compare; it costs two interpreter start-ups).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from omnigen.bench import kv_cache, loader, packing, sampling, train_step
from omnigen.bench.common import bench_module, random_module, resolve_device
from omnigen.bench.train_step import training_step_flops
from omnigen.checkpoints.diffusers import DTYPES
from omnigen.pipeline import OmniGenPipeline

__all__ = ["main", "random_module", "training_step_flops"]
DEFAULT_STEPS = {"kv_cache": 20, "sampling": 50}


def print_table(rows: list[dict[str, float]]) -> None:
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(f"{row[k]:.3g}" if isinstance(row[k], float) else str(row[k]) for k in keys))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m omnigen.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("benchmark", choices=["kv_cache", "loader", "packing", "train_step", "sampling"])
    parser.add_argument("--ckpt", help="a checkpoint or exported directory; default: the fit config's model, random")
    parser.add_argument("--override", action="append", default=[], help="a fit-config override, e.g. model=tiny")
    parser.add_argument("--size", type=int, default=32, help="output and input image side, pixels")
    parser.add_argument(
        "--steps", type=int, default=None, help="Euler steps per sample (default: kv_cache 20, sampling 50)"
    )
    parser.add_argument("--guidance", type=float, default=2.0, help="text guidance scale (kv_cache, sampling)")
    parser.add_argument("--img-guidance", type=float, default=1.5, help="image guidance scale (kv_cache, sampling)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each variant (median reported)")
    parser.add_argument("--batch", type=int, default=1, help="prompts per call")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:index] (kv_cache, train_step, sampling)")
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="float32",
        help="float32, or autocast to bfloat16/float16 with fp32 weights (kv_cache, train_step, sampling)",
    )
    parser.add_argument(
        "--compile",
        choices=["none", "ours", "both"],
        default="none",
        help="train_step, sampling: torch.compile our LLM, or both sides' transformers "
        "(compiling happens in the uncounted warm-up)",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="on the CPU, also measure each side's peak resident memory (train_step, sampling; "
        "always measured on CUDA)",
    )
    parser.add_argument(
        "--pack-tokens",
        type=int,
        default=1024,
        help="train_step, packing: our sequence-packing budget per row (model.pack_tokens)",
    )
    parser.add_argument(
        "--batches", type=int, default=20, help="loader: batches per timed repeat; packing: batches read"
    )
    parser.add_argument("--workers", type=int, default=0, help="loader: DataLoader worker processes")
    parser.add_argument("--json", type=Path, default=None, help="also write the settings and rows to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        parser.error(str(e))
    if args.benchmark in ("loader", "packing") and (device.type != "cpu" or args.dtype != "float32"):
        parser.error(
            f"{args.benchmark} reads the fit config's DataModule on the CPU: "
            "--device and --dtype are for kv_cache, train_step and sampling"
        )
    if (args.memory or args.compile != "none") and args.benchmark not in ("train_step", "sampling"):
        parser.error("--memory and --compile are for train_step and sampling")
    if args.steps is None:
        args.steps = DEFAULT_STEPS.get(args.benchmark)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.benchmark == "loader":
        print(f"loader: {args.batches} batches per repeat, {args.repeats} repeats, {torch.get_num_threads()} threads")
        rows = loader.run(args.override, args.batches, args.repeats, args.workers)
    elif args.benchmark == "packing":
        print(f"packing: {args.batches} batches of the fit config's data, packed to {args.pack_tokens} tokens per row")
        rows = packing.run(args.override, args.batches, args.pack_tokens)
    else:
        module = bench_module(args, device)
        sampled = (
            f", {args.steps} steps, guidance {args.guidance}/{args.img_guidance} (text/image)"
            if args.benchmark in DEFAULT_STEPS
            else ""
        )
        print(
            f"{args.benchmark}: {args.size}x{args.size}, batch {args.batch}, {args.repeats} repeats, {device}, "
            f"{args.dtype}, {torch.get_num_threads()} threads, compiled: {args.compile}, "
            f"{sum(p.numel() for p in module.transformer.parameters()) / 1e6:.2f}M transformer parameters{sampled}"
        )
        if args.benchmark == "kv_cache":
            rows = kv_cache.run(OmniGenPipeline(module), args, device)
        else:
            rows = {"train_step": train_step, "sampling": sampling}[args.benchmark].run(module, args, device)
    print_table(rows)
    if args.json:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        args.json.write_text(
            json.dumps({"settings": settings | {"threads": torch.get_num_threads()}, "rows": rows}, indent=2)
        )
    return rows
