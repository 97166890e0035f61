"""The latest reward fine-tuning rollout as a picture: one row per prompt (its input images, then its G samples),
with every sample's reward beside it in rollouts/step_<n>.json (and in the W&B caption)."""

from __future__ import annotations

import json
from pathlib import Path

from lightning import LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger

from omnigen.callbacks.periodic import PeriodicCallback
from omnigen.utils.images import grid, to_pil


class RolloutGridCallback(PeriodicCallback):
    def __init__(self, every_n_steps: int = 50, groups: int = 4, cell_size: int = 64) -> None:
        super().__init__(every_n_steps)
        if groups < 1:
            raise ValueError(f"rollout_grid.groups must be >= 1, got {groups} (callbacks.rollout_grid=null: no grid)")
        self.groups, self.cell_size = groups, cell_size
        self.saved: list[Path] = []

    def run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        rollout = pl_module.rollout
        if rollout is None or not trainer.is_global_zero:  # decoding needs no other rank
            return
        size, rows, table = rollout.group_size, [], []
        width = max(len(zs) for zs in rollout.inputs[:: rollout.group_size])
        for start in range(0, min(self.groups * size, len(rollout.samples)), size):
            inputs = [to_pil(pl_module.vae.decode(z[None])[0].clamp(-1, 1)) for z in rollout.inputs[start]]
            samples = [to_pil(image) for image in rollout.images[start : start + size]]
            rows.append(inputs + [None] * (width - len(inputs)) + samples)
            table.append(
                {
                    "instruction": rollout.samples[start].instruction,
                    "task": rollout.groups()[start],
                    "rewards": [round(float(r), 4) for r in rollout.rewards[start : start + size]],
                }
            )
        out_dir = Path(trainer.default_root_dir) / "rollouts"
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"step_{trainer.global_step:07d}.png"
        picture = grid(rows, self.cell_size)
        picture.save(path)
        path.with_suffix(".json").write_text(json.dumps(table, indent=1) + "\n")
        self.saved.append(path)
        caption = " | ".join(f"{row['task']}: {row['rewards']}" for row in table)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("rollouts", [picture], step=trainer.global_step, caption=[caption[:1000]])
