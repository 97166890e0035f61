"""RewardFineTuneModule: reward fine-tuning as a LightningModule, so it has every fit's checkpoints, loggers,
resume and W&B (`python -m omnigen.fit experiment=rl_edit model.finetune.init_from=<checkpoint>`).

One optimizer step is one iteration: every `updates_per_rollout` steps the sampling policy draws G samples
of each prompt of the DataModule's batch (omnigen.rl.rollout) and the reward scores them; every step the
algorithm (omnigen.rl.algorithms: nft, grpo) turns the latest rollout into a loss.

Three sets of weights, all of what trains (the rest is shared):
  * the policy: the module's own parameters;
  * the sampling policy ("old"): the policy itself (old_decay = 0, on policy), or a slow-moving average of
    it, old ← d·old + (1 − d)·policy after every step (DiffusionNFT's);
  * the reference the penalty holds the policy to: the weights it started from. With LoRA these are the
    adapters at their start (fresh adapters add nothing: the adapters switched off); with a full
    fine-tune, a frozen copy.
Checkpoints describe the plain model (omnigen.module.OmniGenLitModule), so `evaluate`, the pipeline and
export load them as any other; the sampling policy and the current rollout travel in the checkpoint too,
so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor, distribute_tensor

from omnigen.flow.sampler import VelocityFn
from omnigen.module import OmniGenLitModule
from omnigen.pipeline import OmniGenPipeline
from omnigen.rl.algorithms import Algorithm
from omnigen.rl.rollout import Rollout, Sampling, reward_summary, roll_out
from omnigen.utils.cli import UserError

RL_ARGUMENTS = ("algorithm", "reward", "group_size", "sampling", "old_decay", "updates_per_rollout")
STATE_KEY = "reward_finetune"  # the checkpoint's entry for the sampling policy and the current rollout


class RewardFineTuneModule(OmniGenLitModule):
    def __init__(
        self,
        *args: Any,
        algorithm: Algorithm,
        reward: Any,
        group_size: int = 8,
        sampling: Sampling | None = None,
        old_decay: float = 0.0,
        updates_per_rollout: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.sampling = sampling or Sampling()
        if group_size < 2:
            raise ValueError(f"group_size must be >= 2 (advantages are relative to the group), got {group_size}")
        if not 0 <= old_decay < 1 or updates_per_rollout < 1:
            raise ValueError(
                f"need 0 <= old_decay < 1 and updates_per_rollout >= 1, got {old_decay}, {updates_per_rollout}"
            )
        algorithm.check(self.sampling)
        self.algorithm, self.reward, self.group_size = algorithm, reward, group_size
        self.old_decay, self.updates_per_rollout = old_decay, updates_per_rollout
        # Plain dicts, not submodules: the state dict (and every checkpoint's weights) stays the plain model's.
        self.reference = self.snapshot() if algorithm.kl_weight > 0 else None
        self.old = self.snapshot() if old_decay > 0 else None
        self.rollout: Rollout | None = None
        self.update_started = self.update_seconds = 0.0

    def snapshot(self) -> dict[str, Tensor]:
        return {name: p.detach().clone() for name, p in self.transformer.named_parameters() if p.requires_grad}

    @contextmanager
    def use_weights(self, which: str | None) -> Iterator[None]:
        """Run the transformer with the "old" or "reference" weights in place of what trains (None: as it is);
        the policy's own are back before any backward."""
        weights = {"old": self.old, "reference": self.reference, None: None}[which]
        if weights is None:
            yield
            return
        with weights_in_place(self.transformer, weights):
            yield

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.reference, self.old = self.placed(self.reference), self.placed(self.old)

    def placed(self, weights: dict[str, Tensor] | None) -> dict[str, Tensor] | None:
        """`weights` on the module's device and, under FSDP2 (after configure_model), sharded like the parameters."""
        if weights is None:
            return None
        params = dict(self.transformer.named_parameters())
        return {name: like(value.to(self.device), params[name]) for name, value in weights.items()}

    # ---- one iteration --------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        g = self.step_generator(batch_idx)
        if self.rollout is None or self.global_step % self.updates_per_rollout == 0:
            with self.use_weights("old"):
                self.rollout = roll_out(
                    OmniGenPipeline(self),
                    batch,
                    self.group_size,
                    self.sampling,
                    self.reward,
                    g,
                    self.algorithm.noise_level,
                    use_kv_cache=not self.algorithm.exact_replay,
                )
            self.log_dict(
                reward_summary(self.rollout) | {f"rl/time_{k}": v for k, v in self.rollout.seconds.items()},
                batch_size=len(self.rollout.samples),
            )
        self.update_started = time.perf_counter()
        loss, logs = self.algorithm.loss(RolloutPolicies(self, self.rollout), self.rollout, self.sampling, g)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite reward fine-tuning loss {loss.item()} at step {self.global_step}")
        self.log("train/loss", loss, prog_bar=True, batch_size=len(self.rollout.samples))
        self.log_dict(logs, batch_size=len(self.rollout.samples))
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The step, then the sampling policy's average: here, not in on_train_batch_end, so the step's
        checkpoint (written by a callback before that hook) holds the average of the weights it holds."""
        super().optimizer_step(*args, **kwargs)
        if self.old is not None:
            with torch.no_grad():
                for name, p in self.transformer.named_parameters():
                    if name in self.old:
                        self.old[name].lerp_(p.detach(), 1 - self.old_decay)
        self.update_seconds = time.perf_counter() - self.update_started

    def on_train_batch_end(self, *args: Any) -> None:
        self.log("rl/time_update", self.update_seconds)  # the loss, backward and step of the iteration

    # ---- checkpoints ----------------------------------------------------------------------
    def architecture_config(self) -> dict[str, Any]:
        """The plain model's: what loads a reward fine-tuned checkpoint needs nothing of the stage."""
        config = {k: v for k, v in super().architecture_config().items() if k not in RL_ARGUMENTS}
        return config | {"_target_": f"{OmniGenLitModule.__module__}.{OmniGenLitModule.__name__}"}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        reused = self.rollout is not None and self.updates_per_rollout > 1  # else the next step draws a new one
        old = {name: whole(value) for name, value in self.old.items()} if self.old is not None else None
        rollout = self.rollout.state() if reused else None
        # every rank rolls out its own prompts, and rank 0 writes the checkpoint: it keeps them all (a collective)
        rollouts = [rollout]
        if self.trainer.world_size > 1:
            rollouts = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(rollouts, rollout)
        checkpoint[STATE_KEY] = {"old": old, "rollouts": rollouts}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(STATE_KEY)
        if state is None:
            raise UserError(
                "this checkpoint was not written by reward fine-tuning, so it cannot resume it: start from it "
                "with model.finetune.init_from=<checkpoint> instead of ckpt_path"
            )
        if (state["old"] is None) != (self.old is None):
            raise UserError(
                "the checkpoint's model.old_decay and this run's disagree: one has a sampling policy, one not"
            )
        self.old = self.placed(state["old"])  # the strategy has set the module up (and sharded it) by now
        rollouts = state["rollouts"] if "rollouts" in state else [state["rollout"]]  # one process's, before
        if any(r is not None for r in rollouts) and len(rollouts) != self.trainer.world_size:
            raise UserError(
                f"this checkpoint holds the rollouts of {len(rollouts)} process(es), which its next step trains on: "
                f"resume it on {len(rollouts)}, not {self.trainer.world_size} (or from a checkpoint of a step that "
                "draws a new rollout)"
            )
        rollout = rollouts[self.global_rank] if any(r is not None for r in rollouts) else None
        self.rollout = Rollout.from_state(rollout) if rollout is not None else None


@contextmanager
def weights_in_place(module: nn.Module, weights: dict[str, Tensor]) -> Iterator[None]:
    """Run `module` with `weights` (by parameter name) in place of its own. Unsharded, the tensors are swapped
    (nothing copied). Under FSDP2 a parameter is a view into the storage its unit all-gathers from, so a swapped
    tensor would never be gathered: the values are copied in, and the module's own copied back after."""
    params = dict(module.named_parameters())
    if not any(isinstance(params[name], DTensor) for name in weights):
        own = {name: params[name].data for name in weights}
        try:
            for name, value in weights.items():
                params[name].data = value
            yield
        finally:
            for name, value in own.items():
                params[name].data = value
        return
    with torch.no_grad():
        own = {name: params[name].detach().clone() for name in weights}
        for name, value in weights.items():
            params[name].copy_(value)
    try:
        yield
    finally:
        with torch.no_grad():
            for name, value in own.items():
                params[name].copy_(value)


def like(value: Tensor, param: Tensor) -> Tensor:
    """`value`, a whole tensor, sharded as `param` is (as it is when `param` is not a DTensor)."""
    if isinstance(param, DTensor) and not isinstance(value, DTensor):
        return distribute_tensor(value, param.device_mesh, param.placements)
    return value


def whole(value: Tensor) -> Tensor:
    """A DTensor gathered whole on the CPU (a collective), any other tensor as it is."""
    return value.full_tensor().cpu() if isinstance(value, DTensor) else value


class RolloutPolicies:
    """The velocities of a rollout's prompts (omnigen.rl.algorithms.Policies), without the kv-cache: the
    forward training differentiates is the one the rollout was drawn with (exact_replay)."""

    def __init__(self, module: RewardFineTuneModule, rollout: Rollout) -> None:
        self.module, self.rollout, self.pipe = module, rollout, OmniGenPipeline(module)
        self.has_old = module.old is not None
        self.velocities: dict[bool, VelocityFn] = {}  # guided or not, built on first use (GRPO replays guided)

    def velocity(self, guided: bool) -> VelocityFn:
        if guided not in self.velocities:
            sampling = self.module.sampling
            scales = (sampling.guidance_scale, sampling.img_guidance_scale) if guided else (1.0, 1.0)
            self.velocities[guided] = self.pipe.conditioned(
                self.rollout.instructions, self.rollout.inputs, self.rollout.latents, *scales, use_kv_cache=False
            )
        return self.velocities[guided]

    def conditional(self, x: Tensor, t: Tensor, weights: str | None = None) -> Tensor:
        with self.module.use_weights(weights):
            return self.velocity(guided=False)(x, t)

    def sampled(self, x: Tensor, t: Tensor, weights: str | None = None) -> Tensor:
        with self.module.use_weights(weights):
            return self.velocity(guided=True)(x, t)

    def timesteps(self, n: int, generator: torch.Generator) -> Tensor:
        return self.module.timesteps.sample(n, device=self.module.device, generator=generator)
