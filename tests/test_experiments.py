"""experiments/job.sh, the unit every experiment's run.sh is made of: fit, wall time, evaluation, report."""

import json
import os
import subprocess
from pathlib import Path

from hydra_utils import FAST
from omnigen.report import main as report

JOB = Path(__file__).resolve().parents[1] / "experiments" / "job.sh"


def run_job(runs: Path, name: str, *overrides: str) -> subprocess.CompletedProcess:
    env = os.environ | {"RUNS": str(runs), "EVAL_ARGS": "samples_per_family=2 num_inference_steps=1 batch_size=2",
                        "WANDB_MODE": "offline"}
    return subprocess.run(["bash", str(JOB), name, "text_to_image,mixed_modal", *overrides], env=env, cwd=runs,
                          capture_output=True, text=True, timeout=600)


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
    table = report(["--out", str(tmp_path / "report"), "--arm", f"tiny={run}"])
    assert table["tiny"]["steps"] == [4] and (tmp_path / "report" / "plot.png").is_file()


def test_a_failing_fit_stops_the_job_before_evaluation(tmp_path):
    failed = run_job(tmp_path, "bad", "model/mask=no_such_mask")
    assert failed.returncode != 0 and "no_such_mask" in failed.stderr
    assert not (tmp_path / "bad" / "fit_seconds").exists() and not (tmp_path / "bad" / "eval").exists()
