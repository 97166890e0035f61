"""experiments/gpu/run.sh, the GPU check, at its CPU size (`tiny`): every part runs and lands in one JSON, and a
part that fails makes the command exit 1 with one line naming it."""

import json
import math
import os
import subprocess
from pathlib import Path

RUN = Path(__file__).resolve().parents[1] / "experiments" / "gpu" / "run.sh"


def run_check(*args: str) -> subprocess.CompletedProcess:
    # W&B offline, and not attached to the W&B service of this process (set by in-process runs of other tests)
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"} | {"WANDB_MODE": "offline"}
    return subprocess.run(["bash", str(RUN), "tiny", *args], env=env, capture_output=True, text=True, timeout=600)


def test_tiny_check_runs_every_part_into_one_json(tmp_path):
    out = tmp_path / "results.json"
    done = run_check(f"out={out}", f"work={tmp_path / 'work'}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["ok"] is True and results["settings"]["preset"] == "tiny"
    assert results["environment"]["device"] == "cpu" and results["environment"]["torch"]
    parts = results["parts"]
    assert list(parts) == ["bench_setup", "train_step", "sampling", "fit_32", "fit_48"]
    assert all(part["status"] == "ok" and part["seconds"] > 0 for part in parts.values())

    # ours beside diffusers' OmniGenTransformer2DModel on the same weights, every row of bench train_step
    rows = parts["train_step"]["rows"]
    assert [row["input images"] for row in rows] == [0, 1, 2, "mixed"]
    assert all(row["ours s"] > 0 and row["diffusers s"] > 0 and math.isfinite(row["max |diff|"]) for row in rows)

    # sampling text-only and with one input image, three ways each; the kv-cache leaves the image as it was
    rows = parts["sampling"]["rows"]
    assert [row["input images"] for row in rows] == [0, 1] and rows[1]["prefix tokens"] > rows[0]["prefix tokens"]
    for row in rows:
        assert min(row["kv-cache s"], row["no cache s"], row["diffusers s"]) > 0
        assert row["max |diff| kv-cache vs no cache"] < 0.1 and math.isfinite(row["max |diff| kv-cache vs diffusers"])
    assert parts["sampling"]["settings"]["steps"] == 2

    # FSDP2 on one process, at each size and batch asked for, every step timed
    for size, batch in ((32, 4), (48, 2)):
        fit = parts[f"fit_{size}"]
        assert fit["strategy"] == "FullyShardedStrategy" and fit["world_size"] == 1
        assert fit["optimizer"] == "AdamW" and fit["optimizer_settings"]["fused"] is True
        assert fit["steps"] == 4 and fit["warmup_steps_excluded"] == 2
        assert fit["step_s_median"] > 0 and fit["tokens_per_s"] > 0 and fit["peak_rss_mib"] > 0
        assert all(step["image_size"] == [size, size] and step["samples"] == batch for step in fit["per_step"])
    assert results["settings"]["fit_backbone"].startswith("random, saved by bench_setup")


def test_a_failing_part_exits_1_with_one_line_naming_it(tmp_path):
    out = tmp_path / "results.json"
    failed = run_check(f"out={out}", "parts=[fit]", "fit_sizes=[32]", "fit_batches=[4]", "override=[model/mask=nope]")
    assert failed.returncode == 1
    message = failed.stderr.strip()
    assert "\n" not in message and "FAILED" in message and "fit_32" in message and "model/mask/nope" in message
    results = json.loads(out.read_text())
    assert results["ok"] is False and results["parts"]["fit_32"]["status"] == "failed"
