"""Weight averaging that also runs sharded (trainer=fsdp), and the power-function EMA of EDM2.

Lightning's `EMAWeightAveraging` uses one fixed decay, so its horizon is a number of steps: 0.999 still
holds 37 % of the initial weights after 1000 steps (the quickstart) and fits only long runs. Here the
decay at the n-th update is (1 - 1/n)^(gamma + 1) (Karras et al. 2024, "Analyzing and Improving the
Training Dynamics of Diffusion Models"), so the average always covers the same fraction of the run:
its mean age is about n / (gamma + 2) steps, at any length. gamma 7 is their sigma_rel ~0.1.

Under FSDP2 each rank averages its own shard: the average is a copy of the module made before the module is
sharded (a sharded module cannot be copied) and sharded the same way, so every update is local to the rank
and costs no communication. A checkpoint gathers it whole, as it does the module, or keeps each rank's shards
beside the module's in a sharded checkpoint (save_distributed_checkpoint=true).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EMAWeightAveraging, WeightAveraging
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict
from torch.optim.swa_utils import AveragedModel

from omnigen.checkpoints.sharded import holds_shards
from omnigen.training.distributed import FullyShardedStrategy


def power_ema(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor, gamma: float) -> torch.Tensor:
    # num_averaged counts the updates before this one (>= 1: AveragedModel copies on the first)
    decay = (1.0 - 1.0 / (num_averaged + 1.0)) ** (gamma + 1.0)
    return averaged + (current - averaged) * (1.0 - decay)


class ShardableWeightAveraging(WeightAveraging):
    """Lightning's WeightAveraging, sharded like the module under `FullyShardedStrategy`."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        # Lightning's setup would call configure_model first, which shards under FSDP2 and is a no-op otherwise
        sharded = isinstance(trainer.strategy, FullyShardedStrategy)
        device = self._device or (trainer.strategy.root_device if sharded else pl_module.device)
        self._average_model = AveragedModel(pl_module, device=device, use_buffers=self._use_buffers, **self._kwargs)
        if sharded:
            self._average_model.module.shard(trainer.strategy)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if not isinstance(trainer.strategy, FullyShardedStrategy) or self._average_model is None:
            return super().on_save_checkpoint(trainer, pl_module, checkpoint)
        # as Lightning's, with the average as the module's own state dict: gathered whole (a collective: every
        # rank saves), or each rank's shards for a sharded checkpoint
        options = StateDictOptions(full_state_dict=not trainer.strategy._save_distributed_checkpoint, cpu_offload=True)
        checkpoint["current_model_state"] = checkpoint["state_dict"]
        checkpoint["state_dict"] = get_model_state_dict(self._average_model.module, options=options)
        checkpoint["averaging_state"] = {"n_averaged": self._average_model.n_averaged.detach().cpu()}

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if not isinstance(trainer.strategy, FullyShardedStrategy) or self._average_model is None:
            return super().on_load_checkpoint(trainer, pl_module, checkpoint)
        if "current_model_state" not in checkpoint:
            raise ValueError(
                "this checkpoint holds no weight average (it was not trained with callbacks.ema): resume it with "
                "callbacks=no_ema"
            )
        # The strategy has loaded the checkpoint's state_dict, the average, into the module: swapped, it becomes
        # the average's, and the module then gets its own weights back.
        self._swap_models(pl_module)
        raw = checkpoint["current_model_state"]  # whole from a file, this rank's shards from a sharded checkpoint
        set_model_state_dict(pl_module, raw, options=StateDictOptions(full_state_dict=not holds_shards(raw)))
        self._average_model.n_averaged.copy_(checkpoint["averaging_state"]["n_averaged"])


class PowerEMAWeightAveraging(ShardableWeightAveraging):
    """EMA with decay (1 - 1/n)^(gamma + 1) after every optimiser step; checkpoints and resumes as Lightning's."""

    def __init__(self, gamma: float = 7.0, **kwargs: object) -> None:
        if gamma <= 0:
            raise ValueError(f"PowerEMAWeightAveraging: gamma must be > 0, got {gamma}")
        super().__init__(avg_fn=partial(power_ema, gamma=gamma), **kwargs)


class FixedEMAWeightAveraging(ShardableWeightAveraging, EMAWeightAveraging):
    """Lightning's EMAWeightAveraging (one fixed decay), sharded like the module under trainer=fsdp."""
