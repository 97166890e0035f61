"""Checkpoints that end where training ends, and a Ctrl-C that ends training at a step boundary.

Lightning's ModelCheckpoint writes last.ckpt only beside a periodic checkpoint: a 250-step run saving
every 200 steps ended with last.ckpt at step 200 while its final sample grid was drawn with step 250's
weights. `ModelCheckpoint` here also writes last.ckpt when training ends between two periodic saves,
however it ends: max_steps, max_time, a callback's stop (the wall clock, `StopOnInterrupt`) or a data
stop (`omnigen.data.modules.base.DataStop`). It is written before the weight average is swapped into
the module at the end of training, so it holds the average and the raw weights like every other
checkpoint, and a run resumed from it continues exactly.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint

from omnigen.data.modules.base import DataStop

log = logging.getLogger(__name__)


class ModelCheckpoint(LightningModelCheckpoint):
    """Lightning's ModelCheckpoint, with last.ckpt (when `save_last`) at the step training ended."""

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Every way a fit ends (max_steps, max_time, should_stop) ends the epoch first, with the raw weights
        # still in the module: the weight average is swapped in later, at on_train_end.
        super().on_train_epoch_end(trainer, pl_module)
        self.save_last_if_behind(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        # A data stop comes between two steps, so the module holds a whole step's weights. Saving is a
        # collective, and a data stop may come on one rank alone: save only where there is one rank.
        if isinstance(exception, DataStop) and trainer.world_size == 1:
            self.save_last_if_behind(trainer)

    def save_last_if_behind(self, trainer: Trainer) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step and not self.skips(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self.save_last and trainer.is_global_zero and self.last_model_path:
            log.info("training ended at step %d: %s", trainer.global_step, self.last_model_path)

    def skips(self, trainer: Trainer) -> bool:
        return bool(trainer.fast_dev_run) or trainer.sanity_checking or trainer.global_step == 0


class StopOnInterrupt(Callback):
    """The first Ctrl-C (SIGINT) ends training after the step in progress, as max_steps would (last.ckpt,
    the final sample grid, loggers closed); a second one interrupts at once, as without this callback."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: Any = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.requested = False
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self.previous = signal.signal(signal.SIGINT, self.request_stop)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, self.previous)  # the next Ctrl-C is a KeyboardInterrupt again
        self.requested = True
        log.warning("Ctrl-C: stopping after this step (last.ckpt is written); Ctrl-C again to abort")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        # Any rank's Ctrl-C stops every rank at the same step (a rank that stopped alone would hang the others).
        if trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            trainer.should_stop = True

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.restore()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.restore()

    def restore(self) -> None:
        if self.previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self.previous)
        self.previous = None
