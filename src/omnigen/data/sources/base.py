"""The Source interface every X2I data set implements, and the pieces sources share.

A source yields `X2ISample`s that passed `schema.validate`, or a `Skipped` record for a bad input,
and never raises mid-stream for one bad record: the consumer counts skips by reason and decides
when there are too many. Configuration problems (a missing file, no shards, a part out of range)
raise when the source is built or when `read` starts.
"""

from __future__ import annotations

import io
import json
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from omnigen.data.schema import MAX_IMAGE_PIXELS, BadSample, Skipped, X2ISample, validate


class Source(ABC):
    """A data set read in disjoint parts: part p of n yields records i with i % n == p of this epoch's order,
    so ranks × workers together read every record exactly once per epoch."""

    name: str  # for messages and logging

    @abstractmethod
    def read(
        self, part: int = 0, num_parts: int = 1, epoch: int = 0, shuffle: bool = False, seed: int = 0
    ) -> Iterator[X2ISample | Skipped]:
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

    def read(
        self, part: int = 0, num_parts: int = 1, epoch: int = 0, shuffle: bool = False, seed: int = 0
    ) -> Iterator[X2ISample | Skipped]:
        check_part(part, num_parts, self.name)
        for index in epoch_order(len(self), epoch, shuffle, seed)[part::num_parts]:
            yield self.get(int(index))


def check_part(part: int, num_parts: int, name: str) -> None:
    if num_parts < 1 or not 0 <= part < num_parts:
        raise ValueError(
            f"{name}: part must be in [0, num_parts) with num_parts >= 1, got part={part}, num_parts={num_parts}"
        )


def epoch_order(length: int, epoch: int, shuffle: bool, seed: int) -> np.ndarray:
    """Record order of one epoch: 0..length-1, or a permutation seeded by (seed, epoch) alone
    (not by the part), so every part of the epoch slices the same order."""
    if not shuffle:
        return np.arange(length, dtype=np.int64)
    return np.random.default_rng([seed, epoch]).permutation(length)


# What a source decodes: the formats of X2I data. Others (EPS, which runs Ghostscript; PSD; ...) are
# refused unread: decoding untrusted files in every format PIL knows widens what a bad file can reach.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")  # JPEG includes multi-picture (MPO) files
Image.init()  # registers every plugin: `Image.open(formats=...)` looks each name up before any lazy init


def decode_image(data: bytes | BinaryIO, key: str, what: str, max_pixels: int | None = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode image bytes (or an open file) fully, so truncated files fail here, not later, or raise BadSample.

    The size is read from the header and checked against `max_pixels` before any pixel is decoded."""
    file = io.BytesIO(data) if isinstance(data, bytes) else data
    start = file.tell()
    if not file.read(1):
        # PIL refuses to open any image with a zero side, so an empty file is the empty image a source sees.
        raise BadSample("empty_image", key, f"{what} is an empty file (0 bytes)")
    file.seek(start)
    try:
        with warnings.catch_warnings():  # the size limit is ours (below); PIL's own bomb error still applies
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(file, formats=IMAGE_FORMATS)  # reads the header only
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise BadSample(
                    "image_too_large",
                    key,
                    f"{what} is {image.width}×{image.height} = "
                    f"{image.width * image.height} pixels, over max_image_pixels={max_pixels} (not decoded)",
                )
            image.load()
    except BadSample:
        raise
    except Image.DecompressionBombError as error:
        raise BadSample("image_too_large", key, f"{what}: {error}") from None
    except UnidentifiedImageError:
        raise BadSample(
            "corrupt_image", key, f"{what} is not an image in a format read here ({', '.join(IMAGE_FORMATS)})"
        ) from None
    except Exception as error:  # noqa: BLE001 - decoders of untrusted bytes raise many types; all mean corrupt
        detail = str(error).replace(repr(file), "the file")  # PIL names the file object, not the file
        raise BadSample("corrupt_image", key, f"{what} cannot be decoded: {type(error).__name__}: {detail}") from None
    return image


def checked(sample: X2ISample) -> X2ISample | Skipped:
    """`validate(sample)`, or the Skipped record saying why it failed."""
    try:
        return validate(sample)
    except BadSample as bad:
        return bad.skipped()
    except (OSError, ValueError) as error:  # a mode PIL cannot convert to RGB
        return Skipped("corrupt_image", sample.key, f"{sample.key}: cannot convert an image to RGB: {error}")
    except Exception as error:  # noqa: BLE001 - one record's failure, whatever it is, must not stop the loader
        return read_error(sample.key, error, "validating the record")


def parse_json_object(text: bytes, key: str, what: str) -> dict[str, Any]:
    """A JSON object, strictly: not valid JSON, not an object, or a key given twice (json keeps the last
    silently, so a record would train on half of what it says) is a bad_json BadSample."""

    def no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for name, value in pairs:
            if name in seen:
                raise BadSample("bad_json", key, f"{what} gives the key {name!r} twice")
            seen[name] = value
        return seen

    try:
        value = json.loads(text, object_pairs_hook=no_repeats)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise BadSample("bad_json", key, f"{what} is not valid JSON: {type(error).__name__}: {error}") from None
    if not isinstance(value, dict):
        raise BadSample("bad_json", key, f"{what} is a JSON {type(value).__name__}, not an object")
    return value


def read_error(key: str, error: BaseException, doing: str = "reading the record") -> Skipped:
    """Any exception met while reading one record, as that record's skip (the loader keeps going)."""
    return Skipped("read_error", key, f"{key}: {type(error).__name__} while {doing}: {error}")
