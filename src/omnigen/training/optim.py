"""Learning-rate schedules, built per optimiser (`_partial_` in config), and the Muon + AdamW optimiser."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

if TYPE_CHECKING:
    from omnigen.data.curriculum import Curriculum


def warmup_cosine(
    optimizer: Optimizer,
    warmup_steps: int = 0,
    total_steps: int | None = None,
    min_lr_ratio: float = 1.0,
    curriculum: Curriculum | None = None,
) -> LambdaLR:
    """Linear warm-up to the base lr, then a cosine decay to min_lr_ratio · lr at total_steps.

    min_lr_ratio = 1 (the default) keeps the lr constant after warm-up. With a `curriculum`, the
    base lr of each step is its stage's lr (the optimizer's lr is only what the factors scale).
    """
    if warmup_steps < 0 or not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"need warmup_steps >= 0 and 0 <= min_lr_ratio <= 1, got {warmup_steps}, {min_lr_ratio}")
    if min_lr_ratio < 1.0 and (total_steps is None or total_steps <= warmup_steps):
        raise ValueError(
            f"a cosine decay (min_lr_ratio={min_lr_ratio}) needs total_steps > warmup_steps={warmup_steps}, "
            f"got {total_steps} (epoch-based runs: set trainer.max_steps or scheduler.total_steps)"
        )

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


class MuonAdamW(Optimizer):
    """Muon on the 2-D weights of the backbone's decoder layers, AdamW on every other parameter.

    Muon (Jordan et al. 2024; `torch.optim.Muon`) replaces each hidden matrix's momentum update by
    its nearest orthogonal matrix, so every direction of the update moves at one rate; embeddings,
    the patch and time embedders, the output layer, norms and biases are not hidden matrices and
    keep AdamW. Takes named parameters (`module.named_parameters()`): a weight is a hidden matrix
    when it is 2-D and its name contains `hidden` (`.layers.`: the LLM's decoder layers).

    `lr`, `betas` and `weight_decay` are AdamW's; `muon_lr`, `momentum` and `muon_weight_decay`
    are Muon's (its lr is scaled per shape by sqrt(max(1, rows / cols)), as in Keller Jordan's
    implementation; `tiny` uses 0.01, which beat 0.02 in the speedrun's screens). With LoRA, the
    trainable 2-D weights inside the layers are the adapters' factors, and Muon trains those.
    A schedule multiplies both lrs by its factor: the groups are the two optimisers' own, AdamW's
    first (a curriculum stage's lr is AdamW's; Muon's moves in proportion).
    """

    def __init__(
        self,
        params: Iterable[tuple[str, Tensor]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        muon_lr: float = 0.02,
        momentum: float = 0.95,
        muon_weight_decay: float = 0.0,
        hidden: str = ".layers.",
    ) -> None:
        named = list(params)
        if not all(isinstance(item, tuple) and len(item) == 2 for item in named):
            raise TypeError("MuonAdamW chooses Muon's weights by name: pass module.named_parameters()")
        muon = [(name, p) for name, p in named if p.ndim == 2 and hidden in name]
        adamw = [(name, p) for name, p in named if not (p.ndim == 2 and hidden in name)]
        if not muon:
            raise ValueError(
                f"no 2-D parameter has {hidden!r} in its name, so Muon would train nothing; "
                f"names seen: {[name for name, _ in named][:5]}..."
            )
        self.muon = torch.optim.Muon(
            muon, lr=muon_lr, momentum=momentum, weight_decay=muon_weight_decay, adjust_lr_fn="original"
        )
        self.adamw = torch.optim.AdamW(adamw, lr=lr, betas=tuple(betas), weight_decay=weight_decay) if adamw else None
        # AdamW's groups first: a curriculum's stage lr replaces the first group's lr and scales the rest alike.
        self.parts = ([self.adamw] if self.adamw is not None else []) + [self.muon]
        super().__init__([p for _, p in named], {})
        # The parts' groups are this optimiser's, so a schedule that sets `lr` in them sets both.
        self.param_groups = [group for part in self.parts for group in part.param_groups]

    @property
    def state(self) -> dict[Tensor, dict[str, Any]]:
        """Both parts' per-parameter states (the same dicts: Lightning moves them between devices in place)."""
        return {p: values for part in self.parts for p, values in part.state.items()}

    @state.setter
    def state(self, value: dict) -> None:  # Optimizer.__init__ sets an empty one; the parts hold the state
        if value:
            raise AttributeError("MuonAdamW's state lives in its Muon and AdamW parts")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in self.parts:
            part.step()
        return loss

    # torch's own state-dict layout (the parts' groups in order, parameters by index): sharded checkpoints
    # (torch.distributed.checkpoint, FSDP2) read and write optimisers through it.
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if set(state_dict) == {"muon", "adamw"}:  # the layout of checkpoints before 2026-12-06
            self.muon.load_state_dict(state_dict["muon"])
            if self.adamw is not None:
                self.adamw.load_state_dict(state_dict["adamw"])
        elif self.is_own_layout(state_dict):
            groups = iter(state_dict["param_groups"])
            for part in self.parts:
                part_groups = [dict(next(groups)) for _ in part.param_groups]
                local = {index: n for n, index in enumerate(i for group in part_groups for i in group["params"])}
                for group in part_groups:  # each part numbers its own parameters from 0
                    group["params"] = [local[i] for i in group["params"]]
                states = {local[i]: values for i, values in state_dict["state"].items() if i in local}
                part.load_state_dict({"state": states, "param_groups": part_groups})
        else:
            raise ValueError(
                f"this optimiser state is not MuonAdamW's (its keys: {sorted(state_dict)[:4]}): resume a run with "
                "the optimiser it was trained with, e.g. model.optimizer._target_=torch.optim.AdamW "
                "~model.optimizer.muon_lr"
            )
        self.param_groups = [group for part in self.parts for group in part.param_groups]

    def is_own_layout(self, state_dict: dict[str, Any]) -> bool:
        """Whether `state_dict` is torch's layout of this optimiser: its groups, with each part's options."""
        saved = state_dict.get("param_groups")
        if "state" not in state_dict or not isinstance(saved, list) or len(saved) != len(self.param_groups):
            return False
        return all(set(old) == set(new) for old, new in zip(saved, self.param_groups, strict=True))
