"""A mixture of task families by ratio (the paper's later stages: t2i 0.5, subject 0.2, visual
condition 0.1, edit 0.1, other 0.1). Each sample's family is drawn by ratio, so batches mix
families; the realised mix is logged as data/mix/<family>."""

from __future__ import annotations

from omnigen.data.curriculum import Curriculum
from omnigen.data.modules.base import X2IDataModule
from omnigen.data.resolution import Resolution
from omnigen.data.stream import FamilyStream


class MixtureDataModule(X2IDataModule):
    family = "mixture"

    def __init__(
        self,
        families: dict[str, X2IDataModule],
        ratios: dict[str, float],
        batch_size: int = 32,
        resolution: Resolution | None = None,
        num_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        on_bad: str = "skip",
        max_skip_fraction: float = 0.05,
        curriculum: Curriculum | None = None,
        mixed_sizes: bool = False,
    ) -> None:
        """`families`: name -> a family DataModule (its sources, checks and few-shot settings are used;
        batching, resolution, workers and the bad-input policy are the mixture's)."""
        if set(families) != set(ratios):
            raise ValueError(f"ratios {sorted(ratios)} must name exactly the families {sorted(families)}")
        sources = [source for module in families.values() for source in module.sources]
        super().__init__(
            sources,
            batch_size,
            resolution,
            num_workers,
            shuffle,
            seed,
            on_bad,
            max_skip_fraction,
            curriculum=curriculum,
            mixed_sizes=mixed_sizes,
        )
        self.members, self.mix = dict(families), dict(ratios)

    def family_streams(self) -> dict[str, FamilyStream]:
        return {name: module.family_streams()[module.family] for name, module in self.members.items()}

    def ratios(self) -> dict[str, float]:
        return self.mix
