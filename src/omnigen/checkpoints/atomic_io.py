"""Atomic checkpoint files and directories: a kill during a save never leaves one that loads wrong.

`atomic_directory` does the same for a directory (exports, LoRA adapters, converted models).

`AtomicCheckpointIO` (configured in every `configs/trainer/*.yaml` under `plugins:`) writes a
checkpoint to a hidden temporary file in the target's directory, flushes and fsyncs it, then
`os.replace`s it over the target (atomic on POSIX file systems) and fsyncs the directory. A reader,
or a run relaunched after a crash, sees either the previous complete file or the new complete
file. A temporary left behind by a killed process is removed by the next save into that directory
(only one process, global rank 0, ever writes a checkpoint file there). A sharded checkpoint (trainer=fsdp
with save_distributed_checkpoint=true) is a directory every rank writes into: it is filled under a temporary
name the same way and put in place by `replace_path` (omnigen.training.distributed).

Remote paths (`s3://`, `gs://`, ...) go through Lightning's own fsspec writer, which is already
all-or-nothing on object stores.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins import TorchCheckpointIO

from omnigen.utils.cli import OutputExists

TEMP_SUFFIX = ".omnigen-tmp"  # never `.ckpt`: Lightning's `ckpt_path=last` search must not pick a temporary
OLD_SUFFIX = f".old{TEMP_SUFFIX}"  # a previous version moved aside by `replace_path`


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (best effort: not every OS or file system allows it)."""
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete temporaries of interrupted saves in `directory` (files, or the directories of sharded
    checkpoints); returns what it removed. A previous version that `replace_path` had moved aside when the
    save was killed between its two renames goes back where it was."""
    removed = []
    for stale in directory.glob(f".*{TEMP_SUFFIX}"):
        target = directory / stale.name[1 : -len(OLD_SUFFIX)] if stale.name.endswith(OLD_SUFFIX) else None
        if target is not None and not target.exists():
            os.replace(stale, target)
            continue
        with suppress(FileNotFoundError):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
            removed.append(stale)
    return removed


def replace_path(new: Path, path: Path) -> None:
    """Put the complete file or directory `new` at `path`, replacing what is there. A directory cannot be
    renamed over another, so the old one is moved aside first; a kill between the two renames leaves it
    aside, and the next `remove_stale_temporaries` puts it back."""
    old = path.parent / f".{path.name}{OLD_SUFFIX}"
    if path.exists():
        os.replace(path, old)
    os.replace(new, path)
    fsync_directory(path.parent)
    if old.is_dir():
        shutil.rmtree(old)
    elif old.exists():
        old.unlink()


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """`torch.save(obj, path)` that replaces `path` only once the new file is complete and on disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    tmp = path.parent / f".{path.name}.{os.getpid()}{TEMP_SUFFIX}"
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt included: leave no temporary behind when we can
        with suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_directory(path.parent)


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local saves are atomic (temporary file + fsync + os.replace)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options, got {storage_options!r}")
        if not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path)
            return
        atomic_torch_save(checkpoint, path)


@contextmanager
def atomic_directory(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `out_dir` to fill; it replaces `out_dir` only when the
    block succeeds, so an interrupted write never leaves a half-written directory."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise OutputExists(f"{out_dir} exists; choose another directory or pass overwrite=True (CLI: --overwrite)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield tmp
        replace_path(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
