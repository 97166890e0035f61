"""Shapes-X2I as a LightningDataModule: procedural samples generated on the fly, by index."""

from collections.abc import Iterator
from typing import Any

import numpy as np
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler

from omnigen.data.collate import collate_x2i
from omnigen.data.shapes import ShapesSample, make_sample, sample_at
from omnigen.data.shapes.tasks import family_probabilities
from omnigen.images import from_array

PREVIEW_SEED_OFFSET = 1_000_003  # previews come from a seed the training stream never uses


def to_item(sample: ShapesSample) -> dict[str, Any]:
    return {
        "instruction": sample.instruction,
        "input_images": [from_array(im) for im in sample.input_images],
        "output_image": from_array(sample.output_image),
        "task": sample.task,
        "family": sample.family,
        "spec": sample.spec,
        "edit_source": sample.edit_source,
    }


class ShapesX2IDataset(Dataset):
    """`length` virtual samples; item i is a pure function of (seed, i), so any worker or rank
    can produce any item."""

    def __init__(self, families: dict[str, float], image_size: int, seed: int, length: int) -> None:
        family_probabilities(families)  # fail at construction, not in a worker
        self.families, self.image_size, self.seed, self.length = dict(families), image_size, seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        return to_item(sample_at(index, self.seed, self.families, self.image_size))


class StreamSampler(Sampler[int]):
    """Indices start, start + 1, ... < length. Items are already i.i.d. draws (each a pure function
    of its index), so reading them in order loses nothing to shuffling and lets a resumed run
    continue exactly where the checkpoint left off."""

    def __init__(self, start: int, length: int) -> None:
        self.start, self.length = start, length

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.length))

    def __len__(self) -> int:
        return max(0, self.length - self.start)


class ShapesX2IDataModule(LightningDataModule):
    def __init__(self, families: dict[str, float] | None = None, image_size: int = 32, batch_size: int = 32,
                 num_workers: int = 0, seed: int = 0, length: int = 1_000_000) -> None:
        super().__init__()
        self.families = dict(families) if families is not None else {"t2i": 0.5, "edit": 0.5}
        self.image_size, self.batch_size, self.num_workers = image_size, batch_size, num_workers
        self.seed, self.length = seed, length
        self.train_set = ShapesX2IDataset(self.families, image_size, seed, length)

    def train_dataloader(self) -> DataLoader:
        # Called after a resumed checkpoint is restored: skip the batches it already trained on.
        trainer = self.trainer
        consumed = trainer.global_step * trainer.accumulate_grad_batches if trainer is not None else 0
        if consumed * self.batch_size >= self.length:
            raise ValueError(f"the run has consumed {consumed} batches of {self.batch_size}, past the stream's "
                             f"{self.length} samples; raise data.length")
        return DataLoader(self.train_set, batch_size=self.batch_size, drop_last=True,
                          sampler=StreamSampler(consumed * self.batch_size, self.length),
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          collate_fn=collate_x2i)

    def preview_samples(self, n: int) -> list[dict[str, Any]]:
        """n held-out samples cycling through the families with a non-zero ratio (for sample grids)."""
        rng = np.random.default_rng([self.seed + PREVIEW_SEED_OFFSET])
        active = [f for f, r in self.families.items() if r > 0]
        return [to_item(make_sample(active[i % len(active)], rng, self.image_size)) for i in range(n)]
