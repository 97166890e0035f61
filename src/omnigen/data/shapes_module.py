"""Shapes-X2I as a LightningDataModule: procedural samples generated on the fly, by index."""

from typing import Any

import numpy as np
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from omnigen.data.collate import collate_x2i
from omnigen.data.shapes import FAMILIES, ShapesSample, make_sample, sample_at
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
    }


class ShapesX2IDataset(Dataset):
    """`length` virtual samples; item i is a pure function of (seed, i), so any worker or rank
    can produce any item and shuffling is just index permutation."""

    def __init__(self, families: dict[str, float], image_size: int, seed: int, length: int) -> None:
        unknown = set(families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown Shapes-X2I families {sorted(unknown)}; known: {list(FAMILIES)}")
        if not families or any(r < 0 for r in families.values()) or sum(families.values()) <= 0:
            raise ValueError(f"family ratios must be non-negative with a positive sum, got {families}")
        self.families, self.image_size, self.seed, self.length = dict(families), image_size, seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        return to_item(sample_at(index, self.seed, self.families, self.image_size))


class ShapesX2IDataModule(LightningDataModule):
    def __init__(self, families: dict[str, float] | None = None, image_size: int = 32, batch_size: int = 32,
                 num_workers: int = 0, seed: int = 0, length: int = 1_000_000) -> None:
        super().__init__()
        self.families = dict(families) if families is not None else {"t2i": 0.5, "edit": 0.5}
        self.image_size, self.batch_size, self.num_workers = image_size, batch_size, num_workers
        self.seed, self.length = seed, length
        self.train_set = ShapesX2IDataset(self.families, image_size, seed, length)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          collate_fn=collate_x2i)

    def preview_samples(self, n: int) -> list[dict[str, Any]]:
        """n held-out samples cycling through the families with a non-zero ratio (for sample grids)."""
        rng = np.random.default_rng([self.seed + PREVIEW_SEED_OFFSET])
        active = [f for f, r in self.families.items() if r > 0]
        return [to_item(make_sample(active[i % len(active)], rng, self.image_size)) for i in range(n)]
