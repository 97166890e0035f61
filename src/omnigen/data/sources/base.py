"""The Source interface every X2I data set implements, and the pieces sources share.

A source yields `X2ISample`s that passed `schema.validate`, or a `Skipped` record for a bad input,
and never raises mid-stream for one bad record: the consumer counts skips by reason and decides
when there are too many. Configuration problems (a missing file, no shards, a part out of range)
raise when the source is built or when `read` starts.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np
from PIL import Image

from omnigen.data.schema import BadSample, Skipped, X2ISample, validate


class Source(ABC):
    """A data set read in disjoint parts: part p of n yields records i with i % n == p of this epoch's order,
    so ranks × workers together read every record exactly once per epoch."""

    name: str  # for messages and logging

    @abstractmethod
    def read(self, part: int = 0, num_parts: int = 1, epoch: int = 0, shuffle: bool = False,
             seed: int = 0) -> Iterator[X2ISample | Skipped]:
        """Part `part` of `num_parts` of epoch `epoch`'s records (in a seeded shuffled order if `shuffle`).

        The order depends only on (seed, epoch), never on the part, so the parts of one epoch are
        disjoint and together cover every record; a typical split is part = rank * workers + worker,
        num_parts = world_size * workers.
        """

    def __len__(self) -> int:
        """Number of records, where known (a `Skipped` counts as a record)."""
        raise TypeError(f"{self.name}: the number of records is not known")

    def __bool__(self) -> bool:  # else `if source:` would call __len__, which may raise
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class IndexedSource(Source):
    """A source with random access to record i < len(self); `read` walks a (shuffled) index order."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def get(self, index: int) -> X2ISample | Skipped:
        """Record `index` (0-based), validated, or why it was skipped."""

    def read(self, part: int = 0, num_parts: int = 1, epoch: int = 0, shuffle: bool = False,
             seed: int = 0) -> Iterator[X2ISample | Skipped]:
        check_part(part, num_parts, self.name)
        for index in epoch_order(len(self), epoch, shuffle, seed)[part::num_parts]:
            yield self.get(int(index))


def check_part(part: int, num_parts: int, name: str) -> None:
    if num_parts < 1 or not 0 <= part < num_parts:
        raise ValueError(f"{name}: part must be in [0, num_parts) with num_parts >= 1, got part={part}, "
                         f"num_parts={num_parts}")


def epoch_order(length: int, epoch: int, shuffle: bool, seed: int) -> np.ndarray:
    """Record order of one epoch: 0..length-1, or a permutation seeded by (seed, epoch) alone
    (not by the part), so every part of the epoch slices the same order."""
    if not shuffle:
        return np.arange(length, dtype=np.int64)
    return np.random.default_rng([seed, epoch]).permutation(length)


def decode_image(data: bytes, key: str, what: str) -> Image.Image:
    """Decode image bytes fully (so truncated files fail here, not later), or raise BadSample."""
    if len(data) == 0:
        # PIL refuses to open any image with a zero side, so an empty file is the empty image a source sees.
        raise BadSample("empty_image", key, f"{what} is an empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as error:  # noqa: BLE001 - decoders of untrusted bytes raise many types; all mean corrupt
        raise BadSample("corrupt_image", key, f"{what} cannot be decoded: {type(error).__name__}: {error}") from None
    return image


def checked(sample: X2ISample) -> X2ISample | Skipped:
    """`validate(sample)`, or the Skipped record saying why it failed."""
    try:
        return validate(sample)
    except BadSample as bad:
        return bad.skipped()
    except (OSError, ValueError) as error:  # a mode PIL cannot convert to RGB
        return Skipped("corrupt_image", sample.key, f"{sample.key}: cannot convert an image to RGB: {error}")
