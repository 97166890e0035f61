"""FSDP2 (trainer=fsdp) on two CPU processes (gloo), end to end: sharding, checkpoints gathered or sharded, a kill
and an exact resume, consolidation, LoRA, and the config a cluster launch composes."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from hydra_utils import FAST, compose_fit
from parallel_worker import every_check, optimizer_of
from test_distributed import fit_in_subprocess, subprocess_env
from test_rl_fit import RL

from omnigen.checkpoints.atomic_io import TEMP_SUFFIX, AtomicCheckpointIO
from omnigen.checkpoints.format import CheckpointError
from omnigen.checkpoints.native import load_module, read_checkpoint
from omnigen.checkpoints.sharded import is_sharded_checkpoint
from omnigen.convert import main as convert
from omnigen.fit import build, train
from omnigen.pipeline import OmniGenPipeline
from omnigen.training.distributed import FullyShardedStrategy, transformer_layers

FSDP_ON_CPU = ["trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2"]


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory) -> Path:
    """The issue's command, 4 steps, one gathered file per checkpoint (the default): the uninterrupted run the
    tests below compare with."""
    run = tmp_path_factory.mktemp("fsdp") / "run"
    fit_in_subprocess(
        [*FAST, *FSDP_ON_CPU, "logger=csv", f"hydra.run.dir={run}", "+callbacks.shards._target_=probes.ShardProbe"]
    )
    return run


def test_fsdp2_on_two_cpu_processes_shards_and_writes_one_loadable_file(fsdp_run):
    """`python -m omnigen.fit trainer=fsdp trainer.accelerator=cpu trainer.devices=2`: every transformer parameter
    is split between the two ranks (gloo; bf16 compute, fp32 reduction), the frozen VAE is whole on each; the
    final sample grid samples through the shards; last.ckpt is the one self-describing file that
    OmniGenPipeline.from_checkpoint samples with."""
    run = fsdp_run
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

    # a run resumed from a gathered file under FSDP2: test_sharded_checkpoints_... (from a consolidated one)


SHARDED = [*FSDP_ON_CPU, "trainer.strategy.save_distributed_checkpoint=true"]


def first_image(checkpoint: Path) -> torch.Tensor:
    pipeline = OmniGenPipeline.from_checkpoint(checkpoint)
    return pipeline.generate(["a red circle"], [[]], 32, 32, 2, generator=torch.Generator().manual_seed(0))[0]


def test_sharded_checkpoints_survive_a_kill_resume_exactly_and_consolidate_into_the_one_file(fsdp_run, tmp_path):
    """save_distributed_checkpoint=true: each checkpoint is a directory of per-rank shards (the power EMA's
    average and raw weights included). Both ranks are SIGKILLed mid-run; the same command relaunched with
    ckpt_path=last ends with the uninterrupted run's weights, EMA and optimizer state, bit for bit.
    `convert consolidate` writes the one self-describing file: it samples the same image as the gathered file; a
    consolidated step-1 checkpoint resumes under FSDP2 (a whole file: each rank takes its part) to the same end,
    bit for bit; its optimizer state loads into a single process's optimizer (torch's layout). Another strategy
    refuses the directory by name."""
    run = tmp_path / "run"
    command = [sys.executable, "-m", "omnigen.fit", *FAST, *SHARDED, "callbacks.checkpoint.every_n_train_steps=1"]
    command += ["callbacks.sample_grid=null", "logger=csv", f"hydra.run.dir={run}", "ckpt_path=last"]
    env = {**subprocess_env(), "OMP_NUM_THREADS": "1"}
    last = run / "checkpoints" / "last.ckpt"
    with open(tmp_path / "first.log", "w") as log:  # its own session: the kill reaches rank 1 too
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while not is_sharded_checkpoint(last):
            assert proc.poll() is None, "ended before the kill:\n" + (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    killed_at = torch.load(last / "meta.pt", weights_only=True)["global_step"]
    assert 1 <= killed_at < 4
    relaunch = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert relaunch.returncode == 0, relaunch.stdout[-3000:] + relaunch.stderr[-3000:]
    assert "Restoring states from the checkpoint path" in relaunch.stdout + relaunch.stderr
    assert not list((run / "checkpoints").glob(f".*{TEMP_SUFFIX}")), "a killed save's temporary was left"

    consolidated = tmp_path / "last.ckpt"
    convert(["consolidate", str(last), str(consolidated)])
    straight, again = read_checkpoint(fsdp_run / "checkpoints" / "last.ckpt"), read_checkpoint(consolidated)
    assert again["global_step"] == again["omnigen"]["global_step"] == 4
    for key in ("state_dict", "current_model_state"):
        assert straight[key].keys() == again[key].keys()
        for name, value in straight[key].items():
            assert torch.equal(value, again[key][name]), f"the resumed run's {key} differs in {name}"
    (a,), (b,) = straight["optimizer_states"], again["optimizer_states"]  # torch's layout in both
    assert [g["params"] for g in a["param_groups"]] == [g["params"] for g in b["param_groups"]]
    assert a["state"].keys() == b["state"].keys() and a["state"]
    assert all(torch.equal(a["state"][i][k], b["state"][i][k]) for i in a["state"] for k in a["state"][i])

    image = first_image(fsdp_run / "checkpoints" / "last.ckpt")
    assert torch.equal(first_image(consolidated), image) and torch.equal(first_image(last), image)

    with pytest.raises(CheckpointError, match="sharded checkpoint.*consolidate"):
        train(compose_fit([*FAST, f"ckpt_path={last}"], tmp_path / "single"))

    step_1 = tmp_path / "step_1.ckpt"
    convert(["consolidate", str(run / "checkpoints" / "step_0000001.ckpt"), str(step_1)])
    resumed = tmp_path / "resumed"
    fit_in_subprocess([*FAST, *FSDP_ON_CPU, "logger=csv", "callbacks.sample_grid=null", f"hydra.run.dir={resumed}",
                       f"ckpt_path={step_1}"])  # fmt: skip
    again = read_checkpoint(resumed / "checkpoints" / "last.ckpt")
    for key in ("state_dict", "current_model_state"):
        assert all(torch.equal(value, again[key][name]) for name, value in straight[key].items()), key
    (c,) = again["optimizer_states"]
    assert all(torch.equal(a["state"][i][k], c["state"][i][k]) for i in a["state"] for k in a["state"][i])

    single = load_module(step_1, weights="raw")  # one process: its optimizer takes the state as it is
    optimizer = optimizer_of(single)
    optimizer.load_state_dict(read_checkpoint(step_1)["optimizer_states"][0])
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(optimizer.state) == len(params)  # every parameter's state, each the shape of its parameter
    for p in params:
        assert all(v.shape == p.shape for v in optimizer.state[p].values() if torch.is_tensor(v) and v.dim() > 0)


@pytest.fixture(scope="module")
def parallel_checks(tmp_path_factory) -> Path:
    """The checks of tests/parallel_worker.py, run once in two spawned processes; each leaves `<name>.pt`."""
    out = tmp_path_factory.mktemp("parallel")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.start_processes(every_check, args=(2, port, str(out)), nprocs=2, start_method="spawn")
    return out


@pytest.mark.parametrize("kind", ["fsdp2", "fsdp2-activation-checkpointing", "ddp"])
def test_two_processes_train_like_one_on_the_same_global_batch_with_packed_rows(kind, parallel_checks):
    """Three steps of the tiny model (pack_tokens=1024; AdamW, so that every operation is float32) over two CPU
    processes, each on its half of a global batch of 4, sharded (FSDP2, fp32 compute; with activation checkpointing
    per decoder layer too, which re-gathers each layer in the backward) or replicated (DDP), against one unsharded
    copy training on the whole batch: the global losses agree to relative 1e-5 and the final weights to 1e-5 of the
    distance they moved (float32 reduction order), and the packed path ran with two samples in one row
    (forward_packed, which FSDP2 must gather for like forward)."""
    result = torch.load(parallel_checks / f"{kind}.pt", weights_only=True)
    assert len(result["rows"]) == 3 and 1 in result["rows"], f"no step packed 2 samples to a row: {result['rows']}"
    torch.testing.assert_close(result["losses"], result["reference_losses"], rtol=1e-5, atol=0)
    assert_moved_alike(result, tolerance=1e-5)


def assert_moved_alike(result: dict, tolerance: float, muon_tolerance: float | None = None) -> None:
    """Every weight of the parallel run ends within `tolerance` of the distance the reference's moved (Muon's
    matrices: `muon_tolerance`), and the step moved weights."""
    assert result["weights"].keys() == result["reference_weights"].keys()
    moved = 0
    for name, reference in result["reference_weights"].items():
        distance = (reference - result["initial_weights"][name]).norm()
        error = (result["weights"][name] - reference).norm()
        muon = muon_tolerance is not None and ".llm.layers." in name and reference.dim() == 2
        assert error <= (muon_tolerance if muon else tolerance) * distance, f"{name}: {error:.3g} of {distance:.3g}"
        moved += bool(distance > 0)
    assert moved > 10


def test_muon_on_fsdp2_shards_orthogonalises_each_whole_matrix(parallel_checks):
    """One MuonAdamW step (tiny's optimizer) on the sharded module and on a whole copy, from the same gradients:
    AdamW's parameters agree to float32 rounding; Muon's matrices to the bf16 rounding of its Newton-Schulz
    iteration (within 5 % of the update; orthogonalising each rank's rows alone would be off by about half)."""
    assert_moved_alike(torch.load(parallel_checks / "muon.pt", weights_only=True), tolerance=1e-5, muon_tolerance=0.05)


def test_reward_fine_tunings_weight_swap_reaches_the_shards(parallel_checks):
    """RL runs the sampling policy and the reference by putting their weights in place of the policy's. Under FSDP2
    they must reach the storage each unit all-gathers from: a fixed batch's loss with other weights in place
    equals the whole model's with them (fp32), and the module's own come back exactly."""
    result = torch.load(parallel_checks / "weight_swap.pt", weights_only=True)
    assert abs(result["swapped"] - result["own"]) > 1e-3  # the other weights change the loss
    assert result["sharded_swapped"] == pytest.approx(result["swapped"], rel=1e-5)
    assert result["sharded_own"] == pytest.approx(result["own"], rel=1e-5)


def test_reward_fine_tuning_under_fsdp2_resumes_exactly(fsdp_run, tmp_path):
    """experiment=rl_edit (NFT, a slow-moving sampling policy, a reference penalty, each rollout used twice) sharded
    over two CPU processes: a run resumed from its step-1 checkpoint ends with the uninterrupted run's policy and
    sampling policy, bit for bit."""
    overrides = [*RL, f"model.finetune.init_from={fsdp_run / 'checkpoints' / 'last.ckpt'}", "model.old_decay=0.5"]
    overrides += ["model.updates_per_rollout=2", "model.algorithm.kl_weight=0.1", "trainer.max_steps=2"]
    overrides += ["callbacks.checkpoint.every_n_train_steps=1", "callbacks.sample_grid=null", *FSDP_ON_CPU]
    overrides += ["callbacks.reward_guard=null", "callbacks.rollout_grid=null"]  # their own sampling: not the point
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    fit_in_subprocess([*overrides, f"hydra.run.dir={straight}"])
    fit_in_subprocess(
        [*overrides, f"hydra.run.dir={resumed}", f"ckpt_path={straight / 'checkpoints' / 'step_0000001.ckpt'}"]
    )
    a, b = (read_checkpoint(run / "checkpoints" / "last.ckpt") for run in (straight, resumed))
    assert a["global_step"] == b["global_step"] == 2
    assert all(torch.equal(value, b["state_dict"][name]) for name, value in a["state_dict"].items())
    old, old_again = a["reward_finetune"]["old"], b["reward_finetune"]["old"]
    assert old.keys() == old_again.keys() and all(torch.equal(v, old_again[n]) for n, v in old.items())
    assert not all(torch.equal(v, a["state_dict"][f"transformer.{n}"]) for n, v in old.items())  # it lags


def test_lora_under_fsdp2_trains_the_adapters_alone_and_like_one_process(parallel_checks):
    """model/finetune=lora sharded over two CPU processes (three AdamW steps on halves of a global batch): every
    adapter moves (lora_B starts at zero), the weights they adapt and everything frozen stay as they were, and the
    result is the single process's on the whole batch, as above."""
    result = torch.load(parallel_checks / "fsdp2-lora.pt", weights_only=True)
    weights, initial = result["weights"], result["initial_weights"]
    adapters = [name for name in weights if "lora_" in name]
    assert adapters and all(not torch.equal(weights[n], initial[n]) for n in adapters if "lora_B" in n)
    frozen = [name for name in weights if "lora_" not in name]
    assert any(".base_layer." in name for name in frozen)
    assert all(torch.equal(weights[n], initial[n]) for n in frozen), "a frozen weight moved"
    torch.testing.assert_close(result["losses"], result["reference_losses"], rtol=1e-5, atol=0)
    assert_moved_alike(result, tolerance=1e-5)


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
