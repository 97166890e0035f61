"""The training stream: sources -> checks -> (few-shot episodes) -> resolution -> batches of one
output size (or of mixed sizes with `mixed_sizes`, which training packs).

`X2IStream` is an IterableDataset. Each (rank, worker) reads its own part of every source, so
ranks × workers together read each record once per epoch (a single family) or mix families by
ratio, restarting a family's sources when they run out (a mixture). Bad records become counted
skips that travel with the next batch (`batch["data_stats"]`); the DataModule adds them up in the
main process, logs them and stops the run past its skip limit. Counts no batch can carry (read after
a pass's last batch, or STATS_FLUSH_RECORDS records in a row without a usable sample) travel alone,
as a counts-only item that the DataModule's loader takes out of the stream: a stream of nothing but
bad records reaches the skip limit too, instead of spinning.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from omnigen.data.collate import collate_samples
from omnigen.data.curriculum import Curriculum
from omnigen.data.episodes import EpisodeBuilder
from omnigen.data.resolution import Resolution
from omnigen.data.schema import BadSample, Skipped, X2ISample, check_family_inputs
from omnigen.data.sources.base import Source, read_error

log = logging.getLogger(__name__)
LOGGED_SKIPS = 20  # per worker, each skip is logged up to here, then every 1000th; also the messages kept
COUNTS_ONLY = "counts_only"  # the key of an item that holds data_stats and no samples
STATS_FLUSH_RECORDS = 1000  # records in a row without a usable sample, after which their counts travel alone


@dataclass
class FamilyStream:
    """The records of one task family: its sources, read in turn, checked against the family."""

    family: str
    sources: list[Source]
    few_shot: EpisodeBuilder | None = None

    def records(
        self, part: int, num_parts: int, epoch: int, shuffle: bool, seed: int, stats: Counter[str]
    ) -> Iterator[X2ISample | Skipped]:
        def checked() -> Iterator[X2ISample | Skipped]:
            for source in self.sources:
                for record in source.read(part, num_parts, epoch, shuffle, seed):
                    yield record if isinstance(record, Skipped) else self.check(record, source)

        yield from self.few_shot(checked(), stats) if self.few_shot is not None else checked()

    def check(self, sample: X2ISample, source: Source) -> X2ISample | Skipped:
        if self.few_shot is None and sample.family != self.family:
            raise ValueError(
                f"source {source.name!r} gives {sample.family!r} samples ({sample.key}) to the "
                f"{self.family!r} DataModule: give it to that family's DataModule, or set its family"
            )
        try:  # few-shot examples and queries keep their own family, and so its input counts
            check_family_inputs(sample)
        except BadSample as bad:
            return bad.skipped()
        return sample


class X2IStream(IterableDataset):
    def __init__(
        self,
        families: dict[str, FamilyStream],
        ratios: dict[str, float] | None,
        batch_size: int,
        resolution: Resolution,
        shuffle: bool = True,
        seed: int = 0,
        on_bad: str = "skip",
        checker: Callable[[X2ISample], None] | None = None,
        curriculum: Curriculum | None = None,
        mixed_sizes: bool = False,
    ) -> None:
        if on_bad not in ("skip", "error"):
            raise ValueError(f"on_bad must be 'skip' or 'error', got {on_bad!r}")
        if ratios is not None and set(ratios) != set(families):
            raise ValueError(f"mixture ratios {sorted(ratios)} must name the families {sorted(families)}")
        if ratios is not None and (min(ratios.values()) < 0 or sum(ratios.values()) <= 0):
            raise ValueError(f"mixture ratios must be >= 0 with a positive sum, got {ratios}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.families, self.ratios, self.batch_size = families, ratios, batch_size
        self.resolution, self.shuffle, self.seed, self.on_bad, self.checker = resolution, shuffle, seed, on_bad, checker
        self.mixed_sizes = mixed_sizes  # batches take samples of any output size (training packs them)
        self.rank, self.world_size = 0, 1  # set by the DataModule before the loader starts
        self.epoch = 0  # advanced by each pass in this process (persistent workers keep theirs)
        # With a curriculum, batch b (counted from `start_batch`) takes the stage of optimizer step
        # b // accumulate: its batch size, image size and task mix.
        self.curriculum, self.accumulate, self.start_batch = curriculum, 1, 0
        self.base_resolution, self.current_batch_size, self.current_ratios = resolution, batch_size, ratios

    def enter_stage(self, batch_index: int) -> int:
        """Set batch size, resolution and mix for loader batch `batch_index`; returns the stage index."""
        if self.curriculum is None:
            return 0
        index = self.curriculum.index_at(batch_index // self.accumulate)
        stage = self.curriculum.stages[index]
        self.current_batch_size = stage.batch_size
        self.resolution = replace(
            self.base_resolution, size=stage.image_size, mode=stage.resolution_mode or self.base_resolution.mode
        )
        if stage.mix is not None:
            if self.ratios is None or set(stage.mix) != set(self.ratios):
                raise ValueError(
                    f"stage {index} mix {sorted(stage.mix)} must name the mixture's families "
                    f"{sorted(self.ratios or {})}"
                )
            self.current_ratios = stage.mix
        else:
            self.current_ratios = self.ratios
        return index

    def __iter__(self) -> Iterator[dict]:
        worker = get_worker_info()
        # The loader takes batches from its workers in turn: worker w's j-th batch is loader batch j·W + w.
        worker_id, num_workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        part, num_parts = self.rank * num_workers + worker_id, self.world_size * num_workers
        epoch, self.epoch = self.epoch, self.epoch + 1
        stats: Counter[str] = Counter()
        messages: list[str] = []
        buckets: dict[tuple[int, int] | None, list[X2ISample]] = {}  # by output size, or one when mixed
        ready: list[X2ISample] | None = None  # a full batch held back one step, so counts read after it ride along
        formed = 0
        stage = self.enter_stage(self.start_batch + worker_id)
        for sample in self.samples(part, num_parts, epoch, stats, messages):
            if sample is None:  # many records in a row and none usable: their counts go now
                yield counts_only(stats, messages)
                continue
            key = None if self.mixed_sizes else sample.output_image.size
            bucket = buckets.setdefault(key, [])
            bucket.append(sample)
            if len(bucket) == self.current_batch_size:
                if ready is not None:
                    yield self.batch(ready, stats, messages)
                ready = buckets.pop(key)
                formed += 1
                if (next_stage := self.enter_stage(self.start_batch + formed * num_workers + worker_id)) != stage:
                    # Samples already sized for the stage that ended: counted, not trained on.
                    stats["curriculum_leftover"] += sum(len(b) for b in buckets.values())
                    buckets, stage = {}, next_stage
        # The held batch, then the epoch's remainders as smaller batches: nothing is dropped.
        for samples in ([ready] if ready is not None else []) + list(buckets.values()):
            yield self.batch(samples, stats, messages)
        if stats:  # read after the last batch, or a part without a single usable sample
            yield counts_only(stats, messages)

    def batch(self, samples: list[X2ISample], stats: Counter[str], messages: list[str]) -> dict:
        return collate_samples(samples, self.mixed_sizes) | {"data_stats": counts_only(stats, messages)["data_stats"]}

    def samples(
        self, part: int, num_parts: int, epoch: int, stats: Counter[str], messages: list[str]
    ) -> Iterator[X2ISample | None]:
        """Records -> usable samples; skips are counted in `stats` (and raised with on_bad='error').
        Yields None after each STATS_FLUSH_RECORDS records in a row without a usable sample."""
        skipped = unusable = 0
        for name, record in self.records(part, num_parts, epoch, stats):
            if isinstance(record, X2ISample):
                try:
                    sample = self.resolution.apply(record)
                    if self.checker is not None:
                        self.checker(sample)
                except BadSample as error:
                    record = error.skipped()
                except Exception as error:  # noqa: BLE001 - one record's failure must not stop the loader
                    record = read_error(record.key, error, "resizing and tokenising the record")
            if isinstance(record, Skipped):
                if self.on_bad == "error":
                    raise BadSample(record.reason, record.key, f"{record.message} ({on_bad_hint(record.reason)})")
                stats[f"skipped_{record.reason}"] += 1
                messages.append(record.message)
                del messages[:-LOGGED_SKIPS]  # the latest are the ones reported
                skipped += 1
                if skipped <= LOGGED_SKIPS or skipped % 1000 == 0:
                    log.warning("skipped (%s, %d so far in part %d): %s", record.reason, skipped, part, record.message)
                unusable += 1
                if unusable % STATS_FLUSH_RECORDS == 0:
                    yield None
                continue
            unusable = 0
            stats["samples"] += 1
            stats[f"family/{name}"] += 1
            for note in sample.notes:
                stats[f"converted_{note}"] += 1
            yield sample

    def records(
        self, part: int, num_parts: int, epoch: int, stats: Counter[str]
    ) -> Iterator[tuple[str, X2ISample | Skipped]]:
        """(family name, record) pairs of this part."""
        if self.ratios is None:  # one family: one pass over its records is the epoch
            for name, family in self.families.items():
                for record in family.records(part, num_parts, epoch, self.shuffle, self.seed, stats):
                    yield name, record
            return
        names = list(self.ratios)
        rng = np.random.default_rng([self.seed, part, epoch])
        passes = dict.fromkeys(names, epoch)
        streams = {n: self.families[n].records(part, num_parts, epoch, self.shuffle, self.seed, stats) for n in names}
        while True:  # a mixture is endless: Lightning's max_steps ends it
            p = np.asarray(
                [self.current_ratios[n] for n in names], dtype=np.float64
            )  # a curriculum stage may change it
            name = names[int(rng.choice(len(names), p=p / p.sum()))]
            record = next(streams[name], None)
            if record is None:  # this family's part ran out: its next pass
                passes[name] += 1
                streams[name] = self.families[name].records(
                    part, num_parts, passes[name], self.shuffle, self.seed, stats
                )
                record = next(streams[name], None)
                if record is None:
                    raise ValueError(
                        f"family {name!r} has no records in part {part} of {num_parts} (ranks × workers): "
                        "give it more data or shards, or fewer workers"
                    )
            yield name, record


def counts_only(stats: Counter[str], messages: list[str]) -> dict:
    """An item with the counts and messages read so far and no samples (both are emptied)."""
    item = {COUNTS_ONLY: True, "data_stats": {"counts": dict(stats), "messages": list(messages)}}
    stats.clear()
    messages.clear()
    return item


def on_bad_hint(reason: str) -> str:
    if reason == "wrong_family":
        return "data.on_bad=error stops at the first record this DataModule cannot use"
    return "data.on_bad=error; 'skip' counts and skips bad records"
