"""What an omnigen checkpoint says about itself (format 1), and reading one back.

A Lightning checkpoint keeps, under `CHECKPOINT_KEY`, the description `describe` builds plus the
tokenizer's files; an exported directory keeps the same description in `EXPORT_CONFIG` beside its
weights and tokenizer (omnigen.checkpoints.native). The description's `model_config` names classes by
import path (`_target_`), so a class that moves would break old checkpoints: `current_targets` maps the
paths of earlier layouts to today's.

`check_path` says what a path is before anything is loaded (an omnigen checkpoint file or exported
directory, or else: missing, an OmniGen-v1 release, a diffusers export, another directory) and raises a
`CheckpointError` naming the path and the fix for everything omnigen cannot load; `read_checkpoint`
and `read_export_config` do the same for what the file turns out to hold (corrupt, truncated, another
program's). This module imports nothing of omnigen but utils.cli's error types and the sharded-checkpoint
reader, so the module and the fine-tuning code can use it without an import cycle.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from omnigen.checkpoints.sharded import META_FILE, is_sharded_checkpoint, read_sharded
from omnigen.utils.cli import UserError, missing_path

if TYPE_CHECKING:
    from omnigen.module import OmniGenLitModule

CHECKPOINT_KEY = "omnigen"  # where a checkpoint keeps its own description
CHECKPOINT_FORMAT = 1
EXPORT_CONFIG, EXPORT_WEIGHTS, EXPORT_TOKENIZER = "omnigen_config.json", "model.safetensors", "tokenizer"
RELEASE_CONFIG, RELEASE_WEIGHTS = "config.json", ("model.safetensors", "model.pt")  # an OmniGen-v1 release
# What `python -m omnigen.convert to-diffusers` writes (omnigen.checkpoints.diffusers): any of these marks one.
DIFFUSERS_MARKERS = ("model_index.json", "transformer/config.json", "diffusion_pytorch_model.safetensors")
# ckpt_path values Lightning resolves itself (Trainer.fit), not paths.
LIGHTNING_CKPT_PATHS = ("last", "best", "hpc", "registry")
WHAT_LOADS = "pass a .ckpt written by omnigen.fit or an exported directory (with omnigen_config.json)"
WHAT_RESUMES = "ckpt_path takes a .ckpt written by omnigen.fit (or `last`: this run directory's last.ckpt)"
# Modules that moved since format-1 checkpoints were first written (issue 16's layout): old path -> new.
MOVED_MODULES = {
    "omnigen.optim": "omnigen.training.optim",
    "omnigen.finetune": "omnigen.training.finetune",
    "omnigen.curriculum": "omnigen.data.curriculum",
    "omnigen.release": "omnigen.checkpoints.release_layout",
}


def describe(module: OmniGenLitModule) -> dict[str, Any]:
    """The module's self-description: enough, with its weights and tokenizer, to rebuild it."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model_config": module.architecture_config(),
        "run_config": module.run_config,
        "global_step": module.steps_trained,
    }


class CheckpointError(UserError):
    """A path omnigen cannot load as a checkpoint; the message names it, says what it is and what to do."""


class CorruptCheckpoint(CheckpointError):
    """A file or exported directory that cannot be read: truncated, damaged or half-copied."""


def check_path(path: str | Path, expected: str = WHAT_LOADS) -> str:
    """Whether `path` may be an omnigen checkpoint: "file" (to read as one), "sharded" (a sharded checkpoint
    directory) or "export" (an exported directory). Any other path raises the CheckpointError (or MissingPath)
    saying what it is and, with `expected`, what to pass instead. Nothing is loaded."""
    path = Path(path)
    kind = path_kind(path)
    if kind == "file" and path.suffix != ".ckpt" and path_kind(path.parent) in ("release", "diffusers"):
        path, kind = path.parent, path_kind(path.parent)  # a weights file inside a release or an export
    if kind in ("file", "export", "sharded"):
        return kind
    if kind == "missing":
        raise missing_path(path, expected)
    if kind == "release":
        raise CheckpointError(
            f"{path} is an OmniGen-v1 release directory, not an omnigen checkpoint: convert it once with "
            f"`python -m omnigen.convert from-release {path} OUT_DIR` and pass OUT_DIR"
        )
    if kind == "diffusers":
        raise CheckpointError(
            f"{path} is a diffusers export (what `python -m omnigen.convert to-diffusers` writes): load it with "
            f"diffusers' OmniGenPipeline.from_pretrained; {expected}"
        )
    inside = sorted(path.glob("*.ckpt"), key=lambda p: (p.name != "last.ckpt", p.name))
    hint = f" (did you mean {inside[0]}?)" if inside else f": {expected}"
    raise CheckpointError(f"{path} is a directory without {EXPORT_CONFIG}, not an exported checkpoint{hint}")


def path_kind(path: Path) -> str:
    """What `path` is from its name and listing: missing, file, sharded, export, release, diffusers or directory."""
    if not path.exists():
        return "missing"
    if not path.is_dir():
        return "file"
    if is_sharded_checkpoint(path):
        return "sharded"
    if (path / EXPORT_CONFIG).is_file():
        return "export"
    if (path / RELEASE_CONFIG).is_file() and any((path / name).is_file() for name in RELEASE_WEIGHTS):
        return "release"
    if any((path / marker).is_file() for marker in DIFFUSERS_MARKERS):
        return "diffusers"
    return "directory"


def check_format(meta: Any, path: Path, expected: str = WHAT_LOADS) -> None:
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{path} has no '{CHECKPOINT_KEY}' section (it was not written by omnigen.fit), so nothing says how "
            f"to rebuild its model; {expected}"
        )
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} has checkpoint format {meta.get('format')}, this omnigen reads {CHECKPOINT_FORMAT}: "
            "load it with the omnigen version that wrote it"
        )


def read_checkpoint(path: str | Path, expected: str = WHAT_LOADS) -> dict[str, Any]:
    """A Lightning checkpoint file of omnigen's format (tensors and plain data only: weights_only; the
    tensors memory-mapped, so a check or a load reads only what it uses), or a sharded checkpoint directory
    consolidated into the same dict (omnigen.checkpoints.sharded)."""
    path = Path(path)
    kind = check_path(path, expected)
    if kind == "sharded":  # consolidated in memory
        checkpoint = read_sharded(path)
        check_format(checkpoint.get(CHECKPOINT_KEY), path, expected)
        return checkpoint
    if kind != "file":
        raise CheckpointError(f"{path} is an exported directory, not a checkpoint file: pass a .ckpt")
    if is_safetensors(path):
        raise CheckpointError(f"{path} is a safetensors file: bare weights, no config to rebuild the model; {expected}")
    if not zipfile.is_zipfile(path):  # torch.save's archive; a cut-off copy loses its directory at the end
        raise CorruptCheckpoint(
            f"{path} is truncated or corrupt (not a complete torch archive): copy it again or use another "
            "checkpoint of the run"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
    ) as error:  # torch's reader on bad bytes
        # weights_only refuses a pickled object that is not plain data by naming its class; any other
        # unpickling error is a damaged stream
        if found := re.search(r"Unsupported global: GLOBAL (\S+)", str(error)):
            raise CheckpointError(
                f"{path} holds a pickled {found[1]}, and omnigen loads tensors and plain data only: it was not "
                f"written by omnigen.fit; {expected}"
            ) from error
        raise CorruptCheckpoint(
            f"{path} is truncated or corrupt (torch.load raised {type(error).__name__}): copy it again or use "
            "another checkpoint of the run"
        ) from error
    check_format(checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None, path, expected)
    return checkpoint


def is_safetensors(path: Path) -> bool:
    """Whether `path` starts as a safetensors file does: an 8-byte header length, then a JSON object."""
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def read_export_config(path: str | Path) -> dict[str, Any]:
    """The description an exported directory keeps in omnigen_config.json, checked."""
    path = Path(path)
    if check_path(path) != "export":
        raise CheckpointError(f"{path} is a checkpoint file, not an exported directory")
    if missing := [name for name in (EXPORT_WEIGHTS, EXPORT_TOKENIZER) if not (path / name).exists()]:
        raise CorruptCheckpoint(f"{path} is an incomplete export: no {' or '.join(missing)} beside {EXPORT_CONFIG}")
    try:
        meta = json.loads((path / EXPORT_CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptCheckpoint(f"{path / EXPORT_CONFIG} is not valid JSON ({error}): the export is corrupt") from error
    check_format(meta, path / EXPORT_CONFIG)
    return meta


def check_resume_checkpoint(ckpt_path: str | Path | None) -> None:
    """Fail fast, with the CheckpointError saying what it is, when fit's `ckpt_path` is not a checkpoint
    omnigen can resume from; None and the values Lightning resolves itself (`last`, ...) pass."""
    if ckpt_path is None or str(ckpt_path) in LIGHTNING_CKPT_PATHS or "://" in str(ckpt_path):
        return  # remote paths are Lightning's to fetch
    kind = check_path(ckpt_path, WHAT_RESUMES)
    if kind == "export":
        raise CheckpointError(
            f"{ckpt_path} is an exported directory (weights only): ckpt_path resumes a run from its .ckpt "
            "(weights, optimiser, step); start a new run from its weights with model.finetune.init_from=<dir>"
        )
    if kind == "sharded":  # its description alone: the shards are the strategy's
        meta = torch.load(Path(ckpt_path) / META_FILE, map_location="cpu", weights_only=True)
        check_format(meta.get(CHECKPOINT_KEY), Path(ckpt_path), WHAT_RESUMES)
        return
    read_checkpoint(ckpt_path, WHAT_RESUMES)


def current_targets(config: Any) -> Any:
    """`config` with every `_target_` under a moved module renamed to where it lives now."""
    if isinstance(config, dict):
        return {k: moved_target(v) if k == "_target_" else current_targets(v) for k, v in config.items()}
    if isinstance(config, list):
        return [current_targets(v) for v in config]
    return config


def moved_target(target: str) -> str:
    module, _, name = target.rpartition(".")
    return f"{MOVED_MODULES.get(module, module)}.{name}"
