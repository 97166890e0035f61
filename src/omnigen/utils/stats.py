"""Paired comparisons over seeds: runs of two arms that share a seed share the initial weights, every
batch, noise draw and timestep, so their difference is measured seed by seed. A 95 % confidence
interval from Student's t over the per-seed differences; a verdict only from 3 seeds on (over two, a
t interval can collapse to a point when both differences happen to be equal)."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

Run = TypeVar("Run")

MIN_SEEDS_FOR_VERDICT = 3
# Two-sided 95 % quantiles of Student's t by degrees of freedom (no SciPy at run time).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def seed_of(run: Path) -> str:
    """The seed a run directory is named for (`..._s<seed>`), which pairs it with the control's run."""
    match = re.search(r"_s(\d+)$", run.name)
    if match is None:
        raise ValueError(f"{run}: name run directories ..._s<seed> so arms pair by seed")
    return match.group(1)


def paired_interval(differences: list[float]) -> dict[str, float]:
    """Mean of paired differences and its 95 % t interval (n >= 2 seeds)."""
    n, mean = len(differences), statistics.fmean(differences)
    if n < 2:
        return {"mean": mean, "low": -math.inf, "high": math.inf, "n": n}
    half = T95.get(n - 1, 1.96) * statistics.stdev(differences) / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def verdict(difference: dict[str, float], expect: str | None = None) -> str:
    """'better' / 'worse' when the interval excludes zero (higher is better), else 'inconclusive';
    'no verdict at n seeds' below MIN_SEEDS_FOR_VERDICT. With `expect` (a hypothesis: the arm does
    'better' or 'worse' than the control), 'supported' or 'refuted' before the direction found."""
    if difference["n"] < MIN_SEEDS_FOR_VERDICT:
        return f"no verdict at {difference['n']} seeds"
    found = "better" if difference["low"] > 0 else "worse" if difference["high"] < 0 else "inconclusive"
    if expect is None or found == "inconclusive":
        return found
    return f"{'supported' if found == expect else 'refuted'}: {found}"


def pairs_with_control(
    arms: dict[str, list[Run]], control: str, seed: Callable[[Run], str], what: str = "arm"
) -> dict[str, list[tuple[Run, Run]]]:
    """Every arm but the control -> its (run, control's run) pairs on the seeds the two share; at least
    two per arm. `seed` names a run's seed; `what` is the word for an arm in messages."""
    if control not in arms:
        raise ValueError(f"control {what} {control!r} is not among the {what}s {sorted(arms)}")
    baseline = {seed(run): run for run in arms[control]}
    pairs = {}
    for arm, runs in arms.items():
        if arm == control:
            continue
        pairs[arm] = [(run, baseline[s]) for run in runs if (s := seed(run)) in baseline]
        if len(pairs[arm]) < 2:
            raise ValueError(
                f"{what} {arm!r} shares {len(pairs[arm])} seed(s) with the control {control!r}: pair at "
                "least two by seed (run directories named ..._s<seed>)"
            )
    return pairs


def difference_lines(
    control: str, differences: dict[str, dict[str, dict[str, Any]]], expect: dict[str, str] | None = None
) -> list[str]:
    """Markdown lines for {arm: {metric: paired_interval}}: the mean, its interval and the verdict
    (against the hypothesis `expect[arm]`, 'better' or 'worse', where one is given)."""
    lines = ["", f"Paired differences against `{control}` (mean [95 % t interval] over seeds):", ""]
    for arm, by_metric in differences.items():
        lines += [
            f"- {arm}, {key}: {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] "
            f"({verdict(d, (expect or {}).get(arm))})"
            for key, d in by_metric.items()
        ]
    return lines
