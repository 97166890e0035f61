"""Result tables and plots for experiments: runs grouped into arms, seeds aggregated.

    python -m omnigen.report out=experiments/ablate_mask \
        arms.omnigen=[runs/mask_omnigen_s0,runs/mask_omnigen_s1] arms.causal=[runs/mask_causal_s0,runs/mask_causal_s1]

Each run directory is a fit's `hydra.run.dir` with `eval/results.json` (python -m omnigen.evaluate
... out=<run>/eval; or name an evaluation directory inside the run, e.g. <run>/eval_step600),
`csv/version_0/metrics.csv` (logger=csv) and optionally `fit_seconds` (the
fit's wall time). Writes `results.json` (every seed's numbers and the aggregates), `results.md`
(mean ± sample standard deviation over seeds) and `plot.png` (headline metrics per arm, training
loss per arm). Arms named by step numbers (arms.600=[...] arms.1200=[...]) plot as learning curves.
With control=ARM, every other arm gets its per-seed differences from the control arm on the seeds they
share (runs named ..._s<seed>), each with a 95 % paired t interval over seeds and a verdict
(omnigen.utils.stats). floor= / ceiling= add reference rows: evaluations of the untrained model and of the
ground truth (python -m omnigen.evaluate ground_truth=true).
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnigen.utils.cli import parse_cli
from omnigen.utils.stats import difference_lines, paired_interval, pairs_with_control, seed_of, verdict

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
    an earlier checkpoint's: <run>/eval_step600)."""
    results_file, run = path / "results.json", path.parent
    if not results_file.is_file():
        results_file, run = path / "eval" / "results.json", path
    if not results_file.is_file():
        raise FileNotFoundError(
            f"{path}: no eval/results.json (run python -m omnigen.evaluate ckpt=... out={path}/eval)"
        )
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
        "results": {k: v for k, v in results["results"].items() if k != "per_task"},
        "per_task": results["results"].get("per_task", {}),
        "steps_trained": steps,
        "loss": loss,
        "fit_seconds": float(seconds.read_text()) if seconds.is_file() else None,
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


def digits(key: str) -> int:
    return 1 if key.endswith("psnr") else 3


def versus_control(
    read: dict[str, list[dict[str, Any]]], control: str, metrics: list[str], expect: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """arm -> {metric: paired_interval of (arm - control) over the seeds the two share, with its verdict
    (against the hypothesis expect[arm] where there is one)}."""
    pairs = pairs_with_control(read, control, lambda run: seed_of(Path(run["run"])))
    differences = {}
    for arm, arm_pairs in pairs.items():
        differences[arm] = {}
        for key in metrics:
            d = paired_interval([score(r["results"], key) - score(c["results"], key) for r, c in arm_pairs])
            differences[arm][key] = {**d, "verdict": verdict(d, expect.get(arm))}
    return differences


def markdown(
    table: dict[str, dict[str, Any]],
    metrics: list[str],
    seeds: int,
    references: dict[str, dict[str, Any]] | None = None,
    differences: dict[str, dict[str, Any]] | None = None,
    control: str | None = None,
    expect: dict[str, str] | None = None,
) -> str:
    lines = [f"| arm | {' | '.join(metrics)} | final train loss | fit wall (s) |", "|---" * (len(metrics) + 3) + "|"]
    for label, results in (references or {}).items():
        cells = [f"{score(results, key):.{digits(key)}f}" for key in metrics]
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
        lines += difference_lines(control, differences, expect)
    return "\n".join(lines) + "\n"


def draw_losses(ax: Any, arms: dict[str, list[dict[str, Any]]]) -> None:
    """Training loss of every run, one colour per arm."""
    for i, (arm, runs) in enumerate(arms.items()):
        for k, run in enumerate(runs):
            if run["loss"]:
                ax.plot(
                    *smooth(run["loss"]),
                    color=f"C{i}",
                    alpha=0.9 if k == 0 else 0.5,
                    label=arm if k == 0 else None,
                    linewidth=1,
                )
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (10-point mean)")
    ax.set_yscale("log")  # the first steps fall by 10x; the differences that matter are late
    ax.set_title("training loss, one line per seed")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def point_value(point: str) -> float:
    """The training step or minute an evaluation directory is named for (eval_step600 -> 600)."""
    match = re.search(r"(\d+(?:\.\d+)?)$", point)
    if match is None:
        raise ValueError(
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
            f"Paired differences against `{control}` at each evaluation (mean [95 % t interval], verdict):",
            "",
            head,
            "|---" * (len(points) + 2) + "|",
        ]
        for arm in differences[points[0]]:
            for key in metrics:
                cells = [
                    f"{d['mean']:+.{digits(key)}f} [{d['low']:+.{digits(key)}f}, {d['high']:+.{digits(key)}f}] "
                    f"{d['verdict']}"
                    for d in (differences[p][arm][key] for p in points)
                ]
                lines.append(f"| {arm} | {key} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def plot_curves(
    read_at: dict[str, dict[str, list[dict[str, Any]]]],
    metrics: list[str],
    references: dict[str, dict[str, Any]],
    path: Path,
    title: str,
) -> None:
    """Every arm's learning curve on one figure: a panel per metric (mean over seeds, the band spans the
    seeds), the reference rows as dashed lines, and the training losses."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a training box
    import matplotlib.pyplot as plt

    columns = 4
    rows = math.ceil((len(metrics) + 1) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
    points = list(read_at)
    xs = [point_value(p) for p in points]
    for ax, key in zip(axes.flat, metrics, strict=False):
        for i, arm in enumerate(read_at[points[0]]):
            values = [[score(r["results"], key) for r in read_at[p][arm]] for p in points]
            ax.plot(xs, [sum(v) / len(v) for v in values], color=f"C{i}", marker="o", label=arm, linewidth=1.2)
            ax.fill_between(xs, [min(v) for v in values], [max(v) for v in values], color=f"C{i}", alpha=0.15)
        for (label, results), style in zip(references.items(), (":", "--"), strict=False):
            if not (key.endswith("psnr") and label.startswith("ceiling")):  # 100 dB would flatten the axis
                ax.axhline(score(results, key), color="grey", linestyle=style, linewidth=1, label=label)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel(point_label(points[0]).rstrip("0123456789. ") or "evaluation")
        ax.legend(fontsize=6)
    runs = read_at[points[-1]]
    if any(run["loss"] for arm_runs in runs.values() for run in arm_runs):
        draw_losses(axes.flat[len(metrics)], runs)
    else:
        axes.flat[len(metrics)].axis("off")  # no training logs kept with these runs
    for ax in list(axes.flat)[len(metrics) + 1 :]:
        ax.axis("off")
    fig.suptitle(f"{title}: mean over seeds, band = range of seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def smooth(points: list[tuple[int, float]], window: int = 10) -> tuple[list[int], list[float]]:
    steps = [s for s, _ in points]
    values = [v for _, v in points]
    windows = [values[max(0, i - window + 1) : i + 1] for i in range(len(values))]
    return steps, [sum(w) / len(w) for w in windows]


def plot(
    arms: dict[str, list[dict[str, Any]]], table: dict[str, dict[str, Any]], metrics: list[str], path: Path, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a training box
    import matplotlib.pyplot as plt

    scores = [m for m in metrics if not m.endswith("psnr")]  # PSNR is in dB, not on the [0, 1] axis
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(min(14.0, 0.5 * len(scores) + 8), 4.5), width_ratios=[3, 2])
    curve = all(arm.isdigit() for arm in table)  # arms are training steps: a learning curve per metric
    if curve:
        steps = [int(arm) for arm in table]
        for j, m in enumerate(scores):
            means, sds = [row[m]["mean"] for row in table.values()], [row[m]["sd"] for row in table.values()]
            bars.errorbar(steps, means, yerr=sds, label=m, color=f"C{j}", marker="o", capsize=2, linewidth=1)
        bars.set_xlabel("step")
    else:
        width = 0.8 / len(table)
        for i, (arm, row) in enumerate(table.items()):
            xs = [j + i * width for j in range(len(scores))]
            bars.bar(
                xs, [row[m]["mean"] for m in scores], width, yerr=[row[m]["sd"] for m in scores], label=arm, capsize=2
            )
        bars.set_xticks([j + 0.4 - width / 2 for j in range(len(scores))], scores, rotation=40, ha="right", fontsize=7)
    bars.set_ylim(0, 1)
    bars.set_title("metrics (mean ± sd over seeds)")
    bars.legend(fontsize=6)
    if curve:  # every arm holds the same runs: one loss line per run
        arms = {Path(run["run"]).name: [run] for run in next(iter(arms.values()))}
    draw_losses(curves, arms)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def example_comparisons(read: dict[str, list[dict[str, Any]]], out: Path) -> list[Path]:
    """examples_s<seed>.png for every seed on which every arm's evaluation drew examples.png: the arms'
    images of the same held-out samples (evaluate's fixed seed) side by side."""
    from PIL import Image

    from omnigen.evaluation import EXAMPLE_CELL
    from omnigen.utils.images import compare_generated

    by_seed: dict[str, dict[str, Path]] = {}
    for arm, runs in read.items():
        for run in runs:
            by_seed.setdefault(seed_of(Path(run["run"])), {})[arm] = Path(run["evaluation"]) / "examples.png"
    written = []
    for seed, files in sorted(by_seed.items()):
        if len(files) == len(read) and all(f.is_file() for f in files.values()):
            grids = {arm: Image.open(files[arm]).convert("RGB") for arm in read}
            compare_generated(grids, EXAMPLE_CELL).save(out / f"examples_s{seed}.png")
            written.append(out / f"examples_s{seed}.png")
    return written


def report(
    arms: dict[str, list[Path]],
    out: Path,
    metrics: list[str] | None = None,
    title: str = "",
    control: str | None = None,
    floor: Path | None = None,
    ceiling: Path | None = None,
    curve: list[str] | None = None,
    expect: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Read every run, write results.json / results.md / plot.png under out, return the aggregate table.
    `control`: the arm the others are compared with, seed by seed, against the hypotheses `expect`
    ({arm: 'better' | 'worse'}); `floor` / `ceiling`: evaluation directories of the untrained model and of
    the ground truth, shown as reference rows; `curve`: evaluation directories inside every run, in training
    order (eval_step600, ...): a learning curve, whose last point is the table's."""
    if not arms or any(not runs for runs in arms.values()):
        raise ValueError("every arm needs at least one run directory")
    expect = expect or {}
    if bad := {
        arm: d for arm, d in expect.items() if arm not in arms or arm == control or d not in ("better", "worse")
    }:
        raise ValueError(
            f"expect is expect.ARM=better or expect.ARM=worse for an arm other than the control, got {bad}"
        )
    points = curve or [""]
    for point in curve or []:
        point_value(point)  # named for its step or minute, before anything is read
    read_at = {p: {arm: [read_run(Path(r) / p) for r in runs] for arm, runs in arms.items()} for p in points}
    read = read_at[points[-1]]
    everything = [r for runs in read.values() for r in runs]
    metrics = metrics or headline_metrics(everything)
    unknown = [m for m in metrics if "/" not in m]
    if unknown:
        raise ValueError(f"metrics are written family/metric, e.g. text_to_image/colour; got {unknown}")
    aggregated = {p: aggregate(read_at[p], metrics) for p in points}
    table = aggregated[points[-1]]
    references = {
        label: read_run(path)["results"]
        for label, path in (("floor: untrained", floor), ("ceiling: ground truth", ceiling))
        if path is not None
    }
    by_point = {p: versus_control(read_at[p], control, metrics, expect) for p in points} if control else None
    differences = by_point[points[-1]] if by_point else None
    out.mkdir(parents=True, exist_ok=True)
    seeds = min(len(runs) for runs in read.values())
    (out / "results.json").write_text(
        json.dumps(
            {
                "arms": {arm: [str(r) for r in runs] for arm, runs in arms.items()},
                "evaluated": points[-1] or "eval",
                "table": table,
                "references": references,
                "control": control,
                "expect": expect,
                "vs_control": differences,
                "curve": aggregated if curve else None,
                "vs_control_curve": by_point if curve else None,
                "per_task": {arm: [r["per_task"] for r in runs] for arm, runs in read.items()},
            },
            indent=2,
        )
    )
    text = markdown(table, metrics, seeds, references, differences, control, expect)
    if curve:
        text += curve_markdown(aggregated, metrics, by_point, control)
        plot_curves(read_at, metrics, references, out / "plot.png", title or out.name)
    else:
        plot(read, table, metrics, out / "plot.png", title or out.name)
    if control:  # runs pair by seed: the same samples drawn by every arm
        grids = example_comparisons(read, out)
        text += "".join(f"\n![{g.stem}]({g.name})\n" for g in grids)
    (out / "results.md").write_text(text)
    return table


@dataclass
class ReportConfig:
    out: str = "???"  # where results.json, results.md and plot.png go
    arms: dict[str, list[str]] = field(default_factory=dict)  # arms.NAME=[RUN,...]: an arm's runs, one per seed
    metrics: list[str] | None = None  # family/metric keys (default: the headline ones)
    title: str = ""
    control: str | None = None  # the arm the others are compared with, seed by seed (paired t intervals)
    floor: str | None = None  # an evaluation of the untrained model: the floor row
    ceiling: str | None = None  # an evaluation of the ground truth (evaluate ground_truth=true)
    curve: list[str] | None = None  # evaluation directories inside every run, in training order: learning curves
    expect: dict[str, str] = field(default_factory=dict)  # expect.ARM=better|worse: the hypotheses verdicts test


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg = parse_cli(ReportConfig, argv, "omnigen.report", "out=DIR arms.a=[RUN_s0,RUN_s1] arms.b=[...]", __doc__)
    if not cfg.arms:
        raise SystemExit("omnigen.report: no arms (e.g. arms.omnigen=[runs/mask_omnigen_s0,runs/mask_omnigen_s1])")
    arms = {name: [Path(run) for run in runs] for name, runs in cfg.arms.items()}
    out, path = Path(cfg.out), lambda p: Path(p) if p else None
    table = report(
        arms, out, cfg.metrics, cfg.title, cfg.control, path(cfg.floor), path(cfg.ceiling), cfg.curve, cfg.expect
    )
    print((out / "results.md").read_text())
    return table


if __name__ == "__main__":
    main()
