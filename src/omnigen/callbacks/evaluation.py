"""Shapes-X2I evaluation during a fit: the programmatic metrics of omnigen.evaluate every n steps,
logged as eval/<family>/<metric> (and a W&B table of examples when W&B is a logger)."""

import logging

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger

from omnigen.evaluate import evaluate_shapes, log_wandb_table
from omnigen.metrics import FAMILIES
from omnigen.pipeline import OmniGenPipeline

log = logging.getLogger(__name__)


class EvaluationCallback(Callback):
    def __init__(self, every_n_steps: int = 500, families: list[str] | None = None, samples_per_family: int = 16,
                 image_size: int = 32, num_inference_steps: int = 10, guidance_scale: float = 2.0,
                 img_guidance_scale: float = 1.5, seed: int = 0) -> None:
        """every_n_steps = 0 evaluates only at the end of training."""
        self.every_n_steps, self.families = every_n_steps, list(families or FAMILIES)
        self.samples_per_family, self.image_size, self.num_inference_steps = samples_per_family, image_size, num_inference_steps
        self.guidance_scale, self.img_guidance_scale, self.seed = guidance_scale, img_guidance_scale, seed
        self.last_step = -1

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        step = trainer.global_step
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0 and step != self.last_step:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.last_step != trainer.global_step:
            self.evaluate(trainer, pl_module)

    def evaluate(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.last_step = trainer.global_step
        if not trainer.is_global_zero:
            return
        was_training = pl_module.training
        pl_module.eval()
        results, examples = evaluate_shapes(OmniGenPipeline(pl_module), self.families, self.samples_per_family,
                                            self.image_size, self.num_inference_steps, self.guidance_scale,
                                            self.img_guidance_scale, seed=self.seed)
        pl_module.train(was_training)
        metrics = {f"eval/{family}/{k}": v for family, scores in results.items() if family != "per_task"
                   for k, v in scores.items() if k != "n"}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            if isinstance(logger, WandbLogger):
                log_wandb_table(examples, logger.experiment)
        log.info("evaluation at step %d: %s", trainer.global_step,
                 {k: round(v, 3) for k, v in metrics.items() if k.endswith(("exact_scene", "edit_correct", "edge_f1"))})
