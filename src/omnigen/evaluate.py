"""Evaluate a checkpoint on held-out Shapes-X2I samples with the programmatic metrics.

    python -m omnigen.evaluate ckpt=logs/fit/runs/<run>/checkpoints/last.ckpt suite=shapes out=eval/
    python -m omnigen.evaluate ground_truth=true image_size=32 out=eval_ground_truth/   # the ceiling

Writes `<out>/results.json` (mean of every metric per family and per task, with the settings; under
"seen" and "unseen" the same per family over the samples whose instruction the checkpoint's training
stream did or did not hold, with their count "n", regenerated from the checkpoint's run config up to its
step or `stream_step`, or a string saying why not; with ground_truth=true, `ckpt` names the stream) and
`<out>/results.md` (one table per family) and `<out>/examples.png` (input | target | generated per family).
`suite=held_out_combos` scores only samples showing an attribute pair that `data.holdout=combos` keeps out of
training, `suite=seen_combos` only samples showing none.
`wandb=true` also logs a W&B table with example images (offline unless WANDB_MODE says otherwise).
`omnigen.callbacks.evaluation.EvaluationCallback` runs the same during a fit.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omnigen.checkpoints.format import CHECKPOINT_KEY, check_path, read_checkpoint, read_export_config
from omnigen.evaluation import (
    SUITES,
    evaluate_shapes,
    example_grid,
    flat_metrics,
    log_wandb_table,
    markdown,
    seen_and_unseen,
)
from omnigen.metrics import FAMILIES
from omnigen.pipeline import OmniGenPipeline
from omnigen.utils.cli import UsageError, check_choice, parse_cli, run_main


@dataclass
class EvaluateConfig:
    ckpt: str = ""  # a checkpoint file or exported directory (with ground_truth: only its training stream is read)
    ground_truth: bool = False  # score the targets themselves: the ceiling each metric can reach
    suite: str = "shapes"  # or held_out_combos / seen_combos: samples with / without a pair data.holdout=combos drops
    families: list[str] = field(default_factory=lambda: list(FAMILIES))
    samples_per_family: int = 64
    image_size: int | None = None  # None: the checkpoint's training size
    num_inference_steps: int = 20
    guidance_scale: float = 2.0
    img_guidance_scale: float = 1.5
    guidance_interval: list[float] | None = None  # [low, high]: guide only at steps with t in it (as generate)
    schedule_shift: float = 1.0  # the steps' time shift (as generate; 1: uniform)
    shift_reference_size: int | None = None  # the side the shift holds at, scaled with the image's (as generate)
    step_cache: float = 0.0  # skip steps whose input changed less than this (as generate; 0: none)
    step_cache_order: int = 1
    batch_size: int = 16
    seed: int = 0
    out: str = "eval"
    wandb: bool = False
    device: str = "cpu"
    # The step up to which the checkpoint's training stream is regenerated to split seen from unseen instructions
    # (None: its own); e.g. an untrained checkpoint's parts over the samples a later one of its run had read.
    stream_step: int | None = None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg = parse_cli(EvaluateConfig, argv, "omnigen.evaluate", "ckpt=path/last.ckpt", __doc__)
    check_choice(cfg.suite, SUITES, "suite", "omnigen.evaluate")
    if cfg.ground_truth:
        if cfg.image_size is None:
            raise UsageError("omnigen.evaluate: ground_truth=true needs image_size=… (there is no checkpoint to ask)")
        pipe, size = None, cfg.image_size
    else:
        if not cfg.ckpt:
            raise UsageError("omnigen.evaluate: missing ckpt (e.g. ckpt=path/last.ckpt), or ground_truth=true")
        pipe = OmniGenPipeline.from_checkpoint(cfg.ckpt, device=cfg.device)
        if cfg.image_size is None and pipe.default_size is None:
            raise UsageError(f"omnigen.evaluate: {cfg.ckpt} records no training image size; pass image_size=…")
        size = cfg.image_size or pipe.default_size[0]
    results, examples = evaluate_shapes(
        pipe,
        cfg.families,
        cfg.samples_per_family,
        size,
        cfg.num_inference_steps,
        cfg.guidance_scale,
        cfg.img_guidance_scale,
        cfg.batch_size,
        cfg.seed,
        cfg.suite,
        cfg.guidance_interval,
        cfg.schedule_shift,
        cfg.step_cache,
        cfg.step_cache_order,
        cfg.shift_reference_size,
    )
    # The training stream that splits the samples into seen and unseen instructions: the checkpoint's (with
    # ground_truth, that of ckpt= if given), up to its step or stream_step.
    stream = training_stream(cfg.ckpt, pipe)
    if stream is None:
        parts, regenerated = "not computed: the ground truth, and no ckpt= names a training stream", {}
    else:
        run_config, steps_trained = stream
        step = steps_trained if cfg.stream_step is None else cfg.stream_step
        parts, regenerated = seen_and_unseen(run_config, step, examples)
        regenerated |= {"steps": step}
    settings = asdict(cfg) | {
        "image_size": size,
        "steps_trained": pipe.module.steps_trained if pipe else None,
        "training_instructions": regenerated,
    }
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    split = {"seen": parts, "unseen": parts} if isinstance(parts, str) else parts
    (out / "results.json").write_text(json.dumps({"settings": settings, "results": results} | split, indent=2))
    table = markdown(results, settings, parts)
    (out / "results.md").write_text(table)
    example_grid(examples).save(out / "examples.png")
    if cfg.wandb:
        import wandb

        os.environ.setdefault("WANDB_MODE", "offline")
        run = wandb.init(project="omnigen", job_type="evaluate", dir=str(out), config=settings)
        log_wandb_table(examples, run)
        run.log(flat_metrics(results))
        run.finish()
    print(table)
    return results


def training_stream(ckpt: str, pipe: OmniGenPipeline | None) -> tuple[dict[str, Any] | None, int] | None:
    """(run config, steps trained) of the checkpoint whose training stream splits seen from unseen: the loaded
    pipeline's, or else (the ground truth) the description `ckpt` keeps, read without building its model."""
    if pipe is not None:
        return pipe.module.run_config, pipe.module.steps_trained
    if not ckpt:
        return None
    meta = read_export_config(ckpt) if check_path(ckpt) == "export" else read_checkpoint(ckpt)[CHECKPOINT_KEY]
    return meta.get("run_config"), meta.get("global_step", 0)


if __name__ == "__main__":
    run_main(main, "omnigen.evaluate")
