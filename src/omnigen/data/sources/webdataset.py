"""Webdataset tar shards (as `omnigen.data.write_shards` writes them) as a Source.

Shard format: per record `key` (no dots), the members
    {key}.json          {"instruction", "family", "task", "spec", "edit_source", "num_inputs", "source_key", "notes"}
    {key}.output.png    the output image
    {key}.input_0.png   input image 1 (placeholder <|image_1|>), {key}.input_1.png, ...
Other image extensions (jpg, jpeg, webp) are read too. Record keys are "<shard file name>:<key>", followed by
" (from <source_key>)" once the record's json names where pack read it. Images pass the same checks as a
JSONL source's (size limit from the header, allowed formats); a member over MAX_MEMBER_BYTES is not read.

Parts split by SHARD: part p reads the shards j with j % num_parts == p of the epoch's shard order, so
balance across parts needs at least as many shards as parts (ideally many more); a part with no shard
yields nothing (a warning says so).
"""

from __future__ import annotations

import glob
import json
import os
import re
import tarfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import webdataset
from webdataset.shardlists import expand_urls

from omnigen.data.schema import MAX_IMAGE_PIXELS, BadSample, Skipped, X2ISample
from omnigen.data.sources.base import Source, check_part, checked, decode_image, parse_json_object, read_error

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp")
INDEX_FILE = "index.json"  # pack's record counts per shard, next to the shards
MAX_MEMBER_BYTES = 256 * 2**20  # a tar member over this is not read into memory
_MEMBER = re.compile(r"^((?:.*/)?[^./]+)\.(.+)$")  # "dir/key.input_0.png" -> ("dir/key", "input_0.png")


@dataclass
class _Raw:
    """One record's undecoded members, or the tar error that cut it short."""

    shard: str
    key: str
    members: dict[str, bytes] = field(default_factory=dict)
    oversized: list[str] = field(default_factory=list)  # members left unread, over MAX_MEMBER_BYTES
    error: Skipped | None = None


class WebDatasetSource(Source):
    """`urls`: a brace pattern ("data/shard-{000000..000009}.tar"), a glob of local paths, a "::"-joined
    string or a list of any of these; entries may be local paths or anything webdataset's gopen opens
    (http(s) URLs, "pipe:cat data/shard-000000.tar", ...).

    `shuffle_buffer`: with `read(shuffle=True)`, records of a part also pass through a buffer of this many
    undecoded records, drawn from with an rng seeded by (seed, epoch, part), so shards of one task still mix.
    """

    def __init__(
        self,
        urls: str | list[str],
        name: str | None = None,
        shuffle_buffer: int = 100,
        max_image_pixels: int | None = MAX_IMAGE_PIXELS,
    ) -> None:
        self.urls = _expand(urls)
        self.name = name or (
            _shard_name(self.urls[0])
            if len(self.urls) == 1
            else f"{_shard_name(self.urls[0])}..({len(self.urls)} shards)"
        )
        if max_image_pixels is not None and max_image_pixels < 1:
            raise ValueError(f"max_image_pixels must be >= 1 or null (no limit), got {max_image_pixels}")
        self.shuffle_buffer, self.max_image_pixels = shuffle_buffer, max_image_pixels

    def __len__(self) -> int:
        """The record count from pack's index.json files, when every shard is local and indexed with its
        current size; otherwise TypeError (streams have no length)."""
        total, indexes = 0, {}
        for url in self.urls:
            path = _local_path(url)
            if path is None:
                raise TypeError(f"{self.name}: record count unknown for non-local shard {url!r}")
            directory = os.path.dirname(os.path.abspath(path))
            if directory not in indexes:
                indexes[directory] = read_index(directory)
            entry = indexes[directory].get(os.path.basename(path))
            if entry is None or entry.get("bytes") != os.path.getsize(path):
                raise TypeError(
                    f"{self.name}: record count unknown: {path} is not in {directory}/{INDEX_FILE} "
                    f"(or was rewritten since)"
                )
            total += int(entry["count"])
        return total

    def read(
        self, part: int = 0, num_parts: int = 1, epoch: int = 0, shuffle: bool = False, seed: int = 0
    ) -> Iterator[X2ISample | Skipped]:
        check_part(part, num_parts, self.name)
        order = np.random.default_rng([seed, epoch]).permutation(len(self.urls)) if shuffle else range(len(self.urls))
        mine = [self.urls[int(j)] for j in order][part::num_parts]
        if not mine:
            warnings.warn(
                f"{self.name}: part {part} of {num_parts} gets no shard ({len(self.urls)} shards); "
                f"write at least as many shards as ranks × workers",
                stacklevel=2,
            )
        raws = (raw for url in mine for raw in _records(url))
        if shuffle and self.shuffle_buffer > 1:
            raws = _buffer_shuffle(raws, self.shuffle_buffer, np.random.default_rng([seed, epoch, part]))
        for raw in raws:
            yield raw.error if raw.error is not None else _decode(raw, self.max_image_pixels)


def _expand(urls: str | list[str]) -> list[str]:
    """Brace / "::" expansion for strings, then globbing for local entries with wildcards."""
    expanded = [u for entry in ([urls] if isinstance(urls, str) else list(urls)) for u in expand_urls(entry)]
    result: list[str] = []
    for url in expanded:
        path = _local_path(url)
        if path is not None and glob.has_magic(path):
            matches = sorted(glob.glob(path))
            if not matches:
                raise FileNotFoundError(f"no shards match {url!r}")
            result.extend(matches)
        else:
            result.append(url)
    if not result:
        raise ValueError(f"no shards in {urls!r}")
    missing = [u for u in result if (p := _local_path(u)) is not None and not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} shard(s) not found, e.g. {missing[:3]}")
    return result


def _local_path(url: str) -> str | None:
    parsed = urlparse(url)
    if parsed.scheme == "":
        return url
    if parsed.scheme == "file":
        return parsed.path
    return None


def _shard_name(url: str) -> str:
    # "pipe:cat /data/shard-000003.tar" -> "shard-000003.tar": keys stay short and name the shard.
    return os.path.basename(url.split()[-1].rstrip("/")) if url.startswith("pipe:") else os.path.basename(url)


def _records(url: str) -> Iterator[_Raw]:
    """Records of one shard in tar order, members grouped by key (pack writes a record's members together)."""
    try:
        stream = webdataset.gopen(url, "rb")
    except OSError as error:
        raise OSError(f"cannot open shard {url!r}: {error}") from error
    finished = False
    try:
        yield from _tar_records(stream, _shard_name(url))
        finished = True
    finally:
        try:
            stream.close()
        except OSError:
            if finished:  # a failed "pipe:" command; a reader stopped early may see SIGPIPE-like exits
                raise


def _tar_records(stream: Any, shard: str) -> Iterator[_Raw]:
    """A shard that is not a tar, or is cut inside a member, ends in a Skipped; a cut between members reads
    as a complete tar (tarfile cannot tell), and then the last record fails its member checks instead."""
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")  # noqa: SIM115 - `with tar` below; a stream: pipes and URLs too
    except Exception as error:  # noqa: BLE001 - tarfile, gzip, zlib and the stream each raise their own
        yield _Raw(
            shard,
            "",
            error=Skipped("bad_json", shard, f"{shard}: not a readable tar shard: {type(error).__name__}: {error}"),
        )
        return
    current: _Raw | None = None
    name = ""
    with tar:
        try:
            for info in tar:
                name = info.name
                match = _MEMBER.match(name)
                if not info.isreg() or match is None or os.path.basename(name).startswith("__"):
                    continue
                key, suffix = match.group(1), match.group(2).lower()
                if current is None or key != current.key or suffix in current.members:
                    if current is not None:
                        yield current
                    current = _Raw(shard, key)
                if info.size > MAX_MEMBER_BYTES:  # not read: the record fails its checks without it
                    current.oversized.append(f"{os.path.basename(name)} ({info.size} bytes)")
                    continue
                extracted = tar.extractfile(info)
                current.members[suffix] = extracted.read() if extracted is not None else b""
        except Exception as error:  # noqa: BLE001 - tarfile, gzip, zlib and the stream each raise their own
            # The record being read when the data ran out (its members so far are not used).
            current = current or _Raw(shard, name)
            reason = "corrupt_image" if name.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS else "bad_json"
            current.error = Skipped(
                reason,
                f"{shard}:{current.key}",
                f"{shard}:{current.key}: shard is truncated "
                f"or corrupt at member {name!r}: {type(error).__name__}: {error}; the rest of the shard is not read",
            )
    if current is not None:
        yield current


def _buffer_shuffle(items: Iterator[_Raw], size: int, rng: np.random.Generator) -> Iterator[_Raw]:
    buffer: list[_Raw] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = int(rng.integers(size))
        buffer[j], item = item, buffer[j]
        yield item
    for j in rng.permutation(len(buffer)):
        yield buffer[int(j)]


def _decode(raw: _Raw, max_pixels: int | None) -> X2ISample | Skipped:
    key = f"{raw.shard}:{raw.key}"
    try:
        if raw.oversized:
            raise BadSample(
                "image_too_large", key, f"member(s) over {MAX_MEMBER_BYTES} bytes, not read: {', '.join(raw.oversized)}"
            )
        if "json" not in raw.members:
            raise BadSample("bad_json", key, f"no {raw.key}.json member")
        meta = parse_json_object(raw.members["json"], key, f"{raw.key}.json")
        if isinstance(meta.get("source_key"), str):  # where pack read it: messages name both
            key = f"{key} (from {meta['source_key']})"
        for name, kind in (("instruction", str), ("family", str), ("task", str), ("num_inputs", int)):
            if not isinstance(meta.get(name), kind):
                raise BadSample(
                    "bad_json", key, f"{raw.key}.json field {name!r} must be a {kind.__name__}, got {meta.get(name)!r}"
                )
        edit_source, notes = meta.get("edit_source"), meta.get("notes") or []
        if edit_source is not None and not isinstance(edit_source, int):
            raise BadSample("bad_json", key, f"{raw.key}.json field 'edit_source' must be an int or null")
        if not isinstance(notes, list):
            raise BadSample("bad_json", key, f"{raw.key}.json field 'notes' must be a list")
        num_inputs = meta["num_inputs"]
        extra = sorted(s for s in raw.members if s.startswith("input_") and _input_number(s) >= num_inputs)
        if extra:
            raise BadSample("image_count", key, f"num_inputs={num_inputs} but the shard also holds {extra}")
        sample = X2ISample(
            instruction=meta["instruction"],
            input_images=[_image(raw, f"input_{i}", key, max_pixels) for i in range(num_inputs)],
            output_image=_image(raw, "output", key, max_pixels),
            family=meta["family"],
            task=meta["task"],
            key=key,
            spec=meta.get("spec"),
            edit_source=edit_source,
            notes=[str(n) for n in notes],
        )
    except BadSample as bad:
        return bad.skipped()
    except Exception as error:  # noqa: BLE001 - one record's failure, whatever it is, must not stop the loader
        return read_error(key, error)
    return checked(sample)


def _input_number(suffix: str) -> int:
    head = suffix.split(".", 1)[0][len("input_") :]
    return int(head) if head.isdigit() else -1


def _image(raw: _Raw, stem: str, key: str, max_pixels: int | None) -> Any:
    for extension in IMAGE_EXTENSIONS:
        if (data := raw.members.get(f"{stem}.{extension}")) is not None:
            return decode_image(data, key, f"member {raw.key}.{stem}.{extension}", max_pixels)
    raise BadSample("missing_image", key, f"no {raw.key}.{stem}.png member")


def read_index(directory: str | Path) -> dict[str, dict[str, int]]:
    """pack's {shard file name: {"count": records, "bytes": file size}} for a directory ({} when absent)."""
    path = Path(directory) / INDEX_FILE
    try:
        return json.loads(path.read_text())["shards"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
