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

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnigen.report.figures import example_comparisons, plot, plot_curves
from omnigen.report.tables import (
    aggregate,
    curve_markdown,
    headline_metrics,
    judge_differences,
    markdown,
    mean_sd,
    parse_primary,
    point_value,
    primary_markdown,
    read_run,
    reference_score,
    versus_control,
)
from omnigen.utils.cli import UsageError, UserError, check_paths, parse_cli

__all__ = ["ReportConfig", "main", "mean_sd", "report"]


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
    primary: str | None = None,
) -> dict[str, Any]:
    """Read every run, write results.json / results.md / plot.png under out, return the aggregate table.
    `control`: the arm the others are compared with, seed by seed; `primary` (`family/metric@point`, the point
    an entry of `curve`, default its last): the pre-registered cell that alone tests the hypotheses `expect`
    ({arm: 'better' | 'worse'}), every other cell exploratory (Holm-corrected); `floor` / `ceiling`: evaluation
    directories of the untrained model and of the ground truth, shown as reference rows; `curve`: evaluation
    directories inside every run, in training order (eval_step600, ...): a learning curve, whose last point is
    the table's."""
    if not arms or any(not runs for runs in arms.values()):
        raise UserError("every arm needs at least one run directory")
    expect = expect or {}
    if bad := {
        arm: d for arm, d in expect.items() if arm not in arms or arm == control or d not in ("better", "worse")
    }:
        raise UserError(f"expect is expect.ARM=better or expect.ARM=worse for an arm other than the control, got {bad}")
    points = curve or [""]
    for point in curve or []:
        point_value(point)  # named for its step or minute, before anything is read
    read_at = {p: {arm: [read_run(Path(r) / p) for r in runs] for arm, runs in arms.items()} for p in points}
    read = read_at[points[-1]]
    everything = [r for runs in read.values() for r in runs]
    metrics = metrics or headline_metrics(everything)
    unknown = [m for m in metrics if "/" not in m]
    if unknown:
        raise UserError(f"metrics are written family/metric, e.g. text_to_image/colour; got {unknown}")
    for run in (r for by_arm in read_at.values() for runs in by_arm.values() for r in runs):
        if missing := [key for key in metrics if reference_score(run["results"], key) is None]:
            raise UserError(
                f"{run['evaluation']}: no {', '.join(missing)} in its results.json (a family it did not evaluate, or "
                "a seen / unseen part without samples)"
            )
    aggregated = {p: aggregate(read_at[p], metrics) for p in points}
    table = aggregated[points[-1]]
    references = {
        label: read_run(path)["results"]
        for label, path in (("floor: untrained", floor), ("ceiling: ground truth", ceiling))
        if path is not None
    }
    main_cell = parse_primary(primary, metrics, points) if primary else None
    by_point = (
        judge_differences({p: versus_control(read_at[p], control, metrics) for p in points}, main_cell, expect)
        if control
        else None
    )
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
                "primary": {"metric": main_cell[0], "point": main_cell[1]} if main_cell else None,
                "vs_control": differences,
                "curve": aggregated if curve else None,
                "vs_control_curve": by_point if curve else None,
                "per_task": {arm: [r["per_task"] for r in runs] for arm, runs in read.items()},
            },
            indent=2,
        )
    )
    text = markdown(table, metrics, seeds, references, differences, control)
    if by_point and main_cell:
        text += primary_markdown(by_point, main_cell, expect)
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
    primary: str | None = None  # family/metric@point: the pre-registered cell that carries the verdict
    expect: dict[str, str] = field(default_factory=dict)  # expect.ARM=better|worse: about the primary cell


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg = parse_cli(ReportConfig, argv, "omnigen.report", "out=DIR arms.a=[RUN_s0,RUN_s1] arms.b=[...]", __doc__)
    if not cfg.arms:
        raise UsageError("omnigen.report: no arms (e.g. arms.omnigen=[runs/mask_omnigen_s0,runs/mask_omnigen_s1])")
    arms = {name: [Path(run) for run in runs] for name, runs in cfg.arms.items()}
    check_paths([*(run for runs in arms.values() for run in runs), cfg.floor, cfg.ceiling], "expected a run directory")
    out, path = Path(cfg.out), lambda p: Path(p) if p else None
    table = report(
        arms,
        out,
        cfg.metrics,
        cfg.title,
        cfg.control,
        path(cfg.floor),
        path(cfg.ceiling),
        cfg.curve,
        cfg.expect,
        cfg.primary,
    )
    print((out / "results.md").read_text())
    return table
