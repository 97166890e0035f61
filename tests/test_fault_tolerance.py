"""Fault tolerance: atomic checkpoint files, a SIGKILLed run resumed to the same weights, W&B run ids
kept per run directory, non-finite losses stop the run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import wandb
from hydra_utils import FAST, compose_fit
from test_distributed import subprocess_env

import omnigen.checkpoints.atomic_io as checkpoint_io
from omnigen.checkpoints.atomic_io import TEMP_SUFFIX, AtomicCheckpointIO
from omnigen.checkpoints.native import read_checkpoint
from omnigen.fit import build, train
from omnigen.training.resume import WANDB_ID_FILE, persist_wandb_run_id


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, path)

    def dies_half_way(obj, f, *args, **kwargs):  # the process fails (disk full, signal) mid-write
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint_io.torch, "save", dies_half_way)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary left
    checkpoint = io.load_checkpoint(path, weights_only=True)
    assert checkpoint["global_step"] == 1 and torch.equal(checkpoint["w"], torch.ones(1000))


def test_a_killed_saves_temporary_is_removed_by_the_next_save(tmp_path):
    """SIGKILL mid-write leaves the temporary (nothing can clean up); the target is untouched, and the
    next save into the directory removes the leftover."""
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    stale = directory / f".step_0000005.ckpt.12345{TEMP_SUFFIX}"
    stale.write_bytes(b"half a checkpoint")
    AtomicCheckpointIO().save_checkpoint({"global_step": 6}, directory / "step_0000006.ckpt")
    assert sorted(p.name for p in directory.iterdir()) == ["step_0000006.ckpt"]


def test_a_sharded_checkpoint_directory_is_replaced_whole_and_a_kill_between_the_renames_loses_nothing(tmp_path):
    """Sharded checkpoints are directories (trainer=fsdp, save_distributed_checkpoint=true): a half-written one is
    a stale temporary the next save removes, and a previous version moved aside by a save killed between its two
    renames goes back in place."""
    directory = tmp_path / "checkpoints"
    (directory / "last.ckpt").mkdir(parents=True)
    (directory / "last.ckpt" / "meta.pt").write_text("step 1")
    new = directory / f".last.ckpt{TEMP_SUFFIX}"
    new.mkdir()
    (new / "meta.pt").write_text("step 2")
    checkpoint_io.replace_path(new, directory / "last.ckpt")
    assert sorted(p.name for p in directory.iterdir()) == ["last.ckpt"]
    assert (directory / "last.ckpt" / "meta.pt").read_text() == "step 2"

    os.replace(directory / "last.ckpt", directory / f".last.ckpt{checkpoint_io.OLD_SUFFIX}")  # killed here
    (directory / f".step_0000003.ckpt{TEMP_SUFFIX}").mkdir()  # and a save killed half way
    assert [p.name for p in checkpoint_io.remove_stale_temporaries(directory)] == [f".step_0000003.ckpt{TEMP_SUFFIX}"]
    assert sorted(p.name for p in directory.iterdir()) == ["last.ckpt"]
    assert (directory / "last.ckpt" / "meta.pt").read_text() == "step 2"


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp", "ddp_spawn"])
def test_every_trainer_config_saves_atomically(trainer, tmp_path):
    cfg = compose_fit([f"trainer={trainer}", "trainer.accelerator=cpu", "trainer.precision=32-true"], tmp_path)
    assert isinstance(build(cfg)["trainer"].strategy.checkpoint_io, AtomicCheckpointIO)  # fsdp: test_fsdp


# ---- kill and resume -------------------------------------------------------------------------
STEPS = 12
RUN = [o for o in FAST if not o.startswith(("trainer.max_steps", "callbacks."))] + [
    f"trainer.max_steps={STEPS}",
    "callbacks.checkpoint.every_n_train_steps=1",
    "callbacks.sample_grid=null",
]


def fit(run_dir: Path, *overrides: str, **popen) -> subprocess.Popen:
    """`python -m omnigen.fit` in `run_dir`, on one thread: every run does the same arithmetic, and a
    loaded machine does not stall it (spinning OpenMP threads)."""
    env = {**subprocess_env(), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "omnigen.fit", *RUN, f"hydra.run.dir={run_dir}", *overrides], env=env, text=True, **popen
    )


def finish(proc: subprocess.Popen, log: Path) -> None:
    assert proc.wait(timeout=600) == 0, log.read_text()[-4000:]


def test_a_sigkilled_run_relaunched_with_ckpt_path_last_ends_with_the_uninterrupted_weights(tmp_path):
    straight_dir, run_dir = tmp_path / "straight", tmp_path / "run"
    with open(tmp_path / "straight.log", "w") as log:
        finish(fit(straight_dir, "logger=csv", stdout=log, stderr=subprocess.STDOUT), tmp_path / "straight.log")

    # First launch: killed (no chance to clean up) as soon as step 3's checkpoint appears, i.e. while it
    # writes last.ckpt or trains the next steps; `ckpt_path=last` with nothing to resume starts afresh.
    with open(tmp_path / "first.log", "w") as log:
        proc = fit(run_dir, "ckpt_path=last", stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while not (run_dir / "checkpoints" / "step_0000003.ckpt").exists():
            assert proc.poll() is None, (
                "the run ended before it could be killed:\n" + (tmp_path / "first.log").read_text()[-4000:]
            )
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    killed_at = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"]  # loads: never half-written
    assert 2 <= killed_at < STEPS
    run_id = (run_dir / WANDB_ID_FILE).read_text().strip()

    # Relaunch: same command, same directory.
    with open(tmp_path / "second.log", "w") as log:
        finish(fit(run_dir, "ckpt_path=last", stdout=log, stderr=subprocess.STDOUT), tmp_path / "second.log")

    resumed = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    straight = read_checkpoint(straight_dir / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == straight["global_step"] == STEPS and resumed["omnigen"]["global_step"] == STEPS
    assert resumed["state_dict"].keys() == straight["state_dict"].keys()
    for name, value in straight["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], value, atol=0, rtol=0, msg=name)
    # tiny's MuonAdamW: AdamW's moments and Muon's momentum, every parameter
    resumed_state, straight_state = resumed["optimizer_states"][0]["state"], straight["optimizer_states"][0]["state"]
    assert resumed_state.keys() == straight_state.keys() and resumed_state
    for index, a in resumed_state.items():
        b = straight_state[index]
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    # the relaunch trained only the missing steps, logged as a second CSV version
    rows = [r.split(",") for r in (run_dir / "csv" / "version_1" / "metrics.csv").read_text().splitlines()]
    step = rows[0].index("step")
    assert min(int(r[step]) for r in rows[1:]) == killed_at
    assert not list((run_dir / "checkpoints").glob(f".*{TEMP_SUFFIX}"))
    # ... into the same W&B run: two offline folders (one per launch) with one run id
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(f"-{run_id}") for r in runs), runs
    assert (run_dir / WANDB_ID_FILE).read_text().strip() == run_id


def test_the_wandb_run_id_belongs_to_the_run_directory(tmp_path):
    cfg = compose_fit([], tmp_path)
    first = persist_wandb_run_id(cfg, tmp_path)
    assert cfg.logger.wandb.id == first and (tmp_path / WANDB_ID_FILE).read_text().strip() == first
    again = compose_fit([], tmp_path)
    assert persist_wandb_run_id(again, tmp_path) == first and build(again)["loggers"][0]._wandb_init["id"] == first
    assert (
        persist_wandb_run_id(compose_fit([], tmp_path / "other"), tmp_path / "other") != first
    )  # new directory, new run
    explicit = compose_fit(["logger.wandb.id=mine"], tmp_path)
    assert (
        persist_wandb_run_id(explicit, tmp_path) == "mine" and (tmp_path / WANDB_ID_FILE).read_text().strip() == "mine"
    )
    assert persist_wandb_run_id(compose_fit(["logger=csv"], tmp_path / "csv"), tmp_path / "csv") is None


def test_a_non_finite_loss_stops_the_run_naming_the_step_and_tasks(tmp_path):
    cfg = compose_fit(
        FAST
        + [
            "trainer.max_steps=4",
            "callbacks.sample_grid=null",
            "+callbacks.poison._target_=probes.PoisonWeights",
            "+callbacks.poison.at_step=2",
        ],
        tmp_path,
    )
    with pytest.raises(FloatingPointError, match=r"non-finite loss nan at step 2 \(tasks in batch: \['"):
        train(cfg)
    assert not (tmp_path / "checkpoints" / "step_0000003.ckpt").exists()
    assert wandb.run is None  # the failed run's W&B run is closed: a retry in this process starts its own
