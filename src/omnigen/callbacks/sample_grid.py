"""Sample a fixed set of held-out prompts during training and log the grid.

Rows: [input image(s) | target | sample]. Saved as PNG under the run directory and, where the
logger can show images (W&B), logged there too.
"""

import logging
from pathlib import Path

import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger

from omnigen.callbacks.periodic import PeriodicCallback
from omnigen.pipeline import OmniGenPipeline
from omnigen.utils.images import grid, to_pil

log = logging.getLogger(__name__)


class SampleGridCallback(PeriodicCallback):
    def __init__(
        self,
        every_n_steps: int = 0,
        num_samples: int = 8,
        num_steps: int = 20,
        guidance_scale: float = 1.0,
        image_guidance_scale: float = 1.0,
        seed: int = 0,
        cell_size: int = 64,
    ) -> None:
        """every_n_steps = 0 samples only at the end of training."""
        super().__init__(every_n_steps)
        if num_samples < 1 or num_steps < 1:
            raise ValueError(
                f"SampleGridCallback needs num_samples and num_steps >= 1, got {num_samples}, {num_steps} "
                "(to draw no grid, set callbacks.sample_grid=null)"
            )
        self.num_samples, self.num_steps = num_samples, num_steps
        self.guidance_scale, self.image_guidance_scale = guidance_scale, image_guidance_scale
        self.seed, self.cell_size = seed, cell_size
        self.saved: list[Path] = []

    def run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "preview_samples"):
            log.warning("SampleGridCallback: %s has no preview_samples(); no grid", type(datamodule).__name__)
            return
        samples = datamodule.preview_samples(self.num_samples)
        if not samples:
            log.warning("SampleGridCallback: the data gave no usable preview sample; no grid")
            return
        height, width = samples[0]["output_image"].shape[-2:]
        images = OmniGenPipeline(pl_module).generate(
            [s["instruction"] for s in samples],
            [s["input_images"] for s in samples],
            height,
            width,
            self.num_steps,
            self.guidance_scale,
            self.image_guidance_scale,
            generator=torch.Generator().manual_seed(self.seed),
        )
        if not trainer.is_global_zero:  # a sharded model's other ranks took part in sampling
            return
        max_inputs = max(len(s["input_images"]) for s in samples)
        rows = [
            [to_pil(im) for im in s["input_images"]]
            + [None] * (max_inputs - len(s["input_images"]))
            + [to_pil(s["output_image"]), to_pil(image)]
            for s, image in zip(samples, images, strict=True)
        ]
        picture = grid(rows, self.cell_size)
        out_dir = Path(trainer.default_root_dir) / "samples"
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"step_{trainer.global_step:07d}.png"
        picture.save(path)
        self.saved.append(path)
        captions = "; ".join(f"{i}: {s['instruction']}" for i, s in enumerate(samples))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("samples", [picture], step=trainer.global_step, caption=[captions[:1000]])
        log.info("sample grid (inputs | target | sample) -> %s", path)
