"""FSDP helpers: shard any Hugging Face backbone one transformer layer at a time.

`configs/trainer/fsdp.yaml` passes `DecoderLayerPolicy()` as Lightning's `FSDPStrategy(auto_wrap_policy=...)`.
It needs no class names in the config: the layer classes are those the backbone's
`PreTrainedModel` itself declares indivisible (`_no_split_modules`, e.g. `Phi3DecoderLayer` for
Phi-3, `LlamaDecoderLayer` for Llama), so swapping `model/backbone` needs no FSDP change.
"""

from collections.abc import Iterable

from torch import nn
from transformers import PreTrainedModel


def transformer_layer_class_names(model: nn.Module) -> set[str]:
    """Class names of the transformer layers of every HF model inside `model` (its `_no_split_modules`)."""
    return {name for m in model.modules() if isinstance(m, PreTrainedModel) for name in (m._no_split_modules or ())}


def transformer_layer_classes(model: nn.Module) -> set[type[nn.Module]]:
    """The layer classes themselves (for `FSDPStrategy(auto_wrap_policy=..., activation_checkpointing_policy=...)`
    in code that has the model at hand)."""
    names = transformer_layer_class_names(model)
    return {type(m) for m in model.modules() if type(m).__name__ in names}


class DecoderLayerPolicy:
    """An FSDP auto-wrap policy (the `(module, recurse, nonwrapped_numel)` callable form): wrap every
    module whose class is a transformer layer of an HF model in the tree, plus `extra_class_names`.

    FSDP walks the tree top-down, asking with `recurse=True` before it descends into a module, so
    the policy sees each `PreTrainedModel` (and learns its layer classes) before its layers."""

    def __init__(self, extra_class_names: Iterable[str] = ()) -> None:
        self.class_names = set(extra_class_names)

    def __call__(self, module: nn.Module, recurse: bool, nonwrapped_numel: int = 0, **kwargs: object) -> bool:
        if recurse:
            if isinstance(module, PreTrainedModel):
                self.class_names |= set(module._no_split_modules or ())
            return True  # always look inside
        return type(module).__name__ in self.class_names

    def __repr__(self) -> str:
        return f"{type(self).__name__}(class_names={sorted(self.class_names)})"
