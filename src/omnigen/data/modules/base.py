"""X2IDataModule: the Lightning side of one task family (or a mixture of them).

Subclasses name the family and the number of input images its samples take; everything else
(sources, batching, resolution, bad-input policy, accounting) is shared here.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Iterator
from typing import Any

from lightning import LightningDataModule
from torch.utils.data import DataLoader

from omnigen.data.collate import to_item
from omnigen.data.curriculum import Curriculum
from omnigen.data.episodes import EpisodeBuilder
from omnigen.data.resolution import Resolution
from omnigen.data.schema import SKIP_REASONS, BadSample, X2ISample, format_mix
from omnigen.data.sources.base import Source
from omnigen.data.stream import COUNTS_ONLY, FamilyStream, X2IStream
from omnigen.processor import OmniGenProcessor, PromptError
from omnigen.utils.cli import UserError

log = logging.getLogger(__name__)
PREVIEW_SEED_OFFSET = 1_000_003  # previews read in an order the training stream does not use


class TokenBudget:
    """Raises BadSample('too_many_tokens') for a sample whose prompt is over the processor's limit."""

    def __init__(self, processor: OmniGenProcessor, pixels_per_token: int) -> None:
        self.processor, self.pixels_per_token = processor, pixels_per_token

    def __call__(self, sample: X2ISample) -> None:
        f = self.pixels_per_token
        try:  # placeholders were validated already: what is left to fail is the token limit
            self.processor.tokenize(
                sample.instruction, [(im.height // f) * (im.width // f) for im in sample.input_images]
            )
        except PromptError as error:
            raise BadSample("too_many_tokens", sample.key, str(error)) from None


class DataStop(UserError, RuntimeError):
    """Training stopped by the data: past the skip limit, or a whole pass formed no batch. It comes between
    two steps, so the run's last.ckpt is written at the last whole step (omnigen.callbacks.checkpoint), and
    the command says it in one line (the data are the user's)."""


class DataAccounting:
    """Main-process totals of what the workers read and skipped; stops the run past the skip limit, or
    once `min_records` were read without a single usable sample (whatever the limit)."""

    def __init__(self, max_skip_fraction: float, min_records: int = 100) -> None:
        if not 0.0 <= max_skip_fraction <= 1.0:
            raise ValueError(f"max_skip_fraction must be in [0, 1], got {max_skip_fraction}")
        self.max_skip_fraction, self.min_records = max_skip_fraction, min_records
        self.totals: Counter[str] = Counter()
        self.recent: deque[str] = deque(maxlen=5)

    @property
    def skipped(self) -> int:
        return sum(v for k, v in self.totals.items() if k.startswith("skipped_"))

    def describe(self) -> str:
        """The counts by reason and the latest skipped records, for an error message."""
        counts = ", ".join(
            f"{k.removeprefix('skipped_')}: {v}" for k, v in sorted(self.totals.items()) if k.startswith("skipped_")
        )
        return f"({counts or 'nothing skipped'}); latest: " + (" | ".join(self.recent) or "none")

    def update(self, stats: dict[str, Any]) -> dict[str, float]:
        """Add one batch's (or one counts-only item's) counts; returns the running figures to log (data/<name>)."""
        self.totals.update(stats["counts"])
        self.recent.extend(stats["messages"])
        skipped, samples = self.skipped, self.totals["samples"]
        read = skipped + samples
        fraction = skipped / read if read else 0.0
        if read >= self.min_records and (fraction > self.max_skip_fraction or samples == 0):
            why = (
                f"over data.max_skip_fraction={self.max_skip_fraction}"
                if fraction > self.max_skip_fraction
                else "not one usable"
            )
            raise DataStop(f"{skipped} of {read} records skipped ({fraction:.1%}), {why} {self.describe()}")
        figures = {f"skipped_{r}": float(self.totals[f"skipped_{r}"]) for r in SKIP_REASONS}
        figures["skipped_fraction"] = fraction
        for key, value in self.totals.items():
            if key.startswith("family/"):
                figures[f"mix/{key.removeprefix('family/')}"] = value / max(samples, 1)  # the realised mix
            elif key.startswith("converted_") or key == "few_shot_warmup":
                figures[key] = float(value)
        return figures


class AccountedLoader(DataLoader):
    """The DataModule's loader: takes the stream's counts-only items out (into `accounting`), and stops
    the run when a whole pass over the data formed no batch (every record skipped, or none read),
    which Lightning would otherwise repeat as empty epochs forever."""

    def __init__(self, stream: X2IStream, accounting: DataAccounting, **kwargs: Any) -> None:
        super().__init__(stream, batch_size=None, **kwargs)
        self.accounting = accounting

    def __iter__(self) -> Iterator[dict[str, Any]]:
        batches = 0
        for item in super().__iter__():
            if item.get(COUNTS_ONLY):
                self.accounting.update(item["data_stats"])
                continue
            batches += 1
            yield item
        if batches == 0:
            totals = self.accounting.totals
            raise DataStop(
                f"a whole pass over the data formed no batch: {self.accounting.skipped} record(s) "
                f"skipped and {totals['samples']} usable so far {self.accounting.describe()}; "
                f"sources: {', '.join(s.name for f in self.dataset.families.values() for s in f.sources)}"
            )


class X2IDataModule(LightningDataModule):
    family = ""  # its samples' input-image counts: schema.INPUT_COUNTS

    def __init__(
        self,
        sources: list[Source],
        batch_size: int = 32,
        resolution: Resolution | None = None,
        num_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        on_bad: str = "skip",
        max_skip_fraction: float = 0.05,
        few_shot: EpisodeBuilder | None = None,
        curriculum: Curriculum | None = None,
        mixed_sizes: bool = False,
    ) -> None:
        """`curriculum`: stages whose batch size, image size (the resolution's `size`) and mix replace
        `batch_size`, `resolution.size` and the mixture's ratios at each stage's steps. `mixed_sizes`:
        batches take any output sizes (resolution modes raw/buckets) instead of one size each; the
        model packs them into rows (`model.pack_tokens`)."""
        super().__init__()
        if not sources:
            raise ValueError(f"the {self.family} DataModule needs at least one source")
        self.sources, self.few_shot = list(sources), few_shot
        self.batch_size, self.num_workers, self.shuffle, self.seed = batch_size, num_workers, shuffle, seed
        self.resolution = resolution or Resolution()
        self.on_bad, self.accounting = on_bad, DataAccounting(max_skip_fraction)
        self.checker: TokenBudget | None = None
        self.curriculum, self.mixed_sizes = curriculum, mixed_sizes

    def family_streams(self) -> dict[str, FamilyStream]:
        return {self.family: FamilyStream(self.family, self.sources, self.few_shot)}

    def ratios(self) -> dict[str, float] | None:
        return None  # one family: an epoch is one pass over its sources

    def setup(self, stage: str | None = None) -> None:
        if self.trainer is not None and self.trainer.lightning_module is not None:
            self.attach(self.trainer.lightning_module)
        if self.ratios() is not None:  # what the run will read (a dict override merges into the default one)
            log.info("data mix (share of samples by family): %s", format_mix(self.ratios()))

    def attach(self, module: Any) -> None:
        """Take the token grid (unless set) and the prompt limit from the model being trained."""
        if self.resolution.multiple is None:
            self.resolution.multiple = module.pixels_per_token
        self.checker = TokenBudget(module.processor, module.pixels_per_token)

    def stream(self, shuffle: bool | None = None, seed: int | None = None) -> X2IStream:
        stream = X2IStream(
            self.family_streams(),
            self.ratios(),
            self.batch_size,
            self.resolution,
            self.shuffle if shuffle is None else shuffle,
            self.seed if seed is None else seed,
            self.on_bad,
            self.checker,
            self.curriculum,
            self.mixed_sizes,
        )
        if self.trainer is not None:
            stream.rank, stream.world_size = self.trainer.global_rank, self.trainer.world_size
            stream.accumulate = self.trainer.accumulate_grad_batches
            # Batches already trained on: a resumed run continues in the right curriculum stage.
            stream.start_batch = self.trainer.global_step * stream.accumulate
        return stream

    def train_dataloader(self) -> DataLoader:
        if self.trainer is not None and self.trainer.global_step > 0:
            log.warning(
                "resuming at step %d: the %s stream restarts its epoch from the beginning (only the "
                "Shapes-X2I quickstart DataModule resumes at the exact sample)",
                self.trainer.global_step,
                type(self).__name__,
            )
        # Batches are formed inside the stream (by output size), so the loader does not batch.
        # Persistent workers keep their stream's epoch counter, so each epoch reshuffles.
        return AccountedLoader(
            self.stream(), self.accounting, num_workers=self.num_workers, persistent_workers=self.num_workers > 0
        )

    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        if "data_stats" in batch:
            batch["data_stats"] = self.accounting.update(batch["data_stats"])
        return batch

    def preview_samples(self, n: int) -> list[dict[str, Any]]:
        """Up to n samples for sample grids, read in an order the training stream does not use (fewer
        where the data has fewer, or STATS_FLUSH_RECORDS records in a row are unusable)."""
        stream = self.stream(shuffle=True, seed=self.seed + PREVIEW_SEED_OFFSET)
        stream.enter_stage(stream.start_batch)  # previews at the current stage's size
        samples = []
        for sample in stream.samples(0, 1, 0, Counter(), []):
            if sample is None:
                break
            samples.append(sample)
            if len(samples) == n:
                break
        return [to_item(s) for s in samples]
