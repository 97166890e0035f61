"""Checkpoints at fixed points of training wall-clock time, for time-to-target benchmarks.

`minutes=[0, 2.5, 5, 10]` writes `<dirpath>/minute_2.5.ckpt`, ... as soon as the training loop has
run that long, and stops the run after the last one; minute 0 is the untrained model (the floor an
evaluation reads on noise), saved before the first step. The clock starts at the first batch (process
start-up and model building are outside it) and stops while these files are written; the step and
training seconds of each file go to `<dirpath>/wall_clock.json`. Evaluation runs afterwards, on the
saved files, so it never counts against the budget. A resumed run restarts the clock.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from lightning import Callback, LightningModule, Trainer

log = logging.getLogger(__name__)


def checkpoint_name(minute: float) -> str:
    return f"minute_{minute:g}.ckpt"


class WallClockCheckpoint(Callback):
    def __init__(self, minutes: list[float], dirpath: str, stop_after_last: bool = True) -> None:
        if not minutes or min(minutes) < 0 or sorted(minutes) != list(minutes) or len(set(minutes)) != len(minutes):
            raise ValueError(f"minutes must be increasing and >= 0, got {minutes}")
        self.minutes, self.dirpath, self.stop_after_last = [float(m) for m in minutes], Path(dirpath), stop_after_last
        self.pending: list[float] = []
        self.started: float | None = None
        self.paused = 0.0  # seconds spent saving, not training
        self.saved: dict[float, dict[str, float]] = {}  # minute -> {"step", "train_seconds"}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.pending, self.started, self.paused = list(self.minutes), None, 0.0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        if self.started is None:
            if self.pending and self.pending[0] == 0:  # the untrained weights, before the clock starts
                self.save(trainer, self.pending.pop(0), 0.0)
            self.started = time.perf_counter()

    def training_seconds(self) -> float:
        return 0.0 if self.started is None else time.perf_counter() - self.started - self.paused

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        elapsed = trainer.strategy.broadcast(self.training_seconds())  # rank 0's clock: all ranks save together
        while self.pending and elapsed >= self.pending[0] * 60:
            begin = time.perf_counter()
            self.save(trainer, self.pending.pop(0), elapsed)
            self.paused += time.perf_counter() - begin
        if self.stop_after_last and not self.pending:
            trainer.should_stop = True

    def save(self, trainer: Trainer, minute: float, elapsed: float) -> None:
        path = self.dirpath / checkpoint_name(minute)
        trainer.save_checkpoint(path, weights_only=False)  # collective under DDP: every rank calls it, rank 0 writes
        self.saved[minute] = {"step": trainer.global_step, "train_seconds": round(elapsed, 2)}
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
            (self.dirpath / "wall_clock.json").write_text(
                json.dumps({checkpoint_name(m): record for m, record in self.saved.items()}, indent=1)
            )
        log.info("%.1f training minutes at step %d -> %s", minute, trainer.global_step, path)
