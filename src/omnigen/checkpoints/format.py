"""What an omnigen checkpoint says about itself (format 1), and reading one back.

A Lightning checkpoint keeps, under `CHECKPOINT_KEY`, the description `describe` builds plus the
tokenizer's files; an exported directory keeps the same description in `EXPORT_CONFIG` beside its
weights and tokenizer (omnigen.checkpoints.native). The description's `model_config` names classes by
import path (`_target_`), so a class that moves would break old checkpoints: `current_targets` maps the
paths of earlier layouts to today's. This module imports nothing of omnigen, so the module and the
fine-tuning code can use it without an import cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from omnigen.module import OmniGenLitModule

CHECKPOINT_KEY = "omnigen"  # where a checkpoint keeps its own description
CHECKPOINT_FORMAT = 1
EXPORT_CONFIG, EXPORT_WEIGHTS, EXPORT_TOKENIZER = "omnigen_config.json", "model.safetensors", "tokenizer"
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


def check_format(meta: dict[str, Any] | None, path: Path) -> None:
    if meta is None:
        raise ValueError(
            f"{path} has no '{CHECKPOINT_KEY}' section: it was not written by an OmniGenLitModule with a config"
        )
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} has checkpoint format {meta.get('format')}, this omnigen reads {CHECKPOINT_FORMAT}")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint file of omnigen's format (tensors and plain data only: weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    check_format(checkpoint.get(CHECKPOINT_KEY), path)
    return checkpoint


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
