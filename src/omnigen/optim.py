"""Learning-rate schedules, built per optimiser (`_partial_` in config)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

if TYPE_CHECKING:
    from omnigen.curriculum import Curriculum


def warmup_cosine(optimizer: Optimizer, warmup_steps: int = 0, total_steps: int | None = None,
                  min_lr_ratio: float = 1.0, curriculum: Curriculum | None = None) -> LambdaLR:
    """Linear warm-up to the base lr, then a cosine decay to min_lr_ratio · lr at total_steps.

    min_lr_ratio = 1 (the default) keeps the lr constant after warm-up. With a `curriculum`, the
    base lr of each step is its stage's lr (the optimizer's lr is only what the factors scale).
    """
    if warmup_steps < 0 or not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"need warmup_steps >= 0 and 0 <= min_lr_ratio <= 1, got {warmup_steps}, {min_lr_ratio}")
    if min_lr_ratio < 1.0 and (total_steps is None or total_steps <= warmup_steps):
        raise ValueError(f"a cosine decay (min_lr_ratio={min_lr_ratio}) needs total_steps > warmup_steps={warmup_steps}, "
                         f"got {total_steps} (epoch-based runs: set trainer.max_steps or scheduler.total_steps)")

    base = optimizer.param_groups[0]["lr"]
    if curriculum is not None and base <= 0:
        raise ValueError(f"a curriculum scales the optimizer's lr, which must be > 0, got {base}")

    def shape(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if min_lr_ratio == 1.0:
            return 1.0
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def factor(step: int) -> float:
        return shape(step) * (curriculum.stage_at(step).lr / base if curriculum is not None else 1.0)

    return LambdaLR(optimizer, factor)
