"""Logs the curriculum's stage and samples a grid at every stage boundary (omnigen.data.curriculum)."""

from __future__ import annotations

from typing import Any

from lightning import Callback, LightningModule, Trainer

from omnigen.callbacks.sample_grid import SampleGridCallback
from omnigen.data.curriculum import Curriculum


class CurriculumCallback(Callback):
    """Logs curriculum/{stage, image_size, batch_size} and samples a grid when a stage begins."""

    def __init__(self, curriculum: Curriculum) -> None:
        self.curriculum = curriculum

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        stage = self.curriculum.stage_at(step)
        outputs = batch["output_image"]  # (B, 3, H, W), or a list of (3, H, W) of mixed sizes
        size = len(outputs)
        pl_module.log_dict(
            {
                "curriculum/stage": float(self.curriculum.index_at(step)),
                "curriculum/image_size": float(max(max(image.shape[-2:]) for image in outputs)),
                "curriculum/batch_size": float(size),
                "curriculum/stage_lr": stage.lr,
            },
            batch_size=size,
        )

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        step = trainer.global_step  # already advanced past the step that just ran
        if 0 < step < self.curriculum.total_steps and step in self.curriculum.starts:
            for callback in trainer.callbacks:
                # once per boundary, also under gradient accumulation
                if isinstance(callback, SampleGridCallback) and callback.last_step != step:
                    callback.trigger(trainer, pl_module)
