"""python -m omnigen.report over real runs: a tiny fit, evaluated twice (two "seeds"), grouped into arms."""

import csv
import json
import math
import shutil

import pytest

from omnigen.evaluate import main as evaluate
from omnigen.report import main, mean_sd


def test_mean_and_sample_sd():
    assert mean_sd([0.2, 0.4]) == pytest.approx((0.3, math.sqrt(0.02)))
    assert mean_sd([0.7]) == (0.7, 0.0)


@pytest.fixture(scope="module")
def runs(fitted_checkpoint, tmp_path_factory):
    """Two run directories (copies of one fit) whose evaluations differ by their eval seed."""
    root = tmp_path_factory.mktemp("runs")
    dirs = []
    for seed in (0, 1):
        run = root / f"run_s{seed}"
        shutil.copytree(fitted_checkpoint.parent.parent, run)
        (run / "fit_seconds").write_text("12.5")
        evaluate([f"ckpt={run}/checkpoints/last.ckpt", "families=[text_to_image,mixed_modal]", "samples_per_family=3",
                  "num_inference_steps=2", "batch_size=3", f"seed={seed}", f"out={run}/eval"])
        dirs.append(run)
    return dirs


def test_report_aggregates_seeds_into_a_table_and_a_plot(runs, tmp_path, capsys):
    a, b = runs
    main(["--out", str(tmp_path), "--arm", f"both={a},{b}", "--arm", f"first={a}"])
    table = json.loads((tmp_path / "results.json").read_text())["table"]
    seeds = [json.loads((r / "eval" / "results.json").read_text())["results"] for r in runs]
    for family, metric in [("text_to_image", "object"), ("mixed_modal", "unchanged_psnr")]:
        values = [s[family][metric] for s in seeds]
        cell = table["both"][f"{family}/{metric}"]
        assert cell["seeds"] == values and cell["mean"] == pytest.approx(sum(values) / 2)
        assert cell["sd"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
        assert table["first"][f"{family}/{metric}"] == {"mean": values[0], "sd": 0.0, "seeds": [values[0]]}
    assert "subject_driven/subject_fidelity" not in table["both"]  # only what every run evaluated
    assert table["both"]["fit_seconds"]["mean"] == 12.5 and table["both"]["steps"] == [2]
    logged = [float(r["train/loss"]) for r in csv.DictReader((a / "csv" / "version_0" / "metrics.csv").open())
              if r.get("train/loss")]
    assert table["both"]["final_loss"]["mean"] == pytest.approx(logged[-1]) and table["both"]["final_loss"]["sd"] == 0
    md = (tmp_path / "results.md").read_text()
    assert "| both |" in md and "| first |" in md and "over 1 seeds" in md and "text_to_image/colour" in md
    assert md in capsys.readouterr().out
    assert (tmp_path / "plot.png").stat().st_size > 1000


def test_report_names_what_is_wrong(runs, tmp_path):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--arm", "no-runs"])
    with pytest.raises(FileNotFoundError, match="no eval/results.json"):
        main(["--out", str(tmp_path), "--arm", f"x={tmp_path}"])
    with pytest.raises(ValueError, match="family/metric"):
        main(["--out", str(tmp_path), "--arm", f"x={runs[0]}", "--metrics", "colour"])


def test_step_named_arms_plot_a_learning_curve_from_evaluations_inside_runs(runs, tmp_path):
    for run in runs:  # an "earlier checkpoint" evaluation beside the final one
        shutil.copytree(run / "eval", run / "eval_step1")
    table = main(["--out", str(tmp_path), "--arm", f"1={runs[0]}/eval_step1,{runs[1]}/eval_step1",
                  "--arm", f"2={runs[0]},{runs[1]}"])
    assert list(table) == ["1", "2"] and table["1"]["text_to_image/object"] == table["2"]["text_to_image/object"]
    assert table["1"]["fit_seconds"]["mean"] == 12.5  # read from the run that holds the evaluation
    assert (tmp_path / "plot.png").is_file()
