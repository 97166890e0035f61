"""FSDP2: shard any Hugging Face backbone one transformer layer at a time, on CPUs (gloo) or GPUs (nccl).

`configs/trainer/fsdp.yaml` builds `FullyShardedStrategy`, Lightning's `ModelParallelStrategy` (the
`torch.distributed.fsdp.fully_shard` API on a device mesh) with every process in one data-parallel dimension.
The module asks it to shard in `configure_model` (`OmniGenLitModule.shard`):

- one `fully_shard` unit per transformer layer: the classes the backbone's `PreTrainedModel` itself declares
  indivisible (`_no_split_modules`, e.g. `Phi3DecoderLayer`, `LlamaDecoderLayer`), so swapping
  `model/backbone` needs no change here;
- the root unit: the transformer itself, which holds the embedders and the final layer;
- the frozen VAE stays outside the shards: every rank holds it whole, and it never all-gathers.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from transformers import PreTrainedModel


def transformer_layer_class_names(model: nn.Module) -> set[str]:
    """Class names of the transformer layers of every HF model inside `model` (its `_no_split_modules`)."""
    return {name for m in model.modules() if isinstance(m, PreTrainedModel) for name in (m._no_split_modules or ())}


def transformer_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer layers of every HF model inside `model`, in module order."""
    names = transformer_layer_class_names(model)
    return [m for m in model.modules() if type(m).__name__ in names]


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
        mesh = self.device_mesh["data_parallel"]
        layers = transformer_layers(root)
        if not layers:
            raise ValueError(
                f"FullyShardedStrategy found no transformer layer in {type(root).__name__}: its HF backbone "
                "declares none in `_no_split_modules`"
            )
        for unit in [*layers, root]:  # the layers first: the root unit holds what no layer took
            fully_shard(
                unit, mesh=mesh, mp_policy=self.mixed_precision, reshard_after_forward=self.reshard_after_forward
            )
        for name in getattr(root, "forward_methods", ()):  # methods called instead of forward gather too
            register_fsdp_forward_method(root, name)
