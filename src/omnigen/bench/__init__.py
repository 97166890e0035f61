"""Benchmarks that print ratios measured side by side in one run (never timed tests).

    python -m omnigen.bench kv_cache [ckpt=PATH | override=[model/backbone=...]] [size=32] [steps=20]
    python -m omnigen.bench loader [override=[data=mixture]] [batches=20] [workers=0]
    python -m omnigen.bench packing [override=[data=mixture]] [batches=20] [pack_tokens=1024]
    python -m omnigen.bench train_step [override=[...]] [batch=8] [size=32] [pack_tokens=1024] [memory=true]
    python -m omnigen.bench sampling [override=[...]] [size=32] [steps=50] [batch=1] [memory=true]
        [guidance_interval=[0,0.5]] [schedule_shift=3] [step_cache=0.1] [step_cache_order=1]
    python -m omnigen.bench memory [model=paper] [trainer=fsdp] [devices=8] [batch=1] [override=[...]]
    (any of them: json=PATH writes the settings and rows; kv_cache, train_step, sampling:
    device=cuda, dtype=bfloat16 for autocast)

The benchmark is a sub-command (the first argument, as in `convert`), its settings key=value as in
every omnigen command; `--help` lists them.

kv_cache: wall time of sampling with and without the prefix kv-cache for prompts with 0, 1 and
2 input images, guided (three branches with images, two without). The two variants alternate
within each repeat so machine noise hits both alike; medians and their ratio are printed, with
the largest pixel difference between the two outputs.

loader: samples/s the fit config's DataModule delivers (one loader, `workers` processes) next
to samples/s the fit config's model trains at (forward, backward, AdamW step on ready batches),
alternated within each repeat; a loader/training ratio above 1 means the loader keeps up.

packing: padding waste of the fit config's own batches, one sample per row (padded) against
packed up to pack_tokens per row, and the estimated compute that saves (a count, not a timing).

train_step: forward + backward of our transformer (its training path: samples packed up to
pack_tokens per row) next to diffusers' OmniGenTransformer2DModel holding the same weights
(exported by omnigen.convert; one left-padded sample per row), on the same batch (prompts with
0, 1 and 2 input images, then a mixed batch of all three), alternated within each repeat;
medians, speed-up = diffusers / ours, padding per side, each side's achieved matmul FLOP/s on
the useful (unpadded) work as a share of this device's measured matmul throughput (in
dtype), and the largest velocity difference between the two are printed.

sampling: full guided sampling (steps Euler steps, guidance, img_guidance) of batch
prompts with 0, 1 and 2 input images: our OmniGenPipeline.generate with the kv-cache next to
diffusers' transformer + scheduler in its pipeline's loop (its OmniGenPipeline needs
torchvision), same weights, prompts and initial noise; medians, speed-up = diffusers / ours,
token counts and the largest difference between the final images (see omnigen.bench.sampling). With a
faster sampler's options (guidance_interval, schedule_shift, step_cache) ours runs with them, and a third
column times ours as by default beside both: the speed-up the options add, and the difference to diffusers
taken from ours by default (the options change the image on purpose).

memory: parameters, gradients, optimizer states, EMA and activations per GPU for full fine-tuning and
LoRA under DDP and FSDP2, at 256², 512² and 1024² with and without activation checkpointing, planned on
the meta device from the fit config (model= and trainer= are fit's presets; see omnigen.bench.memory).

Peak memory (train_step, sampling): on CUDA always, the allocator's peak above what was
allocated before the step; on the CPU with memory=true, the resident-set peak of one step in a
fresh interpreter per side (see omnigen.bench.compare; it costs two interpreter start-ups).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from omnigen.bench import kv_cache, loader, memory, packing, sampling, train_step
from omnigen.bench.common import BenchConfig, bench_module, random_module, resolve_device, sampler_options
from omnigen.bench.train_step import training_step_flops
from omnigen.checkpoints.diffusers import DTYPES
from omnigen.pipeline import OmniGenPipeline
from omnigen.utils.cli import parse_cli

__all__ = ["BenchConfig", "main", "parse_args", "random_module", "training_step_flops"]
DEFAULT_STEPS = {"kv_cache": 20, "sampling": 50}


def print_table(rows: list[dict[str, float]]) -> None:
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(f"{row[k]:.3g}" if isinstance(row[k], float) else str(row[k]) for k in keys))


BENCHMARKS = ("kv_cache", "loader", "packing", "train_step", "sampling", "memory")
# memory's own settings, and every other benchmark's that memory does not read (with their defaults)
MEMORY_ONLY = {"model": None, "trainer": None, "devices": 8, "condition_tokens": 128, "sizes": [256, 512, 1024]}
NOT_MEMORY = {"ckpt": None, "size": 32, "device": "cpu", "dtype": "float32", "memory": False, "compile": "none"}


def parse_args(argv: list[str] | None) -> BenchConfig:
    """`BENCHMARK key=value ...`: the benchmark is a sub-command, its settings key=value."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and "=" not in argv[0] and not argv[0].startswith("-"):
        argv[0] = f"benchmark={argv[0]}"
    args = parse_cli(BenchConfig, argv, "omnigen.bench", "train_step batch=8 memory=true", __doc__)
    problems = {
        "benchmark": args.benchmark not in BENCHMARKS,
        "dtype": args.dtype not in DTYPES,
        "compile": args.compile not in ("none", "ours", "both"),
    }
    if bad := [key for key, wrong in problems.items() if wrong]:
        raise SystemExit(
            f"omnigen.bench: bad {', '.join(bad)} (benchmarks: {', '.join(BENCHMARKS)}; --help lists the keys)"
        )
    if args.benchmark != "sampling" and sampler_options(args):
        raise SystemExit(f"omnigen.bench: {', '.join(sampler_options(args))} are sampling's settings")
    if args.benchmark == "memory":
        if bad := [key for key, default in NOT_MEMORY.items() if getattr(args, key) != default]:
            raise SystemExit(
                f"omnigen.bench: memory plans the fit config's model on the meta device and does not take "
                f"{', '.join(bad)} (it takes model=, trainer=, devices=, sizes=[...], override=[...])"
            )
        if args.devices < 1 or args.batch < 1 or args.condition_tokens < 0 or not args.sizes:
            raise SystemExit("omnigen.bench: memory needs devices >= 1, batch >= 1, condition_tokens >= 0, sizes")
        return args
    if bad := [key for key, default in MEMORY_ONLY.items() if getattr(args, key) != default]:
        raise SystemExit(f"omnigen.bench: {', '.join(bad)} are memory's settings")
    if args.benchmark in ("loader", "packing") and (args.device != "cpu" or args.dtype != "float32"):
        raise SystemExit(
            f"omnigen.bench: {args.benchmark} reads the fit config's DataModule on the CPU: "
            "device and dtype are for kv_cache, train_step and sampling"
        )
    if (args.memory or args.compile != "none") and args.benchmark not in ("train_step", "sampling"):
        raise SystemExit("omnigen.bench: memory and compile are for train_step and sampling")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise SystemExit(f"omnigen.bench: {e}") from e
    if args.steps is None:
        args.steps = DEFAULT_STEPS.get(args.benchmark)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.benchmark == "memory":
        try:
            rows = memory.run(args)
        except (ValueError, HydraException, OmegaConfBaseException) as e:
            raise SystemExit(f"omnigen.bench: memory: {' '.join(str(e).split())}") from e
    elif args.benchmark == "loader":
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
    if args.benchmark != "memory":  # memory prints its own tables
        print_table(rows)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"settings": asdict(args) | {"threads": torch.get_num_threads()}, "rows": rows}, indent=2)
        )
    return rows
