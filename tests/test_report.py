"""python -m omnigen.report over real runs: a tiny fit, evaluated twice (two "seeds"), grouped into arms."""

import csv
import json
import math
import shutil
import statistics

import pytest

from omnigen.evaluate import main as evaluate
from omnigen.report import main, mean_sd
from omnigen.utils.cli import UserError


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
        evaluate(
            [
                f"ckpt={run}/checkpoints/last.ckpt",
                "families=[text_to_image,mixed_modal]",
                "samples_per_family=3",
                "num_inference_steps=2",
                "batch_size=3",
                f"seed={seed}",
                f"out={run}/eval",
            ]
        )
        dirs.append(run)
    return dirs


def test_report_aggregates_seeds_into_a_table_and_a_plot(runs, tmp_path, capsys):
    a, b = runs
    main([f"out={tmp_path}", f"arms.both=[{a},{b}]", f"arms.first=[{a}]"])
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
    logged = [
        float(r["train/loss"])
        for r in csv.DictReader((a / "csv" / "version_0" / "metrics.csv").open())
        if r.get("train/loss")
    ]
    assert table["both"]["final_loss"]["mean"] == pytest.approx(logged[-1]) and table["both"]["final_loss"]["sd"] == 0
    md = (tmp_path / "results.md").read_text()
    assert "| both |" in md and "| first |" in md and "over 1 seeds" in md and "text_to_image/colour" in md
    assert md in capsys.readouterr().out
    assert (tmp_path / "plot.png").stat().st_size > 1000


def test_report_names_what_is_wrong(runs, tmp_path):
    with pytest.raises(SystemExit, match="no arms"):
        main([f"out={tmp_path}"])
    with pytest.raises(SystemExit, match="key=value"):
        main(["--out", str(tmp_path), "--arm", f"x={tmp_path}"])
    with pytest.raises(FileNotFoundError, match="no eval/results.json"):
        main([f"out={tmp_path}", f"arms.x=[{tmp_path}]"])
    with pytest.raises(ValueError, match="family/metric"):
        main([f"out={tmp_path}", f"arms.x=[{runs[0]}]", "metrics=[colour]"])
    with pytest.raises(UserError, match=r"run_s0/eval: no subject_driven/object in its results.json"):
        main([f"out={tmp_path}", f"arms.x=[{runs[0]}]", "metrics=[text_to_image/object,subject_driven/object]"])


def test_step_named_arms_plot_a_learning_curve_from_evaluations_inside_runs(runs, tmp_path):
    for run in runs:  # an "earlier checkpoint" evaluation beside the final one
        shutil.copytree(run / "eval", run / "eval_step1")
    table = main(
        [f"out={tmp_path}", f"arms.1=[{runs[0]}/eval_step1,{runs[1]}/eval_step1]", f"arms.2=[{runs[0]},{runs[1]}]"]
    )
    assert list(table) == ["1", "2"] and table["1"]["text_to_image/object"] == table["2"]["text_to_image/object"]
    assert table["1"]["fit_seconds"]["mean"] == 12.5  # read from the run that holds the evaluation
    assert (tmp_path / "plot.png").is_file()


def write_evaluation(directory, scores):
    directory.mkdir(parents=True)
    results = {"text_to_image": {"object": scores[0]}, "mixed_modal": {"unchanged_psnr": scores[1]}}
    (directory / "results.json").write_text(json.dumps({"settings": {"steps_trained": 10}, "results": results}))


def test_report_pairs_arms_by_seed_against_the_control_with_reference_rows(tmp_path):
    """Differences are taken seed by seed (the shared seeds only), with a 95 % paired t interval."""
    control = {0: (0.50, 20.0), 1: (0.60, 22.0), 2: (0.40, 21.0), 3: (0.9, 30.0)}  # seed 3: the control's alone
    treated = {0: (0.70, 20.5), 1: (0.75, 21.0), 2: (0.62, 21.5)}
    for name, arm in (("ctl", control), ("new", treated)):
        for seed, scores in arm.items():
            write_evaluation(tmp_path / f"{name}_s{seed}" / "eval", scores)
    write_evaluation(tmp_path / "floor", (0.6, 5.0))
    write_evaluation(tmp_path / "truth", (1.0, 100.0))

    def arm(name, seeds):
        return f"arms.{name}=[" + ",".join(str(tmp_path / f"{name}_s{s}") for s in seeds) + "]"

    out = tmp_path / "report"
    main(
        [
            f"out={out}",
            arm("ctl", control),
            arm("new", treated),
            "control=ctl",
            f"floor={tmp_path / 'floor'}",
            f"ceiling={tmp_path / 'truth'}",
        ]
    )
    saved = json.loads((out / "results.json").read_text())
    objects = saved["vs_control"]["new"]["text_to_image/object"]
    differences = [0.20, 0.15, 0.22]  # seeds 0-2 (seed 3 has no pair)
    half = 4.302653 * statistics.stdev(differences) / math.sqrt(3)  # t(0.975, df 2)
    assert objects["n"] == 3 and objects["mean"] == pytest.approx(statistics.fmean(differences))
    assert (objects["low"], objects["high"]) == pytest.approx((objects["mean"] - half, objects["mean"] + half))
    md = (out / "results.md").read_text()
    # no primary cell: both cells are exploratory, Holm-adjusted over the two (p = 0.012 -> 0.024)
    assert objects["role"] == "exploratory" and objects["p_adjusted"] == pytest.approx(2 * objects["p"])
    assert "- new, text_to_image/object: +0.190 [" in md and "(exploratory: better (Holm p = 0.024))" in md
    assert "- new, mixed_modal/unchanged_psnr: +0.000 [" in md and "(exploratory: inconclusive" in md
    assert "| floor: untrained | 0.600 | 5.0 |" in md and "| ceiling: ground truth | 1.000 | 100.0 |" in md
    assert saved["references"]["floor: untrained"]["text_to_image"]["object"] == 0.6
    with pytest.raises(ValueError, match="shares 1 seed"):
        main([f"out={out}", arm("ctl", control), arm("new", [0]), "control=ctl"])
    with pytest.raises(ValueError, match="control arm 'nope'"):
        main([f"out={out}", arm("ctl", control), "control=nope"])


def test_report_draws_every_arms_learning_curve_and_judges_the_hypothesis_on_the_primary_cell(tmp_path):
    """curve= reads eval_step<N>/ inside every run: the table is the last point's, every point gets its paired
    differences, and expect= turns the primary cell's direction (alone) into supported / refuted."""
    control = {7: [(0.3, 10.0), (0.50, 20.0)], 8: [(0.3, 11.0), (0.60, 22.0)], 9: [(0.2, 12.0), (0.40, 21.0)]}
    better = {7: [(0.4, 10.0), (0.70, 20.5)], 8: [(0.3, 11.0), (0.75, 21.0)], 9: [(0.1, 12.0), (0.62, 21.5)]}
    worse = {seed: [(a - 0.1, b), (c - 0.2 - 0.01 * (seed - 7), d - 5)] for seed, [(a, b), (c, d)] in control.items()}
    for name, arm in (("ctl", control), ("up", better), ("down", worse)):
        for seed, points in arm.items():
            for step, scores in zip((600, 1200), points, strict=True):
                write_evaluation(tmp_path / f"{name}_s{seed}" / f"eval_step{step}", scores)
    logged = tmp_path / "ctl_s7" / "csv" / "version_0"  # the run went on past its evaluated step 10
    logged.mkdir(parents=True)
    (logged / "metrics.csv").write_text("step,train/loss\n5,1.0\n10,0.5\n20,9.0\n")

    def arm(name):
        return f"arms.{name}=[" + ",".join(str(tmp_path / f"{name}_s{s}") for s in control) + "]"

    out = tmp_path / "report"
    table = main(
        [
            f"out={out}",
            arm("ctl"),
            arm("up"),
            arm("down"),
            "control=ctl",
            "curve=[eval_step600,eval_step1200]",
            "primary=text_to_image/object@eval_step1200",
            "expect.up=better",
            "expect.down=better",
        ]
    )
    assert table["up"]["text_to_image/object"]["seeds"] == [0.70, 0.75, 0.62]  # the last point's
    assert table["ctl"]["final_loss"]["seeds"] == [0.5]  # the loss up to the evaluated checkpoint only
    saved = json.loads((out / "results.json").read_text())
    assert saved["evaluated"] == "eval_step1200" and saved["expect"] == {"up": "better", "down": "better"}
    assert saved["primary"] == {"metric": "text_to_image/object", "point": "eval_step1200"}
    up, down = saved["vs_control"]["up"], saved["vs_control"]["down"]
    assert up["text_to_image/object"]["verdict"] == "supported: better"
    assert down["text_to_image/object"]["verdict"] == "refuted: worse"
    assert up["text_to_image/object"]["role"] == down["text_to_image/object"]["role"] == "primary"
    # PSNR 5 dB lower on every seed is exploratory: a direction at most, never the hypothesis's verdict
    assert down["mixed_modal/unchanged_psnr"]["role"] == "exploratory"
    assert down["mixed_modal/unchanged_psnr"]["verdict"] == "no verdict: equal on every seed, spread unmeasured"
    assert up["mixed_modal/unchanged_psnr"]["verdict"] == "inconclusive"
    early = saved["vs_control_curve"]["eval_step600"]["up"]["text_to_image/object"]
    assert early["mean"] == pytest.approx(0.0) and (early["role"], early["verdict"]) == ("exploratory", "inconclusive")
    assert saved["curve"]["eval_step600"]["ctl"]["text_to_image/object"]["mean"] == pytest.approx(0.8 / 3)
    md = (out / "results.md").read_text()
    assert "| arm | metric | step600 | step1200 |" in md and "primary: supported: better" in md
    assert "**Primary cell: text_to_image/object at step1200** (the one cell" in md
    assert "- up (hypothesis: better): +0.190 [" in md
    assert (out / "plot.png").stat().st_size > 1000
    points = "curve=[eval_step600,eval_step1200]"
    with pytest.raises(ValueError, match="primary=METRIC@POINT"):
        main([f"out={out}", arm("ctl"), arm("up"), "control=ctl", points, "expect.up=better"])
    with pytest.raises(ValueError, match="primary point 'eval_step9'"):
        main([f"out={out}", arm("ctl"), arm("up"), "control=ctl", points, "primary=text_to_image/object@eval_step9"])
    with pytest.raises(ValueError, match="expect.ARM=better"):
        main([f"out={out}", arm("ctl"), arm("up"), "control=ctl", "expect.up=higher"])
    with pytest.raises(ValueError, match="ending in their step"):
        main([f"out={out}", arm("ctl"), "curve=[eval]"])


def test_a_split_the_reference_rows_lack_reads_as_a_dash_in_the_table_and_no_line_in_the_plot(tmp_path):
    """evaluate's seen / unseen split is a metric of the arms; the ground truth has no split (a string saying
    why) and an untrained floor has no seen samples, so their cells read "–" and the report still draws."""
    for seed, (seen, unseen) in {0: (0.9, 0.5), 1: (0.8, 0.6)}.items():
        for arm, shift in (("ctl", 0.0), ("new", 0.1)):
            directory = tmp_path / f"{arm}_s{seed}" / "eval"
            write_evaluation(directory, (0.7, 20.0))
            saved = json.loads((directory / "results.json").read_text())
            saved["seen"] = {"text_to_image": {"object": seen + shift, "n": 3.0}}
            saved["unseen"] = {"text_to_image": {"object": unseen + shift, "n": 5.0}}
            (directory / "results.json").write_text(json.dumps(saved))
    write_evaluation(tmp_path / "floor", (0.6, 5.0))
    floor = json.loads((tmp_path / "floor" / "results.json").read_text())
    floor["seen"], floor["unseen"] = {"text_to_image": {"n": 0.0}}, {"text_to_image": {"object": 0.6, "n": 8.0}}
    (tmp_path / "floor" / "results.json").write_text(json.dumps(floor))
    write_evaluation(tmp_path / "truth", (1.0, 100.0))
    truth = json.loads((tmp_path / "truth" / "results.json").read_text())
    truth["seen"] = truth["unseen"] = "not computed: the ground truth"
    (tmp_path / "truth" / "results.json").write_text(json.dumps(truth))

    out = tmp_path / "report"
    table = main(
        [
            f"out={out}",
            f"arms.ctl=[{tmp_path / 'ctl_s0'},{tmp_path / 'ctl_s1'}]",
            f"arms.new=[{tmp_path / 'new_s0'},{tmp_path / 'new_s1'}]",
            "control=ctl",
            "metrics=[text_to_image/object,seen/text_to_image/object,unseen/text_to_image/object]",
            f"floor={tmp_path / 'floor'}",
            f"ceiling={tmp_path / 'truth'}",
        ]
    )
    assert table["new"]["seen/text_to_image/object"]["seeds"] == pytest.approx([1.0, 0.9])
    md = (out / "results.md").read_text()
    assert "| floor: untrained | 0.600 | – | 0.600 |" in md and "| ceiling: ground truth | 1.000 | – | – |" in md
    assert (out / "plot.png").is_file()
