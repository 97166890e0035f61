"""An EMA of the weights whose horizon grows with the run: the power-function EMA of EDM2.

Lightning's `EMAWeightAveraging` uses one fixed decay, so its horizon is a number of steps: 0.999 still
holds 37 % of the initial weights after 1000 steps (the quickstart) and fits only long runs. Here the
decay at the n-th update is (1 - 1/n)^(gamma + 1) (Karras et al. 2024, "Analyzing and Improving the
Training Dynamics of Diffusion Models"), so the average always covers the same fraction of the run:
its mean age is about n / (gamma + 2) steps, at any length. gamma 7 is their sigma_rel ~0.1.
"""

from functools import partial

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.strategies import FSDPStrategy


def power_ema(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor, gamma: float) -> torch.Tensor:
    # num_averaged counts the updates before this one (>= 1: AveragedModel copies on the first)
    decay = (1.0 - 1.0 / (num_averaged + 1.0)) ** (gamma + 1.0)
    return averaged + (current - averaged) * (1.0 - decay)


class PowerEMAWeightAveraging(WeightAveraging):
    """EMA with decay (1 - 1/n)^(gamma + 1) after every optimiser step; checkpoints and resumes as Lightning's."""

    def __init__(self, gamma: float = 7.0, **kwargs: object) -> None:
        if gamma <= 0:
            raise ValueError(f"PowerEMAWeightAveraging: gamma must be > 0, got {gamma}")
        super().__init__(avg_fn=partial(power_ema, gamma=gamma), **kwargs)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # the average is a full, unsharded copy updated from the module's own parameters: under FSDP
        # those are shards, so it would average the wrong tensors
        if isinstance(trainer.strategy, FSDPStrategy):
            raise ValueError(
                "callbacks.ema (an EMA of the full weights) does not support trainer=fsdp: "
                "add callbacks=no_ema to train without it"
            )
        super().setup(trainer, pl_module, stage)
