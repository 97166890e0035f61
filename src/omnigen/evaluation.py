"""Scoring a pipeline on held-out Shapes-X2I samples with the programmatic metrics (omnigen.metrics): what
`python -m omnigen.evaluate` and `omnigen.callbacks.evaluation.EvaluationCallback` run.

Held out by seed is not held out by content: a one-shape caption of the evaluation stream is almost surely
in a quickstart's training stream too. `instruction_parts` splits the scores into the samples whose
instruction the checkpoint trained on (seen) and the others (unseen); the suites `held_out_combos` and
`seen_combos` draw samples that hold, or do not hold, an attribute pair `data.holdout=combos` keeps out
of training (omnigen.data.shapes.holdout)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnigen.checkpoints.format import CHECKPOINT_KEY, EXPORT_CONFIG, read_checkpoint, read_export_config
from omnigen.data.modules.shapes import StreamUnknown, trained_instructions
from omnigen.data.shapes import HOLDOUTS, ShapesSample, sample_at
from omnigen.metrics import FAMILIES, score
from omnigen.pipeline import OmniGenPipeline
from omnigen.utils.cli import UserError, did_you_mean
from omnigen.utils.images import from_array, grid, to_pil

# suite -> which samples of the evaluation stream it scores (None: every one)
SUITES: dict[str, Callable[[ShapesSample], bool] | None] = {
    "shapes": None,
    "held_out_combos": HOLDOUTS["combos"].holds,  # compositional generalisation after data.holdout=combos
    "seen_combos": HOLDOUTS["combos"].excludes,  # the same model on the pairs it trained on
}
EVAL_SEED_OFFSET = 2_000_003  # held-out: neither the training stream nor the previews use this seed


def noise_generator(seed: int, index: int) -> torch.Generator:
    """Sample `index`'s own noise, so its image does not depend on the batch it is generated in."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, index]).generate_state(1)[0]))


def evaluate_shapes(
    pipe: OmniGenPipeline | None,
    families: list[str],
    samples_per_family: int,
    image_size: int,
    num_inference_steps: int = 20,
    guidance_scale: float = 2.0,
    img_guidance_scale: float = 1.5,
    batch_size: int = 16,
    seed: int = 0,
    suite: str = "shapes",
    guidance_interval: list[float] | None = None,
    schedule_shift: float = 1.0,
    step_cache: float = 0.0,
    step_cache_order: int = 1,
    shift_reference_size: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(results, examples): results[family] = {metric: mean}, results["per_task"]["family/task"] = {metric: mean};
    examples are every scored sample (instruction, spec, images, scores). `pipe=None` scores the targets. Sample i's
    noise comes from (seed, i) alone: the scores do not depend on `batch_size`. With a pipeline, results[family] also
    holds what sampling cost: seconds_per_image (wall time inside `pipe.generate`) and transformer_rows_per_image
    (prompts × guidance branches run, summed over the computed steps)."""
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise UserError(f"no Shapes-X2I metrics for {unknown}; known families: {list(FAMILIES)}")
    if suite not in SUITES:
        raise UserError(f"unknown suite {suite!r}{did_you_mean(suite, SUITES)}; known: {list(SUITES)}")
    by_family: dict[str, list[dict[str, float]]] = defaultdict(list)
    cost: dict[str, dict[str, float]] = defaultdict(lambda: {"seconds": 0.0, "rows": 0})
    by_task: dict[str, list[dict[str, float]]] = defaultdict(list)
    examples = []
    for family in families:
        samples = [
            sample_at(i, seed + EVAL_SEED_OFFSET, {family: 1.0}, image_size, SUITES[suite])
            for i in range(samples_per_family)
        ]
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            if pipe is None:
                generated = [from_array(s.output_image) for s in chunk]
            else:
                start_time, start_rows = time.perf_counter(), pipe.transformer_rows
                generated = pipe.generate(
                    [s.instruction for s in chunk],
                    [[from_array(im) for im in s.input_images] for s in chunk],
                    image_size,
                    image_size,
                    num_inference_steps,
                    guidance_scale,
                    img_guidance_scale,
                    generator=[noise_generator(seed, i) for i in range(start, start + len(chunk))],
                    guidance_interval=guidance_interval,
                    schedule_shift=schedule_shift,
                    step_cache=step_cache,
                    step_cache_order=step_cache_order,
                    shift_reference_size=shift_reference_size,
                )
                cost[family]["seconds"] += time.perf_counter() - start_time
                cost[family]["rows"] += pipe.transformer_rows - start_rows
            for sample, image in zip(chunk, generated, strict=True):
                pixels = np.array(to_pil(image))
                scores = score(family, sample.task, sample.spec, pixels)
                by_family[family].append(scores)
                by_task[f"{family}/{sample.task}"].append(scores)  # depth, segmentation: in two families
                if "scene" in sample.spec:  # also by scene size: is one shape learned, and are three?
                    by_task[f"{family}/{sample.task}/{len(sample.spec['scene']['shapes'])} shapes"].append(scores)
                examples.append(
                    {
                        "family": family,
                        "task": sample.task,
                        "instruction": sample.instruction,
                        "spec": sample.spec,
                        "inputs": sample.input_images,
                        "target": sample.output_image,
                        "generated": pixels,
                        "scores": scores,
                    }
                )
    results: dict[str, Any] = {family: mean_scores(rows) for family, rows in by_family.items()}
    for family, spent in cost.items():  # what sampling cost: a rough clock (whatever else ran) and the exact work
        n = results[family]["n"]
        results[family] |= {"seconds_per_image": spent["seconds"] / n, "transformer_rows_per_image": spent["rows"] / n}
    results["per_task"] = {task: mean_scores(rows) for task, rows in sorted(by_task.items())}
    return results, examples


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for row in rows for k in row})
    return {k: float(np.mean([row[k] for row in rows if k in row])) for k in keys} | {"n": float(len(rows))}


def instruction_parts(examples: list[dict[str, Any]], trained: set[str]) -> dict[str, dict[str, dict[str, float]]]:
    """{"seen": {family: mean scores}, "unseen": {...}}: the samples whose instruction is, or is not, among
    `trained` (the instructions of the checkpoint's training stream); "n" counts each part's samples."""
    rows: dict[str, dict[str, list[dict[str, float]]]] = {"seen": defaultdict(list), "unseen": defaultdict(list)}
    for e in examples:
        rows["seen" if e["instruction"] in trained else "unseen"][e["family"]].append(e["scores"])
    families = list(dict.fromkeys(e["family"] for e in examples))
    return {part: {f: mean_scores(by_family[f]) for f in families} for part, by_family in rows.items()}


def seen_and_unseen(
    run_config: dict[str, Any] | None, steps: int, examples: list[dict[str, Any]]
) -> tuple[dict[str, Any] | str, dict[str, Any]]:
    """(instruction_parts against the training stream of `run_config` (a checkpoint's) regenerated up to `steps`,
    with the streams of the checkpoints it started from (`model.finetune.init_from`: a reward fine-tune's start),
    or why not; what the regeneration took: distinct instructions and seconds)."""
    start = time.perf_counter()
    try:
        trained = trained_instructions(run_config, steps) | started_from_instructions(run_config)
    except StreamUnknown as why:
        return f"not computed: {why}", {}
    seconds = round(time.perf_counter() - start, 2)
    return instruction_parts(examples, trained), {"distinct_instructions": len(trained), "seconds": seconds}


def started_from_instructions(run_config: dict[str, Any] | None) -> set[str]:
    """The instructions every checkpoint a run started from (model.finetune.init_from, followed back) trained on;
    none for a run that started from fresh weights or from an imported release (no Shapes-X2I stream)."""
    finetune = ((run_config or {}).get("model") or {}).get("finetune") or {}
    init = finetune.get("init_from")
    if not init:
        return set()
    path = Path(init)
    if not path.exists():
        raise StreamUnknown(f"the run started from {init} (model.finetune.init_from), which is not here")
    if path.is_dir() and not (path / EXPORT_CONFIG).is_file():  # a release directory: its training data are not ours
        return set()
    try:
        meta = read_export_config(path) if path.is_dir() else read_checkpoint(path)[CHECKPOINT_KEY]
    except UserError as error:
        raise StreamUnknown(f"the run's start {init} cannot be read ({error})") from error
    return trained_instructions(meta.get("run_config"), meta.get("global_step", 0)) | started_from_instructions(
        meta.get("run_config")
    )


def sampler_text(settings: dict[str, Any]) -> str:
    """The faster sampler's options where they differ from the plain sampler's, as a clause (else nothing)."""
    options = [
        f"guidance only for t in {settings['guidance_interval']}" if settings.get("guidance_interval") else "",
        f"schedule shift {settings['schedule_shift']}" if settings.get("schedule_shift", 1.0) != 1.0 else "",
        f"the shift scaled from a {settings['shift_reference_size']}-pixel side"
        if settings.get("shift_reference_size")
        else "",
        f"step cache {settings['step_cache']} (order {settings['step_cache_order']})"
        if settings.get("step_cache", 0.0) > 0
        else "",
    ]
    return "".join(f", {option}" for option in options if option)


def markdown(results: dict[str, Any], settings: dict[str, Any], parts: dict[str, Any] | str | None = None) -> str:
    """One table per family (all samples, and with `parts` the seen and unseen instructions), then per task.
    `parts` as a string: why the parts were not computed."""
    what = (
        "the ground truth (targets scored as if generated)" if settings.get("ground_truth") else f"`{settings['ckpt']}`"
    )
    lines = [
        f"# Shapes-X2I evaluation of {what}",
        "",
        f"{settings['samples_per_family']} samples per family of suite {settings.get('suite', 'shapes')} at "
        f"{settings['image_size']}², {settings['num_inference_steps']} Euler steps, guidance "
        f"{settings['guidance_scale']} / image guidance {settings['img_guidance_scale']}{sampler_text(settings)}, "
        f"seed {settings['seed']}.",
        "",
    ]
    if isinstance(parts, str):
        lines += [f"Seen / unseen instructions: {parts}.", ""]
    elif parts:
        lines += ["Unseen: samples whose instruction the checkpoint's training stream never held.", ""]
    for family in (f for f in results if f != "per_task"):
        if isinstance(parts, dict):
            columns = [results[family], parts["seen"][family], parts["unseen"][family]]
            lines += [
                f"## {family}",
                "",
                "| metric | all | seen instructions | unseen instructions |",
                "|---|---|---|---|",
            ]
            lines.append("| n | " + " | ".join(f"{c['n']:.0f}" for c in columns) + " |")
            lines += [
                f"| {k} | " + " | ".join(f"{c[k]:.3f}" if k in c else "–" for c in columns) + " |"
                for k in results[family]
                if k != "n"
            ] + [""]
            continue
        lines += [f"## {family}", "", "| metric | mean |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in results[family].items() if k != "n"] + [""]
    lines += ["## per task", "", "| task | n | scores |", "|---|---|---|"]
    lines += [
        f"| {task} | {scores['n']:.0f} | " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if k != "n") + " |"
        for task, scores in results.get("per_task", {}).items()
    ]
    return "\n".join(lines) + "\n"


EXAMPLE_CELL = 64  # pixels per tile of examples.png


def example_grid(examples: list[dict[str, Any]], per_family: int = 4):
    rows, seen = [], defaultdict(int)
    width = max((len(e["inputs"]) for e in examples), default=0)
    for e in examples:
        if seen[e["family"]] < per_family:
            seen[e["family"]] += 1
            inputs = [to_pil(from_array(im)) for im in e["inputs"]]
            rows.append(
                inputs
                + [None] * (width - len(inputs))
                + [to_pil(from_array(e["target"])), to_pil(from_array(e["generated"]))]
            )
    return grid(rows, EXAMPLE_CELL)


def flat_metrics(results: dict[str, Any]) -> dict[str, float]:
    """evaluate_shapes' per-family means as eval/<family>/<metric> (sample counts left out)."""
    return {
        f"eval/{family}/{k}": v
        for family, scores in results.items()
        if family != "per_task"
        for k, v in scores.items()
        if k != "n"
    }


def log_wandb_table(examples: list[dict[str, Any]], run: Any, key: str = "eval/examples", limit: int = 40) -> None:
    import wandb

    metric_names = sorted({k for e in examples for k in e["scores"]})
    table = wandb.Table(columns=["family", "task", "instruction", "target", "generated", *metric_names])
    for e in examples[:limit]:
        table.add_data(
            e["family"],
            e["task"],
            e["instruction"],
            wandb.Image(e["target"]),
            wandb.Image(e["generated"]),
            *[e["scores"].get(k) for k in metric_names],
        )
    run.log({key: table})
