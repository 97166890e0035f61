"""Paired comparisons over seeds, and the verdicts an experiment may draw from them.

Runs of two arms that share a seed share the initial weights, every batch, noise draw and timestep, so
their difference is measured seed by seed: a 95 % interval from Student's t over the per-seed
differences (exact quantiles, scipy.stats) and the paired t test's two-sided p value.

An experiment compares many cells (arm × metric × time point); at 95 % each, one in twenty differences
that do not exist would look real. So an experiment pre-registers one primary cell, a metric at a time
point (`primary=family/metric@point`), and only that cell carries its hypothesis (supported / refuted /
inconclusive). Every other cell is exploratory: its verdict comes from Holm-adjusted p values over all
of the experiment's exploratory cells (Holm 1979: the family-wise error stays at 5 %, uniformly more
powerful than Bonferroni). The primary cells of several arms are one family of their own, Holm-adjusted
the same way. A verdict needs MIN_SEEDS_FOR_VERDICT paired seeds.

Differences equal on every seed (metrics over 128 samples move in steps of 1/128, so this happens) leave
the spread unmeasured, not zero: no interval and no verdict, and the text says so.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from scipy import stats

from omnigen.utils.cli import UserError, did_you_mean

Run = TypeVar("Run")

MIN_SEEDS_FOR_VERDICT = 3
CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE


def seed_of(run: Path) -> str:
    """The seed a run directory is named for (`..._s<seed>`), which pairs it with the control's run."""
    match = re.search(r"_s(\d+)$", run.name)
    if match is None:
        raise UserError(f"{run}: name run directories ..._s<seed> so arms pair by seed")
    return match.group(1)


def paired_interval(differences: list[float]) -> dict[str, Any]:
    """Mean of paired differences, its 95 % t interval and the paired t test's p value; `low`, `high` and
    `p` are None where they cannot be measured (one seed, or the same difference on every seed)."""
    n, mean = len(differences), statistics.fmean(differences)
    sd = statistics.stdev(differences) if n > 1 else 0.0
    if n < 2 or sd <= 1e-12 * max(1.0, abs(mean)):  # rounding leaves equal floats a hair apart
        return {"mean": mean, "low": None, "high": None, "p": None, "n": n}
    half = stats.t.ppf(1 - ALPHA / 2, n - 1) * sd / math.sqrt(n)
    p = float(stats.ttest_1samp(differences, 0.0).pvalue)
    return {"mean": mean, "low": mean - half, "high": mean + half, "p": p, "n": n}


def holm(pvalues: dict[Any, float | None]) -> dict[Any, float | None]:
    """Holm's step-down adjusted p values over one family of tests (None: not a test, left out of it).
    The i-th smallest of m is multiplied by (m - i + 1), then made monotone and capped at 1."""
    tested = sorted((p, key) for key, p in pvalues.items() if p is not None)
    adjusted: dict[Any, float | None] = dict.fromkeys(pvalues)
    running = 0.0
    for rank, (p, key) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[key] = running
    return adjusted


def direction(difference: dict[str, Any], adjusted_p: float | None) -> str:
    """'better' / 'worse' (higher is better) where the test rejects at ALPHA, else 'inconclusive'; or why
    there is no verdict (too few seeds; no spread)."""
    if difference["n"] < MIN_SEEDS_FOR_VERDICT:
        return f"no verdict at {difference['n']} seeds"
    if difference["p"] is None:
        return "no verdict: equal on every seed, spread unmeasured"
    if adjusted_p is None or adjusted_p >= ALPHA:
        return "inconclusive"
    return "better" if difference["mean"] > 0 else "worse"


def judge(
    cells: dict[Any, dict[str, Any]], primary: Iterable[Any] = (), expect: dict[Any, str] | None = None
) -> dict[Any, dict[str, Any]]:
    """{cell: paired_interval} (a cell: any key, e.g. (point, arm, metric)) -> the same with `role`
    ('primary' / 'exploratory'), `p_adjusted` (Holm, within the cell's family) and `verdict`. `expect`
    ({primary cell: 'better' | 'worse'}) turns a primary cell's direction into 'supported' / 'refuted';
    it may name primary cells only."""
    primary, expect = set(primary), expect or {}
    if unknown := sorted(set(primary) - set(cells)):
        raise UserError(f"primary cell(s) {unknown} are not among the compared cells")
    if stray := sorted(set(expect) - primary):
        raise UserError(f"a hypothesis (expect) applies to the primary cell alone; got it for {stray}")
    judged = {}
    for role, keys in (("primary", primary), ("exploratory", set(cells) - primary)):
        adjusted = holm({key: cells[key]["p"] for key in keys})
        for key in keys:
            found = direction(cells[key], adjusted[key])
            if key in expect and found in ("better", "worse"):
                found = f"{'supported' if found == expect[key] else 'refuted'}: {found}"
            judged[key] = {**cells[key], "role": role, "p_adjusted": adjusted[key], "verdict": found}
    return {key: judged[key] for key in cells}  # in the cells' order


def interval_text(d: dict[str, Any], digits: int = 3) -> str:
    """`+0.123 [+0.100, +0.146]`, or the mean alone where no interval was measured."""
    if d["low"] is None:
        return f"{d['mean']:+.{digits}f} " + ("(one seed)" if d["n"] < 2 else "(equal on every seed: no interval)")
    return f"{d['mean']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]"


def verdict_text(d: dict[str, Any]) -> str:
    """`primary: supported: better` / `exploratory: inconclusive (Holm p = 0.41)`."""
    p = "" if d.get("p_adjusted") is None else f" (Holm p = {d['p_adjusted']:.2g})"
    return f"{d['role']}: {d['verdict']}{p}"


def pairs_with_control(
    arms: dict[str, list[Run]], control: str, seed: Callable[[Run], str], what: str = "arm"
) -> dict[str, list[tuple[Run, Run]]]:
    """Every arm but the control -> its (run, control's run) pairs on the seeds the two share; at least
    two per arm. `seed` names a run's seed; `what` is the word for an arm in messages."""
    if control not in arms:
        raise UserError(
            f"control {what} {control!r} is not among the {what}s {sorted(arms)}{did_you_mean(control, arms)}"
        )
    baseline = {seed(run): run for run in arms[control]}
    pairs = {}
    for arm, runs in arms.items():
        if arm == control:
            continue
        pairs[arm] = [(run, baseline[s]) for run in runs if (s := seed(run)) in baseline]
        if len(pairs[arm]) < 2:
            raise UserError(
                f"{what} {arm!r} shares {len(pairs[arm])} seed(s) with the control {control!r}: pair at "
                "least two by seed (run directories named ..._s<seed>)"
            )
    return pairs


def difference_lines(control: str, differences: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Markdown lines for {arm: {cell: judged difference}}: the primary cells first, then the exploratory."""
    lines = [
        "",
        f"Paired differences against `{control}` (mean [95 % t interval] over seeds). The primary cell alone "
        "carries the hypothesis; every other cell is exploratory, its verdict from Holm-adjusted p values over "
        "all exploratory cells:",
        "",
    ]
    for role in ("primary", "exploratory"):
        lines += [
            f"- {arm}, {key}: {interval_text(d)} ({verdict_text(d)})"
            for arm, by_cell in differences.items()
            for key, d in by_cell.items()
            if d["role"] == role
        ]
    return lines
