"""Sharded checkpoints (trainer=fsdp with save_distributed_checkpoint=true), their consolidation into the one
self-describing file, and the optimizer-state layout every checkpoint file shares.

A sharded checkpoint is a directory that every rank writes its own shards into, in parallel, with no gather:

    step_0000004.ckpt/
        .metadata, __0_0.distcp, __1_0.distcp, ...   torch.distributed.checkpoint: the model-shaped entries
                                                     (`state_dict`, and `current_model_state` under weight
                                                     averaging) and `optimizer_0`, ..., each rank's shards
        meta.pt                                      the rest, written by rank 0: step, loops, callbacks and
                                                     the `omnigen` description (omnigen.checkpoints.format)

`read_sharded` turns one into the dict of a single-file Lightning checkpoint on any machine, without a process
group (the whole state must fit in CPU memory); `python -m omnigen.convert consolidate DIR OUT.ckpt` writes
that file, which load_module and OmniGenPipeline.from_checkpoint read and every strategy resumes from.

Optimizer states in files are in torch's own layout (`Optimizer.state_dict`: parameters numbered in the order
of the optimizer's parameter groups), whichever strategy wrote them, so a run may move between one device and
many. `torch.distributed.checkpoint` keys them by parameter name instead; `by_index` and `by_name` convert.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
from torch.distributed.tensor import DTensor

from omnigen.checkpoints.atomic_io import atomic_torch_save

META_FILE = "meta.pt"  # Lightning's name for the non-tensor part (lightning.fabric.utilities.load._METADATA_FILENAME)
DCP_METADATA = ".metadata"  # what torch.distributed.checkpoint writes last


def is_sharded_checkpoint(path: str | Path) -> bool:
    """Whether `path` is a complete sharded checkpoint directory."""
    path = Path(path)
    return path.is_dir() and (path / META_FILE).is_file() and (path / DCP_METADATA).is_file()


def holds_shards(value: Any) -> bool:
    """Whether `value` is a state dict with sharded (DTensor) entries: what goes into the shards."""
    return isinstance(value, dict) and any(isinstance(v, DTensor) for v in value.values())


def sharded_entries(path: str | Path) -> set[str]:
    """The top-level entries a sharded checkpoint keeps in its shards (state_dict, optimizer_0, ...)."""
    # torch.distributed.checkpoint flattens nested keys with "."; the top-level names hold none
    return {key.split(".")[0] for key in FileSystemReader(str(path)).read_metadata().state_dict_metadata}


def by_index(optimizer_state: dict[str, Any]) -> dict[str, Any]:
    """A name-keyed optimizer state (torch.distributed.checkpoint's) in torch's layout: numbered in group order."""
    names = [name for group in optimizer_state["param_groups"] for name in group["params"]]
    index = {name: i for i, name in enumerate(names)}
    return {
        "state": {index[name]: value for name, value in optimizer_state["state"].items()},
        "param_groups": [
            {**g, "params": [index[name] for name in g["params"]]} for g in optimizer_state["param_groups"]
        ],
    }


def by_name(optimizer_state: dict[str, Any], names: list[list[str]], where: str) -> dict[str, Any]:
    """A state in torch's layout keyed by parameter name: `names` are the names of the live optimizer's
    parameters, group by group. Refuses a state whose groups do not match them (another optimizer or model)."""
    groups = optimizer_state["param_groups"]
    if [len(g["params"]) for g in groups] != [len(group) for group in names]:
        raise ValueError(
            f"{where}: its optimizer state has groups of {[len(g['params']) for g in groups]} parameters, this run's "
            f"optimizer {[len(group) for group in names]}: resume with the model and optimizer that wrote it"
        )
    flat = [name for group in names for name in group]
    return {
        "state": {flat[int(i)]: value for i, value in optimizer_state["state"].items()},
        "param_groups": [{**g, "params": group} for g, group in zip(groups, names, strict=True)],
    }


def read_sharded(path: str | Path) -> dict[str, Any]:
    """A sharded checkpoint as the dict of a single-file one: whole tensors, `optimizer_states` in torch's
    layout, meta.pt's entries beside them. Runs in any process, without a process group."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(suffix=".pt")
    os.close(fd)
    try:  # torch's own conversion, then a weights_only read of what it wrote
        dcp_to_torch_save(path, tmp)
        checkpoint = torch.load(tmp, map_location="cpu", weights_only=True)
    finally:
        os.unlink(tmp)
    optimizers = sorted((k for k in checkpoint if k.startswith("optimizer_")), key=lambda k: int(k.split("_")[1]))
    checkpoint["optimizer_states"] = [by_index(checkpoint.pop(key)) for key in optimizers]
    checkpoint.update(torch.load(path / META_FILE, map_location="cpu", weights_only=True))
    return checkpoint


def consolidate(path: str | Path, out: str | Path) -> Path:
    """Write the sharded checkpoint `path` as one checkpoint file `out` (atomically)."""
    atomic_torch_save(read_sharded(path), out)
    return Path(out)
