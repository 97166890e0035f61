"""Distributed training from config: 2-process DDP and FSDP2 on the CPU (gloo), end to end."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from hydra_utils import FAST, compose_fit
from lightning.pytorch.strategies import DDPStrategy

from omnigen.checkpoints.atomic_io import AtomicCheckpointIO
from omnigen.checkpoints.native import read_checkpoint
from omnigen.fit import build, train
from omnigen.pipeline import OmniGenPipeline
from omnigen.training.distributed import FullyShardedStrategy, transformer_layers

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


FSDP_ON_CPU = ["trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2"]


def test_fsdp2_on_two_cpu_processes_shards_writes_one_loadable_file_and_resumes_exactly(tmp_path):
    """`python -m omnigen.fit trainer=fsdp trainer.accelerator=cpu trainer.devices=2`: every transformer parameter
    is split between the two ranks (gloo; bf16 compute, fp32 reduction), the frozen VAE is whole on each; the
    final sample grid samples through the shards; last.ckpt is the one self-describing file that
    OmniGenPipeline.from_checkpoint samples with; and a run resumed from the step-2 checkpoint ends with the same
    raw and averaged (power EMA) weights as the uninterrupted one."""
    run = tmp_path / "run"
    fit_in_subprocess([*FAST, *FSDP_ON_CPU, f"hydra.run.dir={run}", "+callbacks.shards._target_=probes.ShardProbe"])
    shards = [torch.load(run / f"shards_{rank}.pt", weights_only=True) for rank in (0, 1)]
    for name, (full, local) in shards[0].items():
        if name.startswith("transformer."):
            assert local + shards[1][name][1] == full and local < full, f"{name} is not sharded: {full}, {local}"
        else:
            assert name.startswith("vae.") and local == full, f"{name}: {full}, {local}"
    assert (run / "samples" / "step_0000004.png").is_file()
    last = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 4 and last["omnigen"]["global_step"] == 4
    pipeline = OmniGenPipeline.from_checkpoint(run / "checkpoints" / "last.ckpt")
    for name, value in pipeline.module.state_dict().items():  # the averaged weights, whole
        assert torch.equal(value, last["state_dict"][name].to(value.dtype)), name
    image = pipeline.generate(["a red circle"], [[]], 32, 32, 2, generator=torch.Generator().manual_seed(0))[0]
    assert image.shape == (3, 32, 32) and torch.isfinite(image).all()

    resumed = tmp_path / "resumed"
    fit_in_subprocess(
        [*FAST, *FSDP_ON_CPU, f"hydra.run.dir={resumed}", f"ckpt_path={run / 'checkpoints' / 'step_0000002.ckpt'}"]
    )
    again = read_checkpoint(resumed / "checkpoints" / "last.ckpt")
    for key in ("state_dict", "current_model_state"):
        assert last[key].keys() == again[key].keys()
        for name, value in last[key].items():
            assert torch.equal(value, again[key][name]), f"the resumed run's {key} differs in {name}"


def test_lora_under_fsdp2_trains_the_adapters_alone(tmp_path):
    """model/finetune=lora from a trained checkpoint, sharded over two CPU processes: the adapters move (lora_B
    starts at zero) and the weights they adapt do not."""
    base = tmp_path / "base"
    fit_in_subprocess([*FAST, "trainer.max_steps=2", f"hydra.run.dir={base}", "callbacks.sample_grid=null"])
    start = read_checkpoint(base / "checkpoints" / "last.ckpt")["state_dict"]
    lora = tmp_path / "lora"
    init = f"model.finetune.init_from={base / 'checkpoints' / 'last.ckpt'}"
    fit_in_subprocess([*FAST, *FSDP_ON_CPU, f"hydra.run.dir={lora}", "model/finetune=lora", init])
    adapted = read_checkpoint(lora / "checkpoints" / "last.ckpt")["current_model_state"]
    moved = [name for name, value in adapted.items() if "lora_B" in name and value.abs().sum() > 0]
    assert len(moved) == len([name for name in adapted if "lora_B" in name]) > 0
    wrapped = [name for name in adapted if ".base_layer." in name]
    assert wrapped and all(torch.equal(adapted[n], start[n.replace(".base_layer.", ".")]) for n in wrapped)


@pytest.mark.parametrize("nodes", [1, 2])
def test_the_fsdp_config_is_fsdp2_with_bf16_compute_and_fp32_reduction(nodes, tmp_path):
    cfg = compose_fit([*FSDP_ON_CPU, f"trainer.num_nodes={nodes}"], tmp_path)
    trainer = build(cfg)["trainer"]
    strategy = trainer.strategy
    assert isinstance(strategy, FullyShardedStrategy) and strategy.reshard_after_forward is True
    assert strategy._save_distributed_checkpoint is False  # one gathered, self-describing file
    policy = strategy.mixed_precision
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.bfloat16, torch.float32)
    assert trainer.precision == "32-true"  # the optimizer updates fp32 shards
    assert isinstance(strategy.checkpoint_io, AtomicCheckpointIO)
    assert (trainer.num_nodes, trainer.num_devices, strategy.world_size) == (nodes, 2, 2 * nodes)


def test_the_layers_to_shard_follow_the_backbone(tmp_path):
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
    assert [type(m).__name__ for m in transformer_layers(instantiate(cfg.model, _convert_="all"))] == [
        "Phi3DecoderLayer"
    ] * cfg.model.backbone.config.num_hidden_layers
    cfg.model.backbone.config = backbone
    module = instantiate(cfg.model, _convert_="all")
    assert [type(m).__name__ for m in transformer_layers(module)] == ["LlamaDecoderLayer"] * 3
