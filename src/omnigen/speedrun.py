"""The Shapes-X2I speedrun's records: time to target over seeds, from evaluations at fixed training minutes.

    python -m omnigen.speedrun out=experiments/speedrun control=baseline \\
        rows.baseline=[runs/sr_baseline_s0,runs/sr_baseline_s1,runs/sr_baseline_s2] rows.lr3e-3=[runs/...]

Each run directory holds `eval_minute_<m>/results.json` (python -m omnigen.evaluate of the
`checkpoints/minute_<m>.ckpt` that `WallClockCheckpoint` wrote) and `checkpoints/wall_clock.json`.
A run reaches a target at the first evaluated minute where all of its conditions hold; a row's time to
target is the median over its seeds (with the range; "> last minute" where a seed never reaches it).
Against `control`, each row gets paired per-seed differences on the seeds it shares with the control
(run directories are named `..._s<seed>`; same seed = same data and noise) with a 95 % confidence
interval from the paired t distribution over seeds. Writes `records.json`, `records.md` and
`curves.png` (every metric against training minutes, one line per row).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnigen.utils.cli import MissingPath, UsageError, UserError, check_paths, parse_cli, run_main
from omnigen.utils.stats import difference_lines, judge, paired_interval, pairs_with_control, seed_of

# name -> [(family/metric, threshold)]: every condition must hold (metric >= threshold).
TARGETS: dict[str, list[tuple[str, float]]] = {
    "T1": [
        ("text_to_image/object", 0.9),
        ("text_to_image/colour", 0.9),
        ("text_to_image/position", 0.9),
        ("mixed_modal/unchanged_psnr", 25.0),
    ],
    "T2": [("text_to_image/exact_scene", 0.6), ("mixed_modal/edit_correct", 0.8)],
}
# count (exactly as many shapes as the prompt names) sits beside object / colour / position because
# those match each named shape to its best detection, so extra copies of a shape raise them.
METRICS = [
    "text_to_image/object",
    "text_to_image/colour",
    "text_to_image/position",
    "text_to_image/count",
    "text_to_image/exact_scene",
    "mixed_modal/edit_correct",
    "mixed_modal/unchanged_psnr",
]
REPORTED_MINUTES = (5.0, 30.0)
EVAL_DIR = re.compile(r"eval_minute_(\d+(?:\.\d+)?)$")


def read_run(run: Path) -> dict[float, dict[str, float]]:
    """minute -> {family/metric: value} for every evaluated minute of one run."""
    curve = {}
    for directory in run.glob("eval_minute_*"):
        if (match := EVAL_DIR.search(directory.name)) and (directory / "results.json").is_file():
            curve[float(match.group(1))] = read_scores(directory / "results.json")
    if not curve:
        raise MissingPath(f"{run}: no eval_minute_<m>/results.json (see experiments/speedrun/run.sh)")
    return dict(sorted(curve.items()))


def time_to(target: str, curve: dict[float, dict[str, float]]) -> float:
    """The first minute whose evaluation meets every condition of `target`; inf when none does."""
    for minute, scores in curve.items():
        if all(scores.get(metric, -math.inf) >= bound for metric, bound in TARGETS[target]):
            return minute
    return math.inf


def read_scores(results_file: Path) -> dict[str, float]:
    results = json.loads(results_file.read_text())["results"]
    return {
        f"{family}/{name}": value
        for family, scores in results.items()
        if family != "per_task"
        for name, value in scores.items()
    }


def summarise(
    rows: dict[str, list[Path]],
    control: str | None,
    ceiling: Path | None = None,
    minutes: tuple[float, ...] = REPORTED_MINUTES,
    primary: str | None = None,
) -> dict[str, Any]:
    """Per row: time to each target, metrics at the reported minutes, the mean curve, and paired
    differences against `control`, at each of `minutes`. Each row against the control is one experiment (a
    candidate change): `primary` (`family/metric@minute`) is its pre-registered cell, which carries its verdict;
    every other cell of the row is exploratory, Holm-corrected over the row's cells (omnigen.utils.stats).
    `references`: the floor (the first row's untrained minute-0 models) and the ceiling (`ceiling`, an
    evaluation of the ground truth)."""
    curves = {name: [read_run(run) for run in runs] for name, runs in rows.items()}
    records: dict[str, Any] = {}
    floor_runs = curves[control or next(iter(curves))]
    records["references"] = {
        "floor": {m: statistics.fmean(c[0.0][m] for c in floor_runs) for m in METRICS}
        if all(0.0 in c for c in floor_runs)
        else None,
        "ceiling": {m: v for m, v in read_scores(ceiling / "results.json").items() if m in METRICS}
        if ceiling is not None
        else None,
    }
    for name, runs in curves.items():
        row = {"runs": [str(r) for r in rows[name]]}
        for target in TARGETS:  # None: not reached within the evaluated minutes
            times = [time_to(target, curve) for curve in runs]
            row[target] = {
                key: finite(value)
                for key, value in (("median", statistics.median(times)), ("min", min(times)), ("max", max(times)))
            } | {"seeds": list(map(finite, times))}
        for minute in minutes:
            row[f"at_{minute:g}"] = {
                m: statistics.fmean(c[minute][m] for c in runs) if all(minute in c for c in runs) else None
                for m in METRICS
            }
        row["curve"] = {
            m: {
                str(minute): statistics.fmean(c[minute][m] for c in runs if minute in c)
                for minute in sorted({k for c in runs for k in c})
            }
            for m in METRICS
        }
        row["per_seed"] = {
            str(run): {str(minute): {m: scores[m] for m in METRICS} for minute, scores in curve.items()}
            for run, curve in zip(rows[name], runs, strict=True)
        }
        records[name] = row
    if control is not None:
        seeded = {name: list(zip(map(seed_of, rows[name]), runs, strict=True)) for name, runs in curves.items()}
        for name, pairs in pairs_with_control(seeded, control, lambda run: run[0], what="row").items():
            cells = {
                f"{metric}@{minute:g}": paired_interval(
                    [c[minute][metric] - k[minute][metric] for (_, c), (_, k) in pairs]
                )
                for minute in minutes
                for metric in METRICS
                if all(minute in c and minute in k for (_, c), (_, k) in pairs)
            }
            main = [primary_cell(primary)] if primary else []
            if primary and main[0] not in cells:
                raise UserError(f"primary {primary!r} is none of row {name!r}'s cells ({', '.join(cells)})")
            records[name]["vs_control"] = judge(cells, main)
    return records


def primary_cell(primary: str) -> str:
    """`family/metric@minute` in the form the cells are named (`@30.0` -> `@30`)."""
    metric, _, minute = primary.partition("@")
    try:
        return f"{metric}@{float(minute):g}"
    except ValueError:
        raise UserError(
            f"primary is family/metric@minute, e.g. text_to_image/exact_scene@30; got {primary!r}"
        ) from None


def finite(value: float) -> float | None:
    return None if math.isinf(value) else value


def minutes_text(value: float | None) -> str:
    return "not reached" if value is None else f"{value:g}"


def markdown(records: dict[str, Any], control: str | None, minutes: tuple[float, ...] = REPORTED_MINUTES) -> str:
    short = [m.split("/")[1] for m in METRICS]
    at = " / ".join(f"@{m:g}" for m in minutes)
    lines = [
        "| row | T1 min (range) | T2 min (range) | " + " | ".join(f"{s} {at}" for s in short) + " |",
        "|---" * (3 + len(METRICS)) + "|",
    ]
    for label, scores in (
        ("floor: untrained (minute 0)", records["references"]["floor"]),
        ("ceiling: ground truth", records["references"]["ceiling"]),
    ):
        if scores is not None:
            lines.append(f"| {label} | — | — | " + " | ".join(f"{scores[m]:.2f}" for m in METRICS) + " |")
    for name, row in ((n, r) for n, r in records.items() if n != "references"):
        cells = [name] + [
            f"{minutes_text(row[t]['median'])} ({minutes_text(row[t]['min'])}–{minutes_text(row[t]['max'])})"
            for t in TARGETS
        ]
        for metric in METRICS:
            values = [row[f"at_{m:g}"][metric] for m in minutes]
            cells.append(" / ".join("—" if v is None else f"{v:.2f}" for v in values))
        lines.append("| " + " | ".join(cells) + " |")
    if control is not None:
        lines += difference_lines(
            control,
            {name: row["vs_control"] for name, row in records.items() if name != "references" and "vs_control" in row},
        )
    return "\n".join(lines) + "\n"


def plot(records: dict[str, Any], path: Path) -> None:
    """Learning curves: each metric against training minutes, one line per row (mean over its seeds),
    the targets' thresholds dashed."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a training box
    import matplotlib.pyplot as plt

    bounds = {metric: bound for conditions in TARGETS.values() for metric, bound in conditions}
    fig, axes = plt.subplots(2, 4, figsize=(17, 7))
    for ax in axes.flat[len(METRICS) :]:
        ax.axis("off")
    for ax, metric in zip(axes.flat, METRICS, strict=False):  # the metrics, then the blank panels
        for name, row in ((n, r) for n, r in records.items() if n != "references"):
            minutes = sorted(row["curve"][metric], key=float)
            ax.plot([float(m) for m in minutes], [row["curve"][metric][m] for m in minutes], marker="o", label=name)
        if metric in bounds:
            ax.axhline(bounds[metric], color="grey", linestyle="--", linewidth=1)
        ax.set_title(metric)
        ax.set_xlabel("training minutes")
    axes.flat[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@dataclass
class SpeedrunConfig:
    out: str = "???"  # directory for records.json, records.md and curves.png
    rows: dict[str, list[str]] = field(default_factory=dict)  # rows.NAME=[RUN,...]: one run per seed, same seeds
    control: str | None = None  # the row the others are compared with, seed by seed
    minutes: list[float] = field(default_factory=lambda: list(REPORTED_MINUTES))  # the minutes the table gives
    ceiling: str | None = None  # an evaluation of the ground truth (evaluate ground_truth=true): the ceiling row
    primary: str | None = None  # family/metric@minute: the pre-registered cell that carries each row's verdict


def main(argv: list[str] | None = None) -> None:
    cfg = parse_cli(SpeedrunConfig, argv, "omnigen.speedrun", "out=DIR rows.baseline=[RUN_s0,RUN_s1]", __doc__)
    if not cfg.rows:
        raise UsageError("omnigen.speedrun: no rows (e.g. rows.baseline=[runs/sr_baseline_s0,runs/sr_baseline_s1])")
    rows = {name: [Path(run) for run in runs] for name, runs in cfg.rows.items()}
    check_paths([*(run for runs in rows.values() for run in runs), cfg.ceiling], "expected a run directory")
    minutes = tuple(cfg.minutes)
    records = summarise(rows, cfg.control, Path(cfg.ceiling) if cfg.ceiling else None, minutes, cfg.primary)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "records.json").write_text(json.dumps(records, indent=1, allow_nan=False))
    (out / "records.md").write_text(markdown(records, cfg.control, minutes))
    plot(records, out / "curves.png")
    print((out / "records.md").read_text())


if __name__ == "__main__":
    run_main(main, "omnigen.speedrun")
