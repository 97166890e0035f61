"""The report's figures: metrics and learning curves per arm, training losses, example grids side by side."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omnigen.report.tables import point_label, point_value, reference_score, score
from omnigen.utils.stats import seed_of


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
            value = reference_score(results, key)  # None: this reference has no such value
            if value is not None and not (key.endswith("psnr") and label.startswith("ceiling")):  # 100 dB flattens
                ax.axhline(value, color="grey", linestyle=style, linewidth=1, label=label)
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
