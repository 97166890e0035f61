"""Distributed training from config: 2-process DDP and FSDP2 on the CPU (gloo), end to end."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra_utils import FAST, compose_fit
from lightning.pytorch.strategies import DDPStrategy

from omnigen.checkpoints.atomic_io import AtomicCheckpointIO
from omnigen.checkpoints.native import read_checkpoint
from omnigen.fit import build, train

TESTS = Path(__file__).resolve().parent


def subprocess_env() -> dict[str, str]:
    """What `python -m omnigen.fit` subprocesses of the tests run with: W&B offline, the test helpers
    importable, and not attached to the W&B service of this process (set by in-process runs of other
    tests; a run killed through it would stay "in use" there)."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {
        **env,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
    }


def fit_in_subprocess(overrides: list[str]) -> None:
    """`python -m omnigen.fit OVERRIDES` in a subprocess, which must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", "omnigen.fit", *overrides],
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_two_process_ddp_from_the_command_line_is_one_run_with_equal_weights(tmp_path):
    """`python -m omnigen.fit trainer=ddp trainer.devices=2`: Lightning re-launches the script for rank 1;
    both ranks must share rank 0's run directory (one W&B run), train on different samples and end
    with the same weights, which are the ones rank 0 checkpoints."""
    overrides = [
        *FAST,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"paths.log_dir={tmp_path}",
        "callbacks.sample_grid=null",
        "+callbacks.rank_probe._target_=probes.RankProbe",
    ]
    fit_in_subprocess(overrides)
    runs = list((tmp_path / "fit" / "runs").iterdir())
    assert len(runs) == 1, f"one run directory expected, got {runs}"
    run = runs[0]
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1, "one W&B run expected"
    assert len(list((run / "csv").iterdir())) == 1

    ranks = [torch.load(run / f"rank_{r}.pt", weights_only=True) for r in (0, 1)]
    assert [(p["rank"], p["world_size"], p["global_step"]) for p in ranks] == [(0, 2, 4), (1, 2, 4)]
    keys = [p["keys"] for p in ranks]
    assert len(keys[0]) == len(keys[1]) == 4 * 4  # 4 steps of 4 samples on each rank
    assert len(set(keys[0])) == 16 and not set(keys[0]) & set(keys[1]), "the ranks must read different samples"
    checkpoint = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 4 and checkpoint["omnigen"]["global_step"] == 4
    for name, value in ranks[0]["state_dict"].items():
        assert torch.equal(value, ranks[1]["state_dict"][name]), f"ranks differ in {name}"
        assert torch.equal(value, checkpoint["state_dict"][name]), f"the checkpoint differs from rank 0 in {name}"


def test_ddp_spawn_trains_in_process(tmp_path):
    """trainer=ddp_spawn: two CPU ranks started from inside `train` (as in a notebook)."""
    objects = train(
        compose_fit(
            [*FAST, "trainer=ddp_spawn", "trainer.accelerator=cpu", "trainer.devices=2", "callbacks.sample_grid=null"],
            tmp_path,
        )
    )
    assert objects["trainer"].world_size == 2
    assert (
        read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 4
    )  # the parent's trainer stays at 0
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1


@pytest.mark.parametrize("option, start_method", [("ddp", "popen"), ("ddp_spawn", "spawn")])
def test_ddp_configs_build_on_the_cpu(option, start_method, tmp_path):
    cfg = compose_fit([f"trainer={option}", "trainer.accelerator=cpu", "trainer.devices=2"], tmp_path)
    trainer = build(cfg)["trainer"]
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.strategy._start_method == start_method
    assert trainer.num_devices == 2 and trainer.strategy._ddp_kwargs["find_unused_parameters"] is True
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
