"""Rebuild an OmniGenLitModule from what it saved: a Lightning checkpoint or an exported directory.

Both describe themselves (model config, tokenizer, weights); nothing else is needed to load them.
An exported directory is the inference form, without optimiser state:

    omnigen_config.json   {"format", "model_config", "run_config", "global_step"}
    model.safetensors     the module's state dict (transformer and VAE)
    tokenizer/            the tokenizer's own files
"""

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from transformers import PreTrainedTokenizerBase

from omnigen.checkpoints.atomic_io import atomic_directory
from omnigen.checkpoints.format import (
    CHECKPOINT_KEY,
    EXPORT_CONFIG,
    EXPORT_TOKENIZER,
    EXPORT_WEIGHTS,
    CheckpointError,
    CorruptCheckpoint,
    check_path,
    current_targets,
    describe,
    read_checkpoint,
    read_export_config,
)
from omnigen.module import OmniGenLitModule, build_module
from omnigen.processor import load_tokenizer, tokenizer_from_files


def rebuild_module(meta: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> OmniGenLitModule:
    """The module described by a checkpoint's `omnigen` section, with fresh weights."""
    module = build_module(current_targets(meta["model_config"]), meta.get("run_config"), tokenizer=tokenizer)
    module.loaded_step = meta.get("global_step", 0)
    return module


def load_module(
    path: str | Path, map_location: str | torch.device = "cpu", weights: str = "default"
) -> OmniGenLitModule:
    """The trained module, in eval mode, from a Lightning checkpoint file or an exported directory.

    A checkpoint of a run with weight averaging (callbacks=ema) holds the averaged weights as its
    state dict, which is what "default" loads; weights="raw" loads the raw training weights instead."""
    if weights not in ("default", "raw"):
        raise ValueError(f"weights must be 'default' or 'raw', got {weights!r}")
    path = Path(path)
    if check_path(path) == "export":
        if weights == "raw":
            raise CheckpointError(f"{path} is an exported directory: it holds one set of weights (no weights=raw)")
        module = rebuild_module(read_export_config(path), load_tokenizer(str(path / EXPORT_TOKENIZER)))
        try:
            load_model(module, path / EXPORT_WEIGHTS, strict=True)
        except SafetensorError as error:  # a cut-off or damaged file; a name or shape mismatch stays a bug
            raise CorruptCheckpoint(
                f"{path / EXPORT_WEIGHTS} cannot be read ({error}): the export is corrupt"
            ) from error
    else:
        checkpoint = read_checkpoint(path)
        meta = checkpoint[CHECKPOINT_KEY]
        module = rebuild_module(meta, tokenizer_from_files(meta["tokenizer_files"]))
        if weights == "raw" and "current_model_state" not in checkpoint:
            raise CheckpointError(f"{path} has no separate raw weights (it was not trained with weight averaging)")
        module.load_state_dict(checkpoint["current_model_state" if weights == "raw" else "state_dict"], strict=True)
    return module.to(map_location).eval()


def export_module(module: OmniGenLitModule, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write `module` as an exported directory (atomically)."""
    meta = describe(module)
    with atomic_directory(out_dir, overwrite) as tmp:
        (tmp / EXPORT_CONFIG).write_text(json.dumps(meta, indent=2))
        save_model(module, str(tmp / EXPORT_WEIGHTS))
        module.processor.tokenizer.save_pretrained(tmp / EXPORT_TOKENIZER)
    return Path(out_dir)
