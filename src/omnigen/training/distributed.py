"""FSDP2: shard any Hugging Face backbone one transformer layer at a time, on CPUs (gloo) or GPUs (nccl).

`configs/trainer/fsdp.yaml` builds `FullyShardedStrategy`, Lightning's `ModelParallelStrategy` (the
`torch.distributed.fsdp.fully_shard` API on a device mesh) with every process in one data-parallel dimension.
The module asks it to shard in `configure_model` (`OmniGenLitModule.shard`):

- one `fully_shard` unit per transformer layer: the classes the backbone's `PreTrainedModel` itself declares
  indivisible (`_no_split_modules`, e.g. `Phi3DecoderLayer`, `LlamaDecoderLayer`), so swapping
  `model/backbone` needs no change here;
- the root unit: the transformer itself, which holds the embedders and the final layer;
- the frozen VAE stays outside the shards: every rank holds it whole, and it never all-gathers.

Checkpoints are one gathered file by default; with `save_distributed_checkpoint=true` each is a directory of
per-rank shards (omnigen.checkpoints.sharded), written under a temporary name and put in place whole, so a
kill mid-save leaves the previous one. Either way the optimizer state is in torch's own layout, so a run can
resume under another strategy or number of devices (a sharded one after `python -m omnigen.convert
consolidate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from torch.optim import Optimizer
from transformers import PreTrainedModel

from omnigen.checkpoints.atomic_io import TEMP_SUFFIX, remove_stale_temporaries, replace_path
from omnigen.checkpoints.format import CheckpointError
from omnigen.checkpoints.sharded import (
    META_FILE,
    by_index,
    by_name,
    holds_shards,
    is_sharded_checkpoint,
    sharded_entries,
)


def transformer_layer_class_names(model: nn.Module) -> set[str]:
    """Class names of the transformer layers of every HF model inside `model` (its `_no_split_modules`)."""
    return {name for m in model.modules() if isinstance(m, PreTrainedModel) for name in (m._no_split_modules or ())}


def transformer_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer layers of every HF model inside `model`, in module order."""
    names = transformer_layer_class_names(model)
    return [m for m in model.modules() if type(m).__name__ in names]


def shard_by_layer(
    root: nn.Module, mesh: DeviceMesh, mixed_precision: MixedPrecisionPolicy, reshard_after_forward: bool = True
) -> None:
    """`fully_shard` each transformer layer of `root` over `mesh`, then `root` itself (what no layer took); the
    methods `root.forward_methods` names are entry points like forward (OmniGen's), so they gather too."""
    layers = transformer_layers(root)
    if not layers:
        raise ValueError(
            f"FullyShardedStrategy found no transformer layer in {type(root).__name__}: its HF backbone declares "
            "none in `_no_split_modules`"
        )
    for unit in [*layers, root]:  # the layers first: the root unit holds what no layer took
        fully_shard(unit, mesh=mesh, mp_policy=mixed_precision, reshard_after_forward=reshard_after_forward)
    for name in getattr(root, "forward_methods", ()):
        register_fsdp_forward_method(root, name)


def check_resumable(ckpt_path: str | Path | None, strategy: object) -> None:
    """A sharded checkpoint resumes under FullyShardedStrategy only: say so, and how to get one file."""
    if ckpt_path is not None and is_sharded_checkpoint(ckpt_path) and not isinstance(strategy, FullyShardedStrategy):
        raise CheckpointError(
            f"{ckpt_path} is a sharded checkpoint (trainer=fsdp with save_distributed_checkpoint=true) and this run's "
            f"strategy is {type(strategy).__name__}: resume it with trainer=fsdp, or consolidate it into one file "
            f"first (python -m omnigen.convert consolidate {ckpt_path} OUT.ckpt) and pass that"
        )


class FullyShardedStrategy(ModelParallelStrategy):
    """FSDP2 data parallelism: parameters, gradients and optimizer states sharded over every process.

    `mixed_precision`: the `MixedPrecisionPolicy` each unit computes with (bf16 parameters and fp32 gradient
    reduction on GPUs; None computes in the parameters' own dtype). `reshard_after_forward`: free the gathered
    parameters after each unit's forward (ZeRO-3) or keep them to the backward (ZeRO-2).
    `save_distributed_checkpoint`: False writes one self-describing file (rank 0 gathers the full state), which
    `load_module` and `OmniGenPipeline.from_checkpoint` read; True writes a directory per checkpoint, a
    `torch.distributed.checkpoint` shard per rank.
    """

    def __init__(
        self,
        mixed_precision: MixedPrecisionPolicy | None = None,
        reshard_after_forward: bool = True,
        save_distributed_checkpoint: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(save_distributed_checkpoint=save_distributed_checkpoint, **kwargs)
        self.mixed_precision = mixed_precision or MixedPrecisionPolicy()
        self.reshard_after_forward = reshard_after_forward

    def setup_environment(self) -> None:
        # ModelParallelStrategy's "auto" puts the processes of a node in the tensor-parallel dimension; FSDP
        # alone shards over all of them.
        if self._data_parallel_size == "auto" and self._tensor_parallel_size == "auto":
            self._data_parallel_size, self._tensor_parallel_size = self.num_processes * self.num_nodes, 1
        super().setup_environment()

    def shard(self, root: nn.Module) -> None:
        """Shard `root` in place: each transformer layer its own unit, then `root` (what is left) as one. The
        methods `root.forward_methods` names are entry points like forward (OmniGen's)."""
        if isinstance(root, FSDPModule):
            return  # already sharded (configure_model may run more than once)
        shard_by_layer(root, self.device_mesh["data_parallel"], self.mixed_precision, self.reshard_after_forward)

    # ---- checkpoints ------------------------------------------------------------------------
    def optimizer_state(self, optimizer: Optimizer) -> dict[str, Any]:
        if self._save_distributed_checkpoint:
            return super().optimizer_state(optimizer)  # each rank's shards, keyed by parameter name
        optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer's
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_optimizer_state_dict(self.model, optimizer, options=options)  # whole on rank 0 only
        return by_index(state) if self.global_rank == 0 else {}

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: _PATH, storage_options: Any | None = None) -> None:
        if not self._save_distributed_checkpoint:
            return super().save_checkpoint(checkpoint, filepath, storage_options)  # rank 0, through checkpoint_io
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options, got {storage_options!r}")
        path = Path(self.broadcast(filepath))  # rank 0's name for it
        tmp = path.parent / f".{path.name}{TEMP_SUFFIX}"
        if self.global_rank == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(path.parent)
        self.barrier()
        # every sharded state dict (the weights, the raw weights under weight averaging) and the optimizers
        shards = {key: checkpoint.pop(key) for key in list(checkpoint) if holds_shards(checkpoint[key])}
        shards |= {f"optimizer_{i}": state for i, state in enumerate(checkpoint.pop("optimizer_states", []))}
        dcp.save(shards, checkpoint_id=tmp)  # a collective; rank 0 writes its .metadata once all shards are down
        if self.global_rank == 0:
            torch.save(checkpoint, tmp / META_FILE)
            replace_path(tmp, path)
        self.barrier()

    def load_checkpoint(self, checkpoint_path: _PATH, weights_only: bool | None = None) -> dict[str, Any]:
        """Load a checkpoint file or a sharded directory into the sharded module and optimizers; return the rest
        (steps, loops, callbacks), with a sharded directory's other state dicts (`current_model_state`)."""
        path = Path(self.broadcast(checkpoint_path))
        strict = self.lightning_module.strict_loading
        optimizers = [getattr(o, "_optimizer", o) for o in self.optimizers]
        if is_sharded_checkpoint(path):
            checkpoint = torch.load(path / META_FILE, map_location="cpu", weights_only=True)
            # load into templates of this run's own shards: every rank reads just its part
            entries = sharded_entries(path)
            # get_model_state_dict's tensors are the module's own: one template each, or every entry would land
            # in the same tensors
            models = {
                key: {name: value.detach().clone() for name, value in get_model_state_dict(self.model).items()}
                for key in entries
                if not key.startswith("optimizer_")
            }
            states = {f"optimizer_{i}": get_optimizer_state_dict(self.model, o) for i, o in enumerate(optimizers)}
            dcp.load(models | states, checkpoint_id=path)
            set_model_state_dict(self.model, models.pop("state_dict"), options=StateDictOptions(strict=strict))
            for key, optimizer in zip(states, optimizers, strict=True):
                set_optimizer_state_dict(self.model, optimizer, states[key])
            return checkpoint | models
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        whole = StateDictOptions(full_state_dict=True, strict=strict)  # each rank keeps its part of the whole
        set_model_state_dict(self.model, checkpoint["state_dict"], options=whole)
        for optimizer, state in zip(optimizers, checkpoint.get("optimizer_states", []), strict=False):
            names = self.parameter_names(optimizer)
            set_optimizer_state_dict(self.model, optimizer, by_name(state, names, str(path)), options=whole)
        return checkpoint

    def parameter_names(self, optimizer: Optimizer) -> list[list[str]]:
        """The names of `optimizer`'s parameters in the module, group by group."""
        names = {id(p): name for name, p in self.model.named_parameters()}
        return [[names[id(p)] for p in group["params"]] for group in optimizer.param_groups]
