"""Shapes-X2I as a LightningDataModule: procedural samples generated on the fly, by index."""

import logging
import math
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
from lightning import LightningDataModule
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from omnigen.data.collate import collate_samples, to_item
from omnigen.data.curriculum import Curriculum
from omnigen.data.schema import X2ISample, format_mix
from omnigen.data.shapes import make_sample
from omnigen.data.sources.shapes import ShapesSource, to_x2i

log = logging.getLogger(__name__)

PREVIEW_SEED_OFFSET = 1_000_003  # previews come from a seed the training stream never uses


class ShapesX2IDataset(Dataset):
    """`length` virtual samples; item i is a pure function of (seed, i), so any worker or rank
    can produce any item. With a curriculum, item i is drawn at `image_size` and resized to the image
    size of the stage its optimizer step is in (step i // samples_per_step): the same samples, at a
    lower resolution first."""

    def __init__(
        self,
        families: dict[str, float],
        image_size: int,
        seed: int,
        length: int,
        curriculum: Curriculum | None = None,
        samples_per_step: int = 1,
        holdout: str | None = None,
    ) -> None:
        # validates the families and the holdout here, not in a worker
        self.source = ShapesSource(families, image_size, seed, length, holdout=holdout)
        self.image_size, self.curriculum, self.samples_per_step = image_size, curriculum, samples_per_step

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> X2ISample:
        sample = self.source.get(index)
        if not isinstance(sample, X2ISample):  # the generator's own grammar broke: a bug, not bad input
            raise RuntimeError(f"Shapes-X2I produced an invalid sample: {sample.message}")
        if self.curriculum is None:
            return sample
        size = self.curriculum.stage_at(index // self.samples_per_step).image_size
        if size == self.image_size:
            return sample
        resize = lambda image: image.resize((size, size), Image.BICUBIC, reducing_gap=None)  # noqa: E731
        return replace(
            sample, input_images=[resize(im) for im in sample.input_images], output_image=resize(sample.output_image)
        )


class StreamSampler(DistributedSampler):
    """Rank r of W reads indices start + r, start + r + W, ... < length. Items are already i.i.d.
    draws (each a pure function of its index), so reading them in order loses nothing to shuffling
    and lets a resumed run, on any number of ranks, continue exactly where the checkpoint left off.
    (A DistributedSampler, so Lightning does not wrap it in a shuffling one of its own.)"""

    def __init__(self, start: int, length: int, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(range(length), num_replicas=world_size, rank=rank, shuffle=False)
        self.start, self.length = start, length

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start + self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.start + self.rank, self.length, self.num_replicas))


class ShapesX2IDataModule(LightningDataModule):
    def __init__(
        self,
        families: dict[str, float] | None = None,
        image_size: int = 32,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        length: int = 1_000_000,
        curriculum: Curriculum | None = None,
        holdout: str | None = None,
    ) -> None:
        super().__init__()
        self.families = dict(families) if families is not None else {"text_to_image": 0.5, "mixed_modal": 0.5}
        self.image_size, self.batch_size, self.num_workers = image_size, batch_size, num_workers
        self.seed, self.length = seed, length
        if curriculum is not None:  # stages here change the resolution only (the mixture DataModule does the rest)
            bad = [
                stage.name or str(i)
                for i, stage in enumerate(curriculum.stages)
                if stage.batch_size != batch_size
                or stage.mix is not None
                or stage.resolution_mode is not None
                or stage.image_size > image_size
            ]
            if bad:
                raise ValueError(
                    f"curriculum stage(s) {bad}: Shapes-X2I stages keep the batch size ({batch_size}), "
                    f"the family mix and the resolution mode, and draw at most at image_size={image_size} "
                    "(data=mixture takes any stage)"
                )
        self.train_set = ShapesX2IDataset(self.families, image_size, seed, length, curriculum, holdout=holdout)

    def setup(self, stage: str | None = None) -> None:
        # What the run will read: `data.families={...}` on the command line merges into the default
        # dict (text_to_image 0.5 stays unless set to 0), so the realised shares are said at start-up.
        log.info("Shapes-X2I mix (share of samples by family): %s", format_mix(self.families))

    def train_dataloader(self) -> DataLoader:
        # Called after a resumed checkpoint is restored: skip the batches it already trained on.
        trainer = self.trainer
        rank, world, accumulate = (
            (trainer.global_rank, trainer.world_size, trainer.accumulate_grad_batches)
            if trainer is not None
            else (0, 1, 1)
        )
        consumed = trainer.global_step * accumulate if trainer is not None else 0
        if consumed * self.batch_size * world >= self.length:
            raise ValueError(
                f"the run has consumed {consumed} batches of {self.batch_size} on {world} rank(s), past "
                f"the stream's {self.length} samples; raise data.length"
            )
        self.train_set.samples_per_step = self.batch_size * world * accumulate  # an index's optimizer step
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            drop_last=True,
            sampler=StreamSampler(consumed * self.batch_size * world, self.length, rank, world),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_samples,
        )

    def preview_samples(self, n: int) -> list[dict[str, Any]]:
        """n held-out samples cycling through the families with a non-zero ratio (for sample grids)."""
        rng = np.random.default_rng([self.seed + PREVIEW_SEED_OFFSET])
        active = [f for f, r in self.families.items() if r > 0]
        samples = [to_x2i(make_sample(active[i % len(active)], rng, self.image_size), f"preview:{i}") for i in range(n)]
        return [to_item(s) for s in samples]


class StreamUnknown(Exception):
    """A checkpoint's training stream that cannot be regenerated here; the message says why."""


def trained_instructions(run_config: dict[str, Any] | None, steps: int) -> set[str]:
    """The instruction of every sample the first `steps` optimizer steps of a fit read, regenerated from
    the fit's resolved config (what a checkpoint keeps as run_config): the Shapes-X2I stream is a pure
    function of it, and step s reads samples [s, s + 1) × accumulation × batch size × ranks. Raises
    StreamUnknown where the data are not this DataModule's or the config leaves the stream open."""
    config = run_config or {}
    data, trainer = dict(config.get("data") or {}), config.get("trainer") or {}
    target = data.pop("_target_", None)
    if target != f"{__name__}.{ShapesX2IDataModule.__name__}":
        raise StreamUnknown(f"the checkpoint's data are {target or 'not recorded'}, not the Shapes-X2I DataModule")
    counts = {key: trainer.get(key, 1) for key in ("devices", "num_nodes", "accumulate_grad_batches")}
    if not all(isinstance(v, int) and v > 0 for v in counts.values()):
        raise StreamUnknown(f"the trainer's {counts} do not fix how many samples a step read")
    data.pop("curriculum", None)  # its stages resize the same samples (and keep the batch size)
    try:
        module = ShapesX2IDataModule(**data)
    except (TypeError, ValueError) as error:  # a config of another version of this DataModule
        raise StreamUnknown(f"the checkpoint's data config does not build today's DataModule ({error})") from error
    stream = module.train_set.source
    samples = steps * module.batch_size * math.prod(counts.values())
    if samples > len(stream):
        raise StreamUnknown(f"{steps} steps read {samples} samples, past the stream's {len(stream)}")
    return {stream.sample(i).instruction for i in range(samples)}
