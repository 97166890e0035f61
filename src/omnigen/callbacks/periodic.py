"""A callback that runs something with the model in eval mode every n optimizer steps and at the end."""

from abc import abstractmethod

from lightning import Callback, LightningModule, Trainer

from omnigen.training.distributed import FullyShardedStrategy


class PeriodicCallback(Callback):
    def __init__(self, every_n_steps: int = 0) -> None:
        """every_n_steps = 0 runs only at the end of training."""
        self.every_n_steps = every_n_steps
        self.last_step = -1

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        step = trainer.global_step
        # global_step holds still across the micro-batches of gradient accumulation: run once.
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0 and step != self.last_step:
            self.trigger(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.last_step != trainer.global_step:  # not already run at this step
            self.trigger(trainer, pl_module)

    def trigger(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Run once for this step, in eval mode: on global rank 0, or on every rank when the model is sharded
        (FSDP2: its forwards are collectives), where `run` writes on rank 0 alone."""
        self.last_step = trainer.global_step
        if not trainer.is_global_zero and not isinstance(trainer.strategy, FullyShardedStrategy):
            return
        was_training = pl_module.training
        pl_module.eval()
        try:
            self.run(trainer, pl_module)
        finally:
            pl_module.train(was_training)

    @abstractmethod
    def run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The work, with `pl_module` in eval mode."""
