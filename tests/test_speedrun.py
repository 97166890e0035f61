"""The speedrun benchmark's pieces: checkpoints at fixed training minutes, and the records table
(time to target over seeds, paired differences against a control row)."""

import json
import math

import pytest
import torch

from omnigen.callbacks.wall_clock import WallClockCheckpoint
from omnigen.speedrun import main, markdown, summarise, time_to
from omnigen.utils.cli import UsageError
from omnigen.utils.stats import paired_interval


def test_the_speedrun_experiment_checkpoints_at_training_minutes_and_stops(tmp_path):
    """Minute 0 is the untrained model; later files come when the training clock passes each point;
    the run stops after the last one, long before max_steps."""
    from hydra_utils import FAST, compose_fit

    from omnigen.checkpoints.native import load_module
    from omnigen.fit import train

    cfg = compose_fit(
        FAST
        + [
            "experiment=speedrun",
            "trainer.max_steps=100000",
            "logger=csv",
            "callbacks.wall_clock.minutes=[0,0.01,0.02]",
        ],
        tmp_path,
    )
    objects = train(cfg)
    steps = objects["trainer"].global_step
    assert 0 < steps < 100000
    record = json.loads((tmp_path / "checkpoints" / "wall_clock.json").read_text())
    assert list(record) == ["minute_0.ckpt", "minute_0.01.ckpt", "minute_0.02.ckpt"]
    assert record["minute_0.ckpt"]["step"] == 0
    # each file once the clock passed its minute (a slow step may pass two at once)
    assert record["minute_0.01.ckpt"]["train_seconds"] >= 0.6 and record["minute_0.02.ckpt"]["train_seconds"] >= 1.2
    assert 0 < record["minute_0.01.ckpt"]["step"] <= record["minute_0.02.ckpt"]["step"]
    assert record["minute_0.02.ckpt"]["step"] == steps
    untrained, trained = (
        load_module(tmp_path / "checkpoints" / name) for name in ("minute_0.ckpt", "minute_0.02.ckpt")
    )
    assert untrained.loaded_step == 0 and trained.loaded_step == steps
    # the zero-initialised final layer moves at the first step (the layers below it only from the second)
    assert not torch.equal(
        untrained.transformer.final_layer.linear.weight, trained.transformer.final_layer.linear.weight
    )
    with pytest.raises(ValueError, match="increasing"):
        WallClockCheckpoint([5, 2.5], str(tmp_path))


def write_run(run, curve):
    """curve: minute -> (object, colour, position, exact_scene, edit_correct, unchanged_psnr)."""
    for minute, (obj, colour, position, exact, correct, psnr) in curve.items():
        out = run / f"eval_minute_{minute:g}"
        out.mkdir(parents=True)
        results = {
            "text_to_image": {
                "object": obj,
                "colour": colour,
                "position": position,
                "count": exact,  # as exact
                "exact_scene": exact,
            },
            "mixed_modal": {"edit_correct": correct, "unchanged_psnr": psnr},
            "per_task": {},
        }
        (out / "results.json").write_text(json.dumps({"results": results, "settings": {}}))
    return run


SLOW = {0: (0, 0, 0, 0, 0, 10), 5: (0.5, 0.5, 0.5, 0.1, 0.2, 18), 30: (0.95, 0.9, 0.92, 0.4, 0.6, 26)}
FAST_RUN = {0: (0, 0, 0, 0, 0, 10), 5: (0.95, 0.93, 0.91, 0.7, 0.85, 27), 30: (0.99, 0.98, 0.97, 0.8, 0.9, 30)}


def test_time_to_target_is_the_first_minute_meeting_every_condition(tmp_path):
    from omnigen.speedrun import read_run

    assert time_to("T1", read_run(write_run(tmp_path / "slow", SLOW))) == 30
    assert time_to("T2", read_run(tmp_path / "slow")) == math.inf  # exact scene never reaches 0.6
    fast = read_run(write_run(tmp_path / "fast", FAST_RUN))
    assert time_to("T1", fast) == time_to("T2", fast) == 5
    assert paired_interval([1.0, 1.0, 1.0]) == {"mean": 1.0, "low": None, "high": None, "p": None, "n": 3}
    d = paired_interval([0.1, 0.3, 0.2])
    assert d["low"] < 0.2 < d["high"] and d["high"] - d["low"] == pytest.approx(2 * 4.302653 * 0.1 / math.sqrt(3))


def test_records_table_with_a_control_row(tmp_path, capsys):
    slow = [write_run(tmp_path / f"slow_s{s}", SLOW) for s in range(4)]
    fast = [write_run(tmp_path / f"fast_s{s}", FAST_RUN) for s in range(2)] + [write_run(tmp_path / "fast_s2", SLOW)]
    records = summarise({"baseline": slow, "better": fast}, control="baseline")
    assert records["baseline"]["T1"] == {"median": 30, "min": 30, "max": 30, "seeds": [30, 30, 30, 30]}
    assert records["baseline"]["T2"]["median"] is None  # not reached by any seed
    assert records["baseline"]["per_seed"][str(slow[0])]["30.0"]["text_to_image/object"] == 0.95  # re-derivable
    assert records["better"]["T1"] == {"median": 5, "min": 5, "max": 30, "seeds": [5, 5, 30]}
    diff = records["better"]["vs_control"]["text_to_image/object@5"]  # on the 3 seeds both rows ran
    assert diff["mean"] == pytest.approx((0.45 * 2) / 3) and diff["n"] == 3
    assert (
        records["references"]["floor"]["mixed_modal/unchanged_psnr"] == 10 and records["references"]["ceiling"] is None
    )
    from omnigen.evaluate import main as evaluate

    evaluate(
        [
            "ground_truth=true",
            "image_size=32",
            "samples_per_family=2",
            "families=[text_to_image,mixed_modal]",
            f"out={tmp_path / 'truth'}",
        ]
    )
    main(
        [
            f"out={tmp_path / 'out'}",
            "control=baseline",
            f"ceiling={tmp_path / 'truth'}",
            "rows.baseline=[" + ",".join(map(str, slow)) + "]",
            "rows.better=[" + ",".join(map(str, fast)) + "]",
        ]
    )
    table = (tmp_path / "out" / "records.md").read_text()
    assert "| baseline | 30 (30–30) | not reached (not reached–not reached) |" in table
    assert "| floor: untrained (minute 0) | — | — | 0.00 |" in table
    assert "| ceiling: ground truth | — | — | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 | 100.00 |" in table
    assert "better, text_to_image/object@5: +0.300" in table and "inconclusive" in table
    assert json.loads((tmp_path / "out" / "records.json").read_text())["better"]["T1"]["median"] == 5
    assert (tmp_path / "out" / "curves.png").stat().st_size > 0
    two = summarise(
        {"baseline": slow, "two": [write_run(tmp_path / f"two_s{s}", FAST_RUN) for s in range(2)]}, control="baseline"
    )
    assert two["two"]["vs_control"]["text_to_image/object@5"]["low"] is None  # equal on both seeds: no interval
    assert (
        "two, text_to_image/object@5: +0.450 (equal on every seed: no interval) (exploratory: no verdict at 2 seeds)"
        in markdown(two, "baseline")
    )
    judged = summarise({"baseline": slow, "better": fast}, control="baseline", primary="text_to_image/object@5.0")
    roles = {cell: d["role"] for cell, d in judged["better"]["vs_control"].items()}
    assert roles.pop("text_to_image/object@5") == "primary" and set(roles.values()) == {"exploratory"}
    with pytest.raises(ValueError, match="none of row 'better'"):
        summarise({"baseline": slow, "better": fast}, control="baseline", primary="text_to_image/object@7")
    with pytest.raises(ValueError, match="shares 1 seed"):
        summarise({"baseline": slow, "one": fast[:1]}, control="baseline")
    with pytest.raises(ValueError, match="_s<seed>"):
        summarise({"baseline": slow, "odd": [write_run(tmp_path / "unnamed", SLOW)] * 2}, control="baseline")


def test_a_screen_table_at_other_minutes_without_a_control(tmp_path):
    short = {0: (0, 0, 0, 0, 0, 10), 5: (0.5, 0.5, 0.5, 0.1, 0.2, 18), 10: (0.6, 0.7, 0.8, 0.2, 0.3, 21)}
    runs = [write_run(tmp_path / "a_s2", short)]
    main([f"out={tmp_path / 'out'}", "minutes=[5,10]", f"rows.a=[{runs[0]}]"])
    table = (tmp_path / "out" / "records.md").read_text()
    assert "object @5 / @10" in table and "| a | not reached (not reached–not reached) | " in table
    assert "| 0.50 / 0.60 | 0.50 / 0.70 | 0.50 / 0.80 |" in table
    assert json.loads((tmp_path / "out" / "records.json").read_text())["a"]["at_10"]["text_to_image/position"] == 0.8
    with pytest.raises(UsageError, match=r"minutes\[1\]: Value 'ten'"):  # the key and the value it cannot convert
        main([f"out={tmp_path / 'out'}", "minutes=[5,ten]", f"rows.a=[{runs[0]}]"])
    with pytest.raises(SystemExit, match="no rows"):
        main([f"out={tmp_path / 'out'}"])
