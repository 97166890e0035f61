"""Distributed training from config: 2-process DDP on the CPU (gloo) end to end, FSDP built from config."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from hydra_utils import FAST, compose_fit
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    CheckpointWrapper,
    apply_activation_checkpointing,
)

from omnigen.callbacks.ema import PowerEMAWeightAveraging
from omnigen.checkpoints.atomic_io import AtomicCheckpointIO
from omnigen.checkpoints.native import read_checkpoint
from omnigen.fit import build, train
from omnigen.training.distributed import DecoderLayerPolicy, transformer_layer_classes

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
    result = subprocess.run(
        [sys.executable, "-m", "omnigen.fit", *overrides],
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
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


def pretend_one_cuda_device(monkeypatch) -> None:
    """Lightning refuses FSDP without a GPU; this machine has none, so say it has one (nothing runs on it)."""
    monkeypatch.setattr(CUDAAccelerator, "is_available", staticmethod(lambda: True))
    monkeypatch.setattr(CUDAAccelerator, "auto_device_count", staticmethod(lambda: 1))
    monkeypatch.setattr(CUDAAccelerator, "parse_devices", staticmethod(lambda devices: [0]))
    monkeypatch.setattr(
        CUDAAccelerator, "get_parallel_devices", staticmethod(lambda devices: [torch.device("cuda", 0)])
    )


def test_fsdp_config_builds_a_trainer_that_shards_by_decoder_layer(monkeypatch, tmp_path):
    pretend_one_cuda_device(monkeypatch)
    cfg = compose_fit(["trainer=fsdp"], tmp_path)
    objects = build(cfg)
    strategy = objects["trainer"].strategy
    assert isinstance(strategy, FSDPStrategy) and strategy._state_dict_type == "full"
    assert isinstance(strategy.checkpoint_io, AtomicCheckpointIO)  # full state dicts go through the plugin: atomic
    assert strategy.precision_plugin.precision == "bf16-mixed"
    mp = strategy.mixed_precision_config
    assert (mp.param_dtype, mp.reduce_dtype, mp.buffer_dtype) == (torch.bfloat16, torch.float32, torch.float32)
    assert strategy.kwargs["use_orig_params"] is True
    policy = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(policy, DecoderLayerPolicy)
    # the default EMA averages full weights: under FSDP it refuses and says how to train without it
    ema = next(c for c in objects["trainer"].callbacks if isinstance(c, PowerEMAWeightAveraging))
    with pytest.raises(ValueError, match="callbacks=no_ema"):
        ema.setup(objects["trainer"], objects["module"], "fit")

    # FSDP itself needs an accelerator; activation checkpointing walks the tree with the same
    # (module, recurse, nonwrapped_numel) policy protocol and runs on the CPU.
    module = objects["module"]
    layers = transformer_layer_classes(module)
    assert {c.__name__ for c in layers} == {"Phi3DecoderLayer"}
    apply_activation_checkpointing(module, auto_wrap_policy=policy)
    wrapped = [
        type(m._checkpoint_wrapped_module).__name__ for m in module.modules() if isinstance(m, CheckpointWrapper)
    ]
    assert wrapped == ["Phi3DecoderLayer"] * cfg.model.backbone.config.num_hidden_layers


def test_the_wrap_policy_follows_the_backbone(tmp_path):
    """Another HF architecture: its own layer class, with no change to trainer/fsdp.yaml."""
    backbone = {
        "model_type": "llama",
        "vocab_size": 128,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "pad_token_id": 0,
        "max_position_embeddings": 512,
    }
    cfg = compose_fit([], tmp_path)
    cfg.model.backbone.config = backbone
    module = instantiate(cfg.model, _convert_="all")
    policy = DecoderLayerPolicy()
    apply_activation_checkpointing(module, auto_wrap_policy=policy)
    wrapped = [
        type(m._checkpoint_wrapped_module).__name__ for m in module.modules() if isinstance(m, CheckpointWrapper)
    ]
    assert wrapped == ["LlamaDecoderLayer"] * 3 and policy.class_names == {"LlamaDecoderLayer"}
