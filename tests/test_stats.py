"""The statistics verdicts come from: exact t intervals, no interval where the spread is unmeasured, Holm's
correction over the exploratory cells, and a hypothesis judged on the pre-registered primary cell alone."""

import math
import statistics

import pytest

from omnigen.utils.stats import direction, holm, judge, paired_interval


def test_intervals_use_the_exact_t_quantile_at_every_df():
    """Quantiles from a printed t table: the old code used 1.96 past 10 degrees of freedom."""
    for n, quantile in ((3, 4.303), (11, 2.228), (13, 2.179), (31, 2.042)):
        differences = [0.1 * (i % 3) for i in range(n)]
        d = paired_interval(differences)
        half = quantile * statistics.stdev(differences) / math.sqrt(n)
        assert d["high"] - d["mean"] == pytest.approx(half, rel=1e-3), n
        assert d["low"] < d["mean"] < d["high"] and 0 < d["p"] < 1


def test_the_p_value_and_the_interval_agree():
    """A 95 % interval excludes zero exactly when the two-sided p value is below 0.05."""
    for differences in ([0.2, 0.15, 0.22], [0.05, -0.01, 0.09], [0.01, 0.02, 0.2, 0.03], [0.3, 0.31]):
        d = paired_interval(differences)
        assert (d["low"] > 0 or d["high"] < 0) == (d["p"] < 0.05), differences


def test_equal_differences_on_every_seed_get_no_interval_and_no_verdict():
    """+8/128 on each of three seeds: the spread is below the metric's resolution, not zero."""
    d = paired_interval([8 / 128] * 3)
    assert d["mean"] == pytest.approx(0.0625) and d["low"] is d["high"] is d["p"] is None
    assert direction(d, None) == "no verdict: equal on every seed, spread unmeasured"
    judged = judge({"a": d, "b": paired_interval([0.5, 0.6, 0.55])})
    assert judged["a"]["verdict"].startswith("no verdict") and judged["a"]["p_adjusted"] is None
    # the untestable cell is not counted as a test: b is adjusted over a family of one
    assert judged["b"]["p_adjusted"] == pytest.approx(judged["b"]["p"])


def test_holm_matches_a_worked_example_and_never_lowers_a_p_value():
    raw = {"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005, "e": None}
    adjusted = holm(raw)
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert adjusted == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02, "e": None})
    assert all(adjusted[k] >= p for k, p in raw.items() if p is not None)
    assert holm({"x": 0.9, "y": 0.8}) == {"x": 1.0, "y": 1.0}  # capped at 1


def test_only_the_primary_cell_tests_the_hypothesis_and_the_rest_are_corrected():
    strong = paired_interval([0.20, 0.15, 0.22])  # p = 0.012
    cells = {("edit", k): strong for k in ("correct", "psnr")} | {
        ("edit", f"other{i}"): paired_interval([0.1 * i, -0.1, 0.05]) for i in range(5)
    }
    judged = judge(cells, primary=[("edit", "correct")], expect={("edit", "correct"): "better"})
    assert judged[("edit", "correct")] == {
        **strong,
        "role": "primary",
        "p_adjusted": strong["p"],  # a family of one
        "verdict": "supported: better",
    }
    psnr = judged[("edit", "psnr")]
    # the same difference as an exploratory cell among six: 0.012 x 6 > 0.05, so no direction is claimed
    assert psnr["role"] == "exploratory" and psnr["p_adjusted"] > 0.05 and psnr["verdict"] == "inconclusive"
    assert list(judged) == list(cells)
    with pytest.raises(ValueError, match="primary cell alone"):
        judge(cells, primary=[("edit", "correct")], expect={("edit", "psnr"): "worse"})
    with pytest.raises(ValueError, match="not among the compared cells"):
        judge(cells, primary=[("edit", "nope")])


def test_a_refuted_hypothesis_and_too_few_seeds():
    worse = paired_interval([-0.2, -0.21, -0.22])
    assert judge({"c": worse}, ["c"], {"c": "better"})["c"]["verdict"] == "refuted: worse"
    two = paired_interval([0.2, 0.3])
    assert judge({"c": two}, ["c"], {"c": "better"})["c"]["verdict"] == "no verdict at 2 seeds"
