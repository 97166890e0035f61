"""last.ckpt holds the weights training ended with, however the fit ended: at a step count between two
periodic saves, at max_time, on the wall clock, on a Ctrl-C and on a data stop; and it agrees with the
final sample grid and the logged final step."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra_utils import FAST, compose_fit
from PIL import Image

from omnigen.checkpoints.native import load_module, read_checkpoint
from omnigen.data.modules.base import DataStop
from omnigen.fit import train

NO_PERIODIC_SAVE = ["callbacks.checkpoint.every_n_train_steps=1000", "logger=csv"]


def saved_step(path: Path) -> int:
    checkpoint = read_checkpoint(path)
    assert checkpoint["omnigen"]["global_step"] == checkpoint["global_step"]  # the description agrees
    return checkpoint["global_step"]


def test_a_step_count_between_two_periodic_saves_ends_in_last_ckpt(tmp_path):
    objects = train(compose_fit(FAST + ["trainer.max_steps=5", "logger=csv"], tmp_path))  # saves every 2 steps
    assert objects["trainer"].global_step == 5
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt", "step_0000002.ckpt", "step_0000004.ckpt"]
    assert saved_step(checkpoints / "last.ckpt") == 5
    assert [p.name for p in (tmp_path / "samples").iterdir()] == ["step_0000005.png"]  # drawn with these weights
    # last.ckpt holds the average the grid was drawn with, and the raw weights to resume from
    module, checkpoint = objects["module"], read_checkpoint(checkpoints / "last.ckpt")
    for name, value in module.state_dict().items():
        assert torch.equal(checkpoint["state_dict"][name], value), name
    raw = load_module(checkpoints / "last.ckpt", weights="raw").state_dict()
    assert any(not torch.equal(raw[name], value) for name, value in module.state_dict().items())


@pytest.mark.parametrize(
    "stop",
    [
        ["+trainer.max_time={seconds: 2}"],
        [
            "+callbacks.wall_clock._target_=omnigen.callbacks.wall_clock.WallClockCheckpoint",
            "+callbacks.wall_clock.minutes=[0.03]",
            "+callbacks.wall_clock.dirpath=${paths.output_dir}/clock",
        ],
    ],
    ids=["max_time", "wall_clock"],
)
def test_a_fit_stopped_by_time_ends_in_last_ckpt(tmp_path, stop):
    objects = train(compose_fit(FAST + NO_PERIODIC_SAVE + ["trainer.max_steps=100000", *stop], tmp_path))
    step = objects["trainer"].global_step
    assert 0 < step < 100000
    assert saved_step(tmp_path / "checkpoints" / "last.ckpt") == step
    assert (tmp_path / "samples" / f"step_{step:07d}.png").is_file()


def test_a_data_stop_mid_run_leaves_last_ckpt_at_the_last_whole_step(tmp_path):
    """Ten good records, then only bad ones: the skip limit stops the run after the good batches."""
    data = tmp_path / "data"
    data.mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(data / "good.png")
    good = [{"instruction": f"a red circle {i}", "output_image": "good.png"} for i in range(10)]
    bad = [{"instruction": "a red circle", "output_image": "missing.png"}] * 300
    (data / "t2i.jsonl").write_text("\n".join(json.dumps(r) for r in good + bad) + "\n")
    source = f"{{_target_: omnigen.data.sources.JsonlSource, path: '{data / 't2i.jsonl'}', family: text_to_image}}"
    overrides = FAST + NO_PERIODIC_SAVE + ["data=text_to_image", f"data.sources=[{source}]", "data.batch_size=2"]
    overrides += ["data.shuffle=false", "data.max_skip_fraction=0.5", "trainer.max_steps=100"]
    cfg = compose_fit(overrides, tmp_path / "run")
    with pytest.raises(DataStop, match="over data.max_skip_fraction=0.5"):
        train(cfg)
    with open(tmp_path / "run" / "csv" / "version_0" / "metrics.csv") as f:
        trained = [int(row["step"]) for row in csv.DictReader(f) if row["train/loss"]]
    # Lightning fetches a batch ahead, so the stop comes while the fifth good batch waits: four steps ran.
    assert trained == [0, 1, 2, 3]
    assert saved_step(tmp_path / "run" / "checkpoints" / "last.ckpt") == 4


def test_ctrl_c_ends_the_fit_after_the_current_step_with_last_ckpt(tmp_path):
    """The real command: the first SIGINT ends training as max_steps would, with exit status 0."""
    run = tmp_path / "run"
    overrides = FAST + NO_PERIODIC_SAVE + ["trainer.max_steps=100000", f"hydra.run.dir={run}"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    process = subprocess.Popen(
        [sys.executable, "-m", "omnigen.fit", *overrides], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    metrics = run / "csv" / "version_0" / "metrics.csv"
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) > 3):  # a few steps logged
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1].decode()[-3000:]
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = (text.decode() for text in process.communicate(timeout=240))
    assert process.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "stopping after this step" in stdout
    step = saved_step(run / "checkpoints" / "last.ckpt")
    assert 0 < step < 100000
    assert f"training ended at step {step}: " in stdout
    assert [p.name for p in (run / "samples").iterdir()] == [f"step_{step:07d}.png"]
