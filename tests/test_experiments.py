"""experiments/job.sh and experiments/ablation.sh, what the experiments' run.sh are made of: fit, wall time,
evaluation, report."""

import json
import os
import subprocess
import time
from pathlib import Path

from hydra_utils import FAST
from omegaconf import OmegaConf

from omnigen.report import main as report

JOB = Path(__file__).resolve().parents[1] / "experiments" / "job.sh"
ABLATION = JOB.parent / "ablation.sh"
TINY_EVAL = "samples_per_family=2 num_inference_steps=1 batch_size=2"


def run_job(runs: Path, name: str, *overrides: str) -> subprocess.CompletedProcess:
    env = os.environ | {"RUNS": str(runs), "EVAL_ARGS": TINY_EVAL, "WANDB_MODE": "offline"}
    return subprocess.run(
        ["bash", str(JOB), name, "text_to_image,mixed_modal", *overrides],
        env=env,
        cwd=runs,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_job_fits_times_evaluates_and_does_not_refit(tmp_path):
    done = run_job(tmp_path, "tiny_s0", *FAST, "callbacks.sample_grid=null", "seed=0")
    assert done.returncode == 0, done.stderr[-2000:]
    run = tmp_path / "tiny_s0"
    assert int((run / "fit_seconds").read_text()) >= 0 and (run / "checkpoints" / "last.ckpt").is_file()
    results = json.loads((run / "eval" / "results.json").read_text())
    assert results["settings"]["samples_per_family"] == 2 and results["settings"]["steps_trained"] == 4
    assert set(results["results"]) == {"text_to_image", "mixed_modal", "per_task"}
    stamp = (run / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    again = run_job(tmp_path, "tiny_s0", *FAST, "seed=0")
    assert again.returncode == 0 and (run / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stamp  # evaluated only
    table = report([f"out={tmp_path / 'report'}", f"arms.tiny=[{run}]"])
    assert table["tiny"]["steps"] == [4] and (tmp_path / "report" / "plot.png").is_file()


def test_a_failing_fit_stops_the_job_before_evaluation(tmp_path):
    failed = run_job(tmp_path, "bad", "model/mask=no_such_mask")
    assert failed.returncode != 0 and "no_such_mask" in failed.stderr
    assert not (tmp_path / "bad" / "fit_seconds").exists() and not (tmp_path / "bad" / "eval").exists()


def test_ablation_fits_every_arm_on_every_seed_evaluates_its_curve_and_reports_against_the_control(tmp_path):
    runs, out, kept = tmp_path / "runs", tmp_path / "report", tmp_path / "kept"
    env = os.environ | {
        "RUNS": str(runs),
        "OUT": str(out),
        "KEEP": str(kept),
        "SEEDS": "1 2",
        "STEPS": "2 4",
        "MINUTES": "0.001",
        "FIT_ARGS": " ".join([*FAST, "callbacks.sample_grid=null", "callbacks.wall_clock.minutes=[0,0.001]"]),
        "EVAL_ARGS": TINY_EVAL,
        "PRIMARY": "text_to_image/object",
        "EXPECT": "causal=worse",
        "WANDB_MODE": "offline",
    }
    command = ["bash", str(ABLATION), "ablate_mask", "omnigen", "omnigen", "causal model/mask=causal"]
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    masks = {"omnigen": "omnigen.model.masks.omnigen.OmniGenMask", "causal": "omnigen.model.masks.causal.CausalMask"}
    for arm, mask in masks.items():
        for seed in (1, 2):
            run = runs / f"ablate_mask_{arm}_s{seed}"
            config = OmegaConf.load(run / ".hydra" / "config.yaml")
            assert (config.model.mask._target_, config.seed) == (mask, seed)  # the arm's fit, on its seed
            assert 0 < int((run / "fit_seconds").read_text()) <= elapsed
            for step in (2, 4):
                settings = json.loads((run / f"eval_step{step}" / "results.json").read_text())["settings"]
                assert (settings["steps_trained"], settings["samples_per_family"]) == (step, 2)
    saved = json.loads((out / "results.json").read_text())
    assert saved["control"] == "omnigen" and saved["expect"] == {"causal": "worse"}
    assert saved["primary"] == {"metric": "text_to_image/object", "point": "eval_step4"}  # the last step's
    assert saved["evaluated"] == "eval_step4" and list(saved["curve"]) == ["eval_step2", "eval_step4"]
    difference = saved["vs_control"]["causal"]["text_to_image/object"]
    assert difference["n"] == 2 and difference["verdict"] == "no verdict at 2 seeds"
    assert set(saved["references"]) == {"floor: untrained", "ceiling: ground truth"}
    assert saved["references"]["ceiling: ground truth"]["text_to_image"]["object"] == 1.0
    assert (out / "examples_s1.png").is_file() and (out / "examples_s2.png").is_file()
    timed = json.loads((out / "equal_time" / "results.json").read_text())  # MINUTES: the clock's checkpoints too
    assert timed["evaluated"] == "eval_minute_0.001" and set(timed["vs_control"]) == {"causal"}
    assert timed["primary"] is None and timed["expect"] == {}  # the primary cell is in the other report
    copy = kept / "ablate_mask_causal_s2"  # what is committed: enough for the report, no checkpoint
    assert sorted(path.name for path in copy.iterdir()) == [
        "csv",
        "eval_minute_0.001",
        "eval_step2",
        "eval_step4",
        "fit_seconds",
    ]
    assert (copy / "eval_step4" / "examples.png").is_file() and not (copy / "eval_step2" / "examples.png").exists()
    again = subprocess.run(
        command,
        env=env | {"REPORT": "only", "OUT": str(tmp_path / "again"), "RUNS": str(tmp_path / "gone")},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    rederived = json.loads((tmp_path / "again" / "results.json").read_text())  # from the copies alone
    assert rederived["table"] == saved["table"] and rederived["vs_control"] == saved["vs_control"]
    assert rederived["references"] == saved["references"] and (tmp_path / "again" / "examples_s2.png").is_file()
    stamp = (runs / "ablate_mask_causal_s1" / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert (
        again.returncode == 0
        and (runs / "ablate_mask_causal_s1" / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stamp
    )
