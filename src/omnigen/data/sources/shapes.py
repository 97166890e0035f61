"""Shapes-X2I as a Source: record i is `sample_at(i, seed, families, image_size)`."""

from __future__ import annotations

import numpy as np
from PIL import Image

from omnigen.data.schema import Skipped, X2ISample
from omnigen.data.shapes.holdout import holdout_named
from omnigen.data.shapes.tasks import ShapesSample, family_probabilities, sample_at
from omnigen.data.sources.base import IndexedSource, checked


class ShapesSource(IndexedSource):
    """`length` procedural records, each a pure function of (seed, index).

    Records are already i.i.d. draws by index, so `shuffle` only permutes the reading order (seeded by
    (seed, epoch)) and every epoch holds the same records; a different `seed` gives a different data set.
    `holdout` (a name of omnigen.data.shapes.HOLDOUTS) redraws every record that shows a held-out pair.
    """

    def __init__(
        self,
        families: dict[str, float],
        image_size: int = 32,
        seed: int = 0,
        length: int = 1_000_000,
        name: str | None = None,
        holdout: str | None = None,
    ) -> None:
        family_probabilities(families)  # unknown families or bad ratios fail here, not in a worker
        self.holdout = holdout_named(holdout)  # and so does an unknown holdout
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.families, self.image_size, self.seed, self.length = dict(families), image_size, seed, length
        if length:
            self.sample(0)  # so does an image size the renderer refuses
        self.name = name or f"shapes(seed={seed})"

    def sample(self, index: int) -> ShapesSample:
        accept = self.holdout.excludes if self.holdout is not None else None
        return sample_at(index, self.seed, self.families, self.image_size, accept)

    def __len__(self) -> int:
        return self.length

    def get(self, index: int) -> X2ISample | Skipped:
        if not 0 <= index < self.length:
            raise IndexError(f"{self.name}: record {index} out of range [0, {self.length})")
        return checked(to_x2i(self.sample(index), f"shapes:{index}"))


def to_x2i(sample: ShapesSample, key: str) -> X2ISample:
    return X2ISample(
        instruction=sample.instruction,
        input_images=[Image.fromarray(np.asarray(im, dtype=np.uint8)) for im in sample.input_images],
        output_image=Image.fromarray(np.asarray(sample.output_image, dtype=np.uint8)),
        family=sample.family,
        task=sample.task,
        key=key,
        spec=sample.spec,
        edit_source=sample.edit_source,
    )
