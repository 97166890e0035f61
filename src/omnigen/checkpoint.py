"""Rebuild an OmniGenLitModule from a checkpoint alone (config, tokenizer and weights inside)."""

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from omnigen.module import CHECKPOINT_FORMAT, CHECKPOINT_KEY, OmniGenLitModule
from omnigen.processor import tokenizer_from_files


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    meta = checkpoint.get(CHECKPOINT_KEY)
    if meta is None:
        raise ValueError(f"{path} has no '{CHECKPOINT_KEY}' section: it was not written by an OmniGenLitModule with a config")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} has checkpoint format {meta.get('format')}, this omnigen reads {CHECKPOINT_FORMAT}")
    return checkpoint


def load_module(path: str | Path, map_location: str | torch.device = "cpu") -> OmniGenLitModule:
    """The trained module, in eval mode, with the weights of `path`."""
    checkpoint = read_checkpoint(path)
    meta = checkpoint[CHECKPOINT_KEY]
    config = meta["model_config"]
    module = instantiate(config, tokenizer=tokenizer_from_files(meta["tokenizer_files"]), _convert_="all")
    module.model_config = config
    module.load_state_dict(checkpoint["state_dict"], strict=True)
    return module.to(map_location).eval()
