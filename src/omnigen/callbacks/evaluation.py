"""Shapes-X2I evaluation during a fit: the programmatic metrics of omnigen.evaluate every n steps,
logged as eval/<family>/<metric> (and a W&B table of examples when W&B is a logger)."""

import logging

from lightning import LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger

from omnigen.callbacks.periodic import PeriodicCallback
from omnigen.evaluation import evaluate_shapes, flat_metrics, log_wandb_table
from omnigen.metrics import FAMILIES
from omnigen.pipeline import OmniGenPipeline

log = logging.getLogger(__name__)


class EvaluationCallback(PeriodicCallback):
    def __init__(
        self,
        every_n_steps: int = 500,
        families: list[str] | None = None,
        samples_per_family: int = 16,
        image_size: int = 32,
        num_inference_steps: int = 10,
        guidance_scale: float = 2.0,
        img_guidance_scale: float = 1.5,
        seed: int = 0,
    ) -> None:
        """every_n_steps = 0 evaluates only at the end of training."""
        super().__init__(every_n_steps)
        self.families = list(families or FAMILIES)
        self.samples_per_family, self.image_size, self.num_inference_steps = (
            samples_per_family,
            image_size,
            num_inference_steps,
        )
        self.guidance_scale, self.img_guidance_scale, self.seed = guidance_scale, img_guidance_scale, seed

    def evaluate(self, pl_module: LightningModule, families: list[str] | None = None) -> tuple[dict, list[dict]]:
        """evaluate_shapes' (results, examples) of the module now, on `families` (default: this callback's)."""
        return evaluate_shapes(
            OmniGenPipeline(pl_module),
            families or self.families,
            self.samples_per_family,
            self.image_size,
            self.num_inference_steps,
            self.guidance_scale,
            self.img_guidance_scale,
            seed=self.seed,
        )

    def run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        results, examples = self.evaluate(pl_module)
        metrics = flat_metrics(results)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            if isinstance(logger, WandbLogger):
                log_wandb_table(examples, logger.experiment)
        log.info(
            "evaluation at step %d: %s",
            trainer.global_step,
            {k: round(v, 3) for k, v in metrics.items() if k.endswith(("exact_scene", "edit_correct", "edge_f1"))},
        )
