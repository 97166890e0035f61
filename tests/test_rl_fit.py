"""The reward fine-tuning stage end to end (omnigen.rl.module through `python -m omnigen.fit experiment=rl_edit`):
exact resume after a kill, the on-policy ratio of Flow-GRPO inside a fit, LoRA's reference, the guard's stop,
and what it logs and draws."""

import csv
import signal
import subprocess
import sys
import time

import pytest
import torch
from hydra_utils import FAST, RL_FAST, compose_fit
from peft.tuners.tuners_utils import BaseTunerLayer

from omnigen.callbacks.reward_guard import RewardGuard
from omnigen.checkpoints.native import load_module
from omnigen.fit import build, train
from omnigen.module import OmniGenLitModule
from omnigen.rl.module import RolloutPolicies

# Rewards that vary within a group even for a barely trained model: the edits' unchanged-region score.
RL = [
    "experiment=rl_edit",
    *FAST,
    "logger=csv",
    "data.batch_size=2",
    *RL_FAST,
    "model.reward.terms.mixed_modal=[{weight: 1.0, product: [unchanged_score]}]",
    "data.families={text_to_image: 0.0, mixed_modal: 1.0}",
    "callbacks.reward_guard.every_n_steps=2",
    "callbacks.rollout_grid.every_n_steps=2",
]


def metrics_rows(run):
    with open(run / "csv" / "version_0" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_an_rl_fit_resumes_exactly_after_a_kill(tmp_path, fitted_checkpoint):
    """NFT with a slow-moving sampling policy, a reference penalty and each rollout used for two updates: the
    kill lands after step 1, whose rollout the resumed run must take from the checkpoint, not redraw."""
    overrides = RL + [
        f"model.finetune.init_from={fitted_checkpoint}",
        "model.old_decay=0.5",
        "model.updates_per_rollout=2",
        "model.algorithm.kl_weight=0.1",
        "callbacks.checkpoint.every_n_train_steps=1",
        "callbacks.sample_grid=null",
    ]
    straight = train(compose_fit(overrides + ["trainer.max_steps=3"], tmp_path / "straight"))["module"]

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "omnigen.fit", *overrides, "trainer.max_steps=100", f"hydra.run.dir={killed}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (killed / "checkpoints" / "step_0000002.ckpt").exists():  # step 1's file is whole by then
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the RL fit wrote no step-2 checkpoint in 300 s"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()

    ckpt = killed / "checkpoints" / "step_0000001.ckpt"
    resumed = train(compose_fit(overrides + ["trainer.max_steps=3", f"ckpt_path={ckpt}"], tmp_path / "resumed"))
    assert {int(r["step"]) for r in metrics_rows(tmp_path / "resumed") if r.get("train/loss")} == {1, 2}
    module = resumed["module"]
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(module.state_dict()[name], value, atol=0, rtol=0, msg=name)
    for name, value in straight.old.items():  # the sampling policy too
        torch.testing.assert_close(module.old[name], value, atol=0, rtol=0, msg=name)
    # the checkpoint is a plain model's: evaluate and the pipeline load it without the stage
    assert type(load_module(tmp_path / "resumed" / "checkpoints" / "last.ckpt")) is OmniGenLitModule


def test_grpo_is_exactly_on_policy_at_each_rollouts_first_update_and_clips_after(tmp_path, fitted_checkpoint):
    run = tmp_path / "grpo"
    train(
        compose_fit(
            RL
            + [
                "rl/algorithm=grpo",
                "trainer.max_steps=3",
                f"model.finetune.init_from={fitted_checkpoint}",
                "model.updates_per_rollout=2",
                "model.old_decay=0",  # on policy, as Flow-GRPO: the ratio is against the sampling policy
                "model.algorithm.timestep_fraction=1.0",
                "model.sampling.guidance_scale=2.0",  # the replayed forward is the guided one
                "model.sampling.img_guidance_scale=1.5",
                "callbacks.sample_grid=null",
            ],
            run,
        )
    )
    rows = {int(r["step"]): r for r in metrics_rows(run) if r.get("rl/ratio_deviation")}
    assert float(rows[0]["rl/ratio_deviation"]) == 0.0 and float(rows[2]["rl/ratio_deviation"]) == 0.0  # fresh rollouts
    assert float(rows[1]["rl/ratio_deviation"]) > 0 and float(rows[1]["rl/clipped"]) > 0  # one update later
    assert all(float(rows[s]["rl/kl"]) >= 0 for s in rows)


def test_what_an_rl_fit_logs_and_draws(tmp_path):
    objects = train(compose_fit(RL, tmp_path))
    names = set().union(*(r.keys() for r in metrics_rows(tmp_path) if any(r.values())))
    for name in (
        "rl/reward",
        "rl/reward_spread",
        "rl/flat_groups",
        "rl/reward/mixed_modal/edit/recolour",
        "rl/time_sampling",
        "rl/time_reward",
        "rl/time_update",
        "guard/heldout_reward",
        "guard/train_reward",
        "guard/gap",
        "guard/unpaid/mixed_modal/target_exact_scene",  # not paid by this run's reward
    ):
        assert name in names, name
    assert "guard/unpaid/mixed_modal/unchanged_score" not in names  # paid
    grid = next(c for c in objects["callbacks"] if type(c).__name__ == "RolloutGridCallback")
    assert [p.name for p in grid.saved] == ["step_0000002.png", "step_0000004.png"]
    table = grid.saved[-1].with_suffix(".json").read_text()
    assert '"rewards"' in table and "instruction" in table


def test_the_guard_stops_a_run_whose_heldout_reward_falls_behind(tmp_path):
    objects = build(
        compose_fit(RL + ["callbacks.reward_guard.every_n_steps=1", "callbacks.reward_guard.action=stop"], tmp_path)
    )
    guard = next(c for c in objects["callbacks"] if isinstance(c, RewardGuard))
    # a start whose held-out reward no sample can reach (1.0): at the first check the gap is about 1
    guard.load_state_dict({"start": {"heldout": 1.0, "train": None, "unpaid": {}}, "train_rewards": []})
    objects["trainer"].fit(objects["module"], datamodule=objects["datamodule"])
    assert objects["trainer"].global_step == 1
    assert len(guard.warnings) == 1 and "held-out reward" in guard.warnings[0]


def test_lora_reference_is_the_model_with_its_adapters_switched_off(tmp_path, fitted_checkpoint):
    objects = train(
        compose_fit(
            RL
            + [
                "model/finetune=lora",
                f"model.finetune.init_from={fitted_checkpoint}",
                "model.finetune.trainable=[final_layer.*]",
                "model.algorithm.kl_weight=1.0",
                "model.optimizer.lr=1e-2",
                "callbacks.sample_grid=null",
            ],
            tmp_path,
        )
    )
    module = objects["module"].float()
    assert set(module.reference) == {n for n, p in module.transformer.named_parameters() if p.requires_grad}
    adapters = [m for m in module.transformer.modules() if isinstance(m, BaseTunerLayer)]
    x, t = torch.randn(1, 3, 32, 32), torch.full((1,), 0.5)
    policies = RolloutPolicies(module, module.rollout)
    x = x.expand(len(module.rollout.samples), -1, -1, -1)
    t = t.expand(len(module.rollout.samples))
    with torch.no_grad():
        trained, reference = policies.conditional(x, t), policies.conditional(x, t, "reference")
        for layer in adapters:
            layer.enable_adapters(False)
        with module.use_weights("reference"):  # final_layer back at its start; adapters off by peft
            off = policies.conditional(x, t)
    assert not torch.equal(trained, reference)  # the adapters have moved
    torch.testing.assert_close(reference, off)


def test_grpo_without_a_noise_level_is_refused_in_one_line(tmp_path):
    with pytest.raises(Exception, match="grpo needs the SDE's log-probabilities"):
        build(compose_fit(RL + ["rl/algorithm=grpo", "model.algorithm.noise_level=0"], tmp_path))


def test_resuming_rl_from_a_supervised_checkpoint_is_refused_in_one_line(tmp_path, fitted_checkpoint):
    result = subprocess.run(
        [sys.executable, "-m", "omnigen.fit", *RL, f"ckpt_path={fitted_checkpoint}", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not written by reward fine-tuning" in result.stderr and "init_from" in result.stderr


def test_the_docs_command_for_a_real_checkpoint_with_a_learned_reward_composes(tmp_path):
    cfg = compose_fit(
        [
            "experiment=rl_edit",
            "model=omnigen_v1",
            "~model.optimizer.muon_lr",
            "model/finetune=lora",
            "rl/reward=clip",
            "model.reward.path=/models/clip",
            "callbacks.reward_guard.families=[text_to_image]",
        ],
        tmp_path,
    )
    assert cfg.model._target_ == "omnigen.rl.module.RewardFineTuneModule" and cfg.model.finetune.mode == "lora"
    assert cfg.model.reward._target_ == "omnigen.rl.learned.ClipReward" and "muon_lr" not in cfg.model.optimizer


def test_an_rl_runs_seen_instructions_include_those_its_start_trained_on(tmp_path, fitted_checkpoint):
    from omnigen.checkpoints.format import read_checkpoint
    from omnigen.data.modules.shapes import StreamUnknown, trained_instructions
    from omnigen.evaluation import started_from_instructions

    meta = read_checkpoint(fitted_checkpoint)["omnigen"]
    start = trained_instructions(meta["run_config"], meta["global_step"])
    assert len(start) > 1
    assert started_from_instructions({"model": {"finetune": {"init_from": str(fitted_checkpoint)}}}) == start
    release = tmp_path / "release"
    release.mkdir()
    assert started_from_instructions({"model": {"finetune": {"init_from": str(release)}}}) == set()
    with pytest.raises(StreamUnknown, match="not here"):
        started_from_instructions({"model": {"finetune": {"init_from": str(tmp_path / "gone.ckpt")}}})
