"""The report's numbers: runs read, seeds aggregated, paired differences against a control, markdown tables
(python -m omnigen.report)."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

from omnigen.utils.cli import MissingPath, UserError
from omnigen.utils.stats import (
    difference_lines,
    interval_text,
    judge,
    paired_interval,
    pairs_with_control,
    seed_of,
    verdict_text,
)

# What a table shows by default, per family present in the runs' evaluations.
HEADLINE: dict[str, list[str]] = {
    "text_to_image": ["object", "colour", "position", "count", "exact_scene"],
    "mixed_modal": ["edit_correct", "unchanged_psnr", "target_object"],
    "subject_driven": ["subject_kind", "subject_fidelity", "object"],
    "visual_condition": ["edge_f1", "seg_miou", "box_iou", "depth_accuracy"],
    "cv_tasks": ["edge_f1", "seg_miou", "mask_iou", "psnr"],
}


def read_run(path: Path) -> dict[str, Any]:
    """{"results": evaluate's per-family means, "loss": [(step, loss)], "fit_seconds": float | None}.
    `path` is a run directory (its evaluation in eval/) or an evaluation directory inside a run (e.g.
    an earlier checkpoint's: <run>/eval_step600). The samples of seen and of unseen instructions (evaluate's
    "seen" / "unseen", where computed) read as two more families, "seen" and "unseen", whose metrics are
    family/metric: metrics=[text_to_image/object,seen/text_to_image/object,unseen/text_to_image/object]."""
    results_file, run = path / "results.json", path.parent
    if not results_file.is_file():
        results_file, run = path / "eval" / "results.json", path
    if not results_file.is_file():
        raise MissingPath(f"{path}: no eval/results.json (run python -m omnigen.evaluate ckpt=... out={path}/eval)")
    results = json.loads(results_file.read_text())
    steps = results["settings"].get("steps_trained")
    loss = []
    metrics_file = run / "csv" / "version_0" / "metrics.csv"
    if metrics_file.is_file():  # up to the evaluated checkpoint: the run may have gone on after it
        with metrics_file.open() as f:
            loss = [
                (int(r["step"]), float(r["train/loss"]))
                for r in csv.DictReader(f)
                if r.get("train/loss") and (steps is None or int(r["step"]) <= steps)
            ]
    seconds = run / "fit_seconds"
    return {
        "run": str(run),
        "evaluation": str(results_file.parent),
        "results": {k: v for k, v in results["results"].items() if k != "per_task"} | part_metrics(results),
        "per_task": results["results"].get("per_task", {}),
        "steps_trained": steps,
        "loss": loss,
        "fit_seconds": float(seconds.read_text()) if seconds.is_file() else None,
    }


def part_metrics(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """evaluate's "seen" / "unseen" {family: {metric: mean}} as {"seen": {"family/metric": mean}, ...}."""
    return {
        part: {f"{family}/{k}": v for family, scores in results[part].items() for k, v in scores.items()}
        for part in ("seen", "unseen")
        if isinstance(results.get(part), dict)  # older files have none; a string says why they were not computed
    }


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summary(values: list[float]) -> dict[str, Any]:
    mean, sd = mean_sd(values)
    return {"mean": mean, "sd": sd, "seeds": values}


def headline_metrics(runs: list[dict[str, Any]]) -> list[str]:
    """family/metric keys of HEADLINE that every run evaluated."""
    return [
        f"{family}/{m}"
        for family, names in HEADLINE.items()
        for m in names
        if all(m in r["results"].get(family, {}) for r in runs)
    ]


def final_loss(loss: list[tuple[int, float]]) -> float:
    """Mean training loss over the last tenth of the logged steps (single batches are noisy)."""
    tail = [v for _, v in loss[-max(1, len(loss) // 10) :]]
    return sum(tail) / len(tail)


def aggregate(arms: dict[str, list[dict[str, Any]]], metrics: list[str]) -> dict[str, dict[str, Any]]:
    """arm -> {metric: {"mean", "sd", "seeds"}} plus fit_seconds and steps."""
    table: dict[str, dict[str, Any]] = {}
    for arm, runs in arms.items():
        row: dict[str, Any] = {}
        for key in metrics:
            row[key] = summary([score(r["results"], key) for r in runs])
        finals = [final_loss(r["loss"]) for r in runs if r["loss"]]
        row["final_loss"] = summary(finals) if finals else None
        walls = [r["fit_seconds"] for r in runs if r["fit_seconds"] is not None]
        row["fit_seconds"] = {"mean": mean_sd(walls)[0], "seeds": walls} if walls else None
        row["steps"] = sorted({r["steps_trained"] for r in runs})
        table[arm] = row
    return table


def score(results: dict[str, dict[str, float]], key: str) -> float:
    """One `family/metric` value of evaluate's per-family results."""
    family, metric = key.split("/", 1)
    return results[family][metric]


def reference_score(results: dict[str, dict[str, float]], key: str) -> float | None:
    """A floor's or ceiling's value, None where it has none (the ground truth has no seen / unseen split)."""
    family, metric = key.split("/", 1)
    return results.get(family, {}).get(metric)


def digits(key: str) -> int:
    return 1 if key.endswith("psnr") else 3


def versus_control(
    read: dict[str, list[dict[str, Any]]], control: str, metrics: list[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """arm -> {metric: paired_interval of (arm - control) over the seeds the two share}."""
    pairs = pairs_with_control(read, control, lambda run: seed_of(Path(run["run"])))
    return {
        arm: {
            key: paired_interval([score(r["results"], key) - score(c["results"], key) for r, c in arm_pairs])
            for key in metrics
        }
        for arm, arm_pairs in pairs.items()
    }


def parse_primary(primary: str, metrics: list[str], points: list[str]) -> tuple[str, str]:
    """`family/metric@point` (`@point` optional: the last evaluation) -> (metric, point)."""
    metric, _, point = primary.partition("@")
    point = point or points[-1]
    if metric not in metrics:
        raise UserError(f"primary metric {metric!r} is not among the compared metrics {metrics}")
    if point not in points:
        raise UserError(f"primary point {point!r} is not among the evaluations {points} (curve=)")
    return metric, point


def judge_differences(
    by_point: dict[str, dict[str, dict[str, dict[str, Any]]]],
    primary: tuple[str, str] | None,
    expect: dict[str, str],
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """{point: {arm: {metric: paired_interval}}} judged as one experiment: each arm's primary cell (metric,
    point) tests its hypothesis expect[arm]; every other cell, at every point, is exploratory (omnigen.utils.stats)."""
    if expect and primary is None:
        raise UserError("expect.ARM= states a hypothesis about the primary cell: name it with primary=METRIC@POINT")
    cells = {
        (p, arm, key): d for p, arms in by_point.items() for arm, by_key in arms.items() for key, d in by_key.items()
    }
    main = [(primary[1], arm, primary[0]) for arm in by_point[primary[1]]] if primary else []
    judged = judge(cells, main, {(point, arm, key): expect[arm] for point, arm, key in main if arm in expect})
    return {
        p: {arm: {key: judged[(p, arm, key)] for key in by_key} for arm, by_key in arms.items()}
        for p, arms in by_point.items()
    }


def markdown(
    table: dict[str, dict[str, Any]],
    metrics: list[str],
    seeds: int,
    references: dict[str, dict[str, Any]] | None = None,
    differences: dict[str, dict[str, Any]] | None = None,
    control: str | None = None,
) -> str:
    lines = [f"| arm | {' | '.join(metrics)} | final train loss | fit wall (s) |", "|---" * (len(metrics) + 3) + "|"]
    for label, results in (references or {}).items():
        cells = ["–" if (v := reference_score(results, key)) is None else f"{v:.{digits(key)}f}" for key in metrics]
        lines.append(f"| {label} | {' | '.join(cells)} | – | – |")
    for arm, row in table.items():
        cells = []
        for key in metrics:
            cells.append(f"{row[key]['mean']:.{digits(key)}f} ± {row[key]['sd']:.{digits(key)}f}")
        wall = f"{row['fit_seconds']['mean']:.0f}" if row["fit_seconds"] else "–"
        loss = f"{row['final_loss']['mean']:.4f} ± {row['final_loss']['sd']:.4f}" if row["final_loss"] else "–"
        lines.append(f"| {arm} | {' | '.join(cells)} | {loss} | {wall} |")
    lines.append(
        f"\nMean ± sample standard deviation over {seeds} seeds; every seed's value is in results.json. "
        "Final train loss: the mean of the last tenth of logged steps."
    )
    if differences:
        lines += difference_lines(control, differences)
    return "\n".join(lines) + "\n"


def primary_markdown(
    by_point: dict[str, dict[str, dict[str, dict[str, Any]]]], primary: tuple[str, str], expect: dict[str, str]
) -> str:
    """The pre-registered cell's verdict per arm, ahead of everything exploratory."""
    metric, point = primary
    at = point_label(point) if point else "the evaluation"
    lines = ["", f"**Primary cell: {metric} at {at}** (the one cell that carries the hypothesis; run.sh names it):", ""]
    for arm, by_key in by_point[point].items():
        hypothesis = f" (hypothesis: {expect[arm]})" if arm in expect else ""
        d = by_key[metric]
        lines.append(f"- {arm}{hypothesis}: {interval_text(d, digits(metric))}, {verdict_text(d)}")
    return "\n".join(lines) + "\n"


def point_value(point: str) -> float:
    """The training step or minute an evaluation directory is named for (eval_step600 -> 600)."""
    match = re.search(r"(\d+(?:\.\d+)?)$", point)
    if match is None:
        raise UserError(
            f"curve names evaluation directories ending in their step or minute "
            f"(eval_step600, eval_minute_10), got {point!r}"
        )
    return float(match.group(1))


def point_label(point: str) -> str:
    return point.removeprefix("eval_").replace("_", " ")


def curve_markdown(
    curve: dict[str, dict[str, dict[str, Any]]],
    metrics: list[str],
    differences: dict[str, dict[str, dict[str, Any]]] | None,
    control: str | None,
) -> str:
    """The learning curve (every arm's mean at every evaluation) and, with a control, the paired
    differences at every evaluation."""
    points = list(curve)
    head = f"| arm | metric | {' | '.join(point_label(p) for p in points)} |"
    lines = ["", "Learning curve (mean over seeds at each evaluation):", "", head, "|---" * (len(points) + 2) + "|"]
    for key in metrics:
        for arm in curve[points[0]]:
            cells = [f"{curve[p][arm][key]['mean']:.{digits(key)}f}" for p in points]
            lines.append(f"| {arm} | {key} | {' | '.join(cells)} |")
    if differences:
        lines += [
            "",
            f"Paired differences against `{control}` at each evaluation (mean [95 % t interval], role: verdict):",
            "",
            head,
            "|---" * (len(points) + 2) + "|",
        ]
        for arm in differences[points[0]]:
            for key in metrics:
                cells = [
                    f"{interval_text(d, digits(key))} {verdict_text(d)}"
                    for d in (differences[p][arm][key] for p in points)
                ]
                lines.append(f"| {arm} | {key} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"
