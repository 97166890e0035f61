"""The released OmniGen JSONL format as a Source.

One JSON object per line:
    {"instruction": "<img><|image_1|></img> make it red", "input_images": ["a.png"], "output_image": "b.png"}
`input_images` may be empty or absent (text to image). Optional per-line `family` and `task` override the
source's; other fields (e.g. the release's free-form `task_type`) are ignored.

Image paths are resolved against `image_root` (by default the JSONL file's directory) and must stay inside
it once symlinks are followed: `../x.png`, an absolute path, or a link pointing out of the root is a skip
(`path_outside_root`) unless `allow_paths_outside_root`. Only regular files are opened (never a FIFO, a
device or a directory), and an image over `max_image_pixels` is skipped from its header, before decoding.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from omnigen.data.schema import MAX_IMAGE_PIXELS, TASKS, BadSample, Skipped, X2ISample, check_task
from omnigen.data.sources.base import (
    IndexedSource,
    check_part,
    checked,
    decode_image,
    epoch_order,
    parse_json_object,
    read_error,
)


class JsonlSource(IndexedSource):
    """Records are the non-blank lines of `path`; keys are "<file name>:<1-based line number>"."""

    def __init__(
        self,
        path: str | Path,
        image_root: str | Path | None = None,
        family: str = "mixed_modal",
        task: str | None = None,
        name: str | None = None,
        allow_paths_outside_root: bool = False,
        max_image_pixels: int | None = MAX_IMAGE_PIXELS,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"JSONL file {str(self.path)!r} does not exist or is not a file")
        self.image_root = Path(image_root) if image_root is not None else self.path.parent
        if not self.image_root.is_dir():
            raise NotADirectoryError(f"image root {str(self.image_root)!r} (for {self.path}) is not a directory")
        self.root = self.image_root.resolve()  # what every image path must resolve inside
        if max_image_pixels is not None and max_image_pixels < 1:
            raise ValueError(f"max_image_pixels must be >= 1 or null (no limit), got {max_image_pixels}")
        self.allow_paths_outside_root, self.max_image_pixels = allow_paths_outside_root, max_image_pixels
        self.name = name or self.path.name
        if family not in TASKS:
            raise ValueError(f"{self.name}: unknown family {family!r}; known: {', '.join(TASKS)}")
        if task is not None:
            try:
                check_task(family, task, self.name)
            except BadSample as bad:
                raise ValueError(str(bad)) from None
        self.family, self.task = family, task
        self.offsets, self.line_numbers = self._index()

    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        # Byte offsets of the non-blank lines, found once: __len__ and sharding by record index then need
        # no JSON held in memory (16 bytes per record), and any record is one seek away.
        offsets, numbers = [], []
        offset = 0
        with self.path.open("rb") as file:
            for number, line in enumerate(file, start=1):
                if line.strip():
                    offsets.append(offset)
                    numbers.append(number)
                offset += len(line)
        return np.asarray(offsets, dtype=np.int64), np.asarray(numbers, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.offsets)

    def get(self, index: int) -> X2ISample | Skipped:
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}: record {index} out of range [0, {len(self)})")
        with self.path.open("rb") as file:
            return self._record(file, index)

    def read(
        self, part: int = 0, num_parts: int = 1, epoch: int = 0, shuffle: bool = False, seed: int = 0
    ) -> Iterator[X2ISample | Skipped]:
        check_part(part, num_parts, self.name)
        with self.path.open("rb") as file:  # one handle for the whole part
            for index in epoch_order(len(self), epoch, shuffle, seed)[part::num_parts]:
                yield self._record(file, int(index))

    def _record(self, file: BinaryIO, index: int) -> X2ISample | Skipped:
        key = f"{self.name}:{self.line_numbers[index]}"
        file.seek(int(self.offsets[index]))
        try:
            return checked(self._parse(file.readline(), key))
        except BadSample as bad:
            return bad.skipped()
        except Exception as error:  # noqa: BLE001 - one record's failure, whatever it is, must not stop the loader
            return read_error(key, error)

    def _parse(self, line: bytes, key: str) -> X2ISample:
        record = parse_json_object(line, key, "line")
        instruction = _field(record, "instruction", str, key)
        output_path = _field(record, "output_image", str, key)
        input_paths = record.get("input_images")
        input_paths = [] if input_paths is None else input_paths
        if not isinstance(input_paths, list) or not all(isinstance(p, str) for p in input_paths):
            raise BadSample("bad_json", key, f"field 'input_images' must be a list of paths, got {input_paths!r}")
        family = _field(record, "family", str, key, default=self.family)
        task = _field(record, "task", str, key, default=self._default_task(family))
        check_task(family, task, key)  # before decoding any image: an unusable line costs no I/O
        return X2ISample(
            instruction=instruction,
            input_images=[self._image(p, key, f"input_images[{i}]") for i, p in enumerate(input_paths)],
            output_image=self._image(output_path, key, "output_image"),
            family=family,
            task=task,
            key=key,
        )

    def _default_task(self, family: str) -> str:
        if family == self.family and self.task is not None:
            return self.task
        tasks = TASKS.get(family, ())
        return tasks[0] if tasks else ""  # few_shot has no default: check_task names the problem

    def _image(self, relative: str, key: str, field: str) -> Any:
        what = f"{field} {relative!r}"
        try:
            path = (self.image_root / relative).resolve()  # symlinks followed: where the bytes really are
        except (OSError, RuntimeError, ValueError) as error:  # a link loop, a NUL byte in the path, ...
            raise BadSample("missing_image", key, f"{what} cannot be resolved: {error}") from None
        what = f"{what} ({path})"
        if not self.allow_paths_outside_root and not path.is_relative_to(self.root):
            raise BadSample(
                "path_outside_root",
                key,
                f"{field} {relative!r} resolves outside the image root "
                f"{str(self.root)!r} (allow_paths_outside_root=true reads it)",
            )
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):  # before the open: opening a FIFO blocks forever
                raise BadSample("not_a_file", key, f"{what} is not a regular file")
            # O_NONBLOCK: should the path be swapped for a FIFO after the check, the open still returns, and
            # fstat below refuses it. O_NOFOLLOW: the last component was resolved above, a new link is refused.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BadSample("missing_image", key, f"{what} does not exist") from None
        except OSError as error:  # no permission, a link swapped in, ...
            raise BadSample("missing_image", key, f"{what} cannot be read: {error}") from None
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise BadSample("not_a_file", key, f"{what} is not a regular file")
            return decode_image(file, key, what, self.max_image_pixels)


def _field(record: dict[str, Any], field: str, kind: type, key: str, default: Any = None) -> Any:
    value = record.get(field, default)
    if value is None:
        raise BadSample("bad_json", key, f"field {field!r} is missing")
    if not isinstance(value, kind):
        raise BadSample("bad_json", key, f"field {field!r} must be a {kind.__name__}, got {value!r}")
    return value
