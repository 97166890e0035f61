"""Rebuild an OmniGenLitModule from what it saved: a Lightning checkpoint or an exported directory.

Both describe themselves (model config, tokenizer, weights); nothing else is needed to load them.
An exported directory is the inference form, without optimiser state:

    omnigen_config.json   {"format", "model_config", "run_config", "global_step"}
    model.safetensors     the module's state dict (transformer and VAE)
    tokenizer/            the tokenizer's own files
"""

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from safetensors.torch import load_model, save_model
from transformers import PreTrainedTokenizerBase

from omnigen.module import CHECKPOINT_FORMAT, CHECKPOINT_KEY, OmniGenLitModule
from omnigen.processor import load_tokenizer, tokenizer_from_files

EXPORT_CONFIG, EXPORT_WEIGHTS, EXPORT_TOKENIZER = "omnigen_config.json", "model.safetensors", "tokenizer"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    check_format(checkpoint.get(CHECKPOINT_KEY), path)
    return checkpoint


def check_format(meta: dict[str, Any] | None, path: Path) -> None:
    if meta is None:
        raise ValueError(
            f"{path} has no '{CHECKPOINT_KEY}' section: it was not written by an OmniGenLitModule with a config"
        )
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} has checkpoint format {meta.get('format')}, this omnigen reads {CHECKPOINT_FORMAT}")


def build_module(meta: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> OmniGenLitModule:
    """The module described by a checkpoint's `omnigen` section, with fresh weights."""
    config = meta["model_config"]
    module = instantiate(config, tokenizer=tokenizer, _convert_="all")
    module.model_config, module.run_config, module.loaded_step = (
        config,
        meta.get("run_config"),
        meta.get("global_step", 0),
    )
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
    if path.is_dir():
        if weights == "raw":
            raise ValueError(f"{path} is an exported directory: it holds one set of weights")
        meta = json.loads((path / EXPORT_CONFIG).read_text()) if (path / EXPORT_CONFIG).is_file() else None
        check_format(meta, path / EXPORT_CONFIG)
        module = build_module(meta, load_tokenizer(str(path / EXPORT_TOKENIZER)))
        load_model(module, path / EXPORT_WEIGHTS, strict=True)
    else:
        checkpoint = read_checkpoint(path)
        meta = checkpoint[CHECKPOINT_KEY]
        module = build_module(meta, tokenizer_from_files(meta["tokenizer_files"]))
        if weights == "raw" and "current_model_state" not in checkpoint:
            raise ValueError(f"{path} has no separate raw weights (it was not trained with weight averaging)")
        module.load_state_dict(checkpoint["current_model_state" if weights == "raw" else "state_dict"], strict=True)
    return module.to(map_location).eval()


@contextmanager
def atomic_directory(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `out_dir` to fill; it replaces `out_dir` only when the
    block succeeds, so an interrupted write never leaves a half-written directory."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; choose another directory or pass overwrite=True (CLI: --overwrite)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield tmp
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_module(module: OmniGenLitModule, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write `module` as an exported directory (atomically)."""
    meta = {
        "format": CHECKPOINT_FORMAT,
        "model_config": module.architecture_config(),
        "run_config": module.run_config,
        "global_step": module.steps_trained,
    }
    with atomic_directory(out_dir, overwrite) as tmp:
        (tmp / EXPORT_CONFIG).write_text(json.dumps(meta, indent=2))
        save_model(module, str(tmp / EXPORT_WEIGHTS))
        module.processor.tokenizer.save_pretrained(tmp / EXPORT_TOKENIZER)
    return Path(out_dir)
