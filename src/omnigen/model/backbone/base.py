"""The transformer backbone: a decoder-only LM driven through `inputs_embeds`.

Any module with this interface works (every HF `*Model` decoder does). It is stored as
`OmniGen.llm`, so its parameters are named `llm.*` as in the released OmniGen-v1 weights.
"""

from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn


@runtime_checkable
class Backbone(Protocol):
    config: Any  # must expose hidden_size and vocab_size

    def get_input_embeddings(self) -> nn.Module: ...

    def __call__(
        self,
        *,
        inputs_embeds: Tensor,
        attention_mask: Tensor,
        position_ids: Tensor,
        use_cache: bool = False,
        **kwargs: Any,
    ) -> Any:
        """inputs_embeds (B, Lq, D); attention_mask (B, 1, Lq, L) additive float (sdpa, eager) or a
        FlexAttention BlockMask (flex_attention), Lq < L after a kv-cached prefix; position_ids (B, Lq).
        Returns an object with `.last_hidden_state` (B, Lq, D)."""


def check_backbone(module: nn.Module) -> None:
    """Fail early, naming what is missing, when a module cannot serve as a backbone."""
    if not isinstance(module, Backbone):
        raise TypeError(f"{type(module).__name__} is not a backbone: it needs `config` and `get_input_embeddings()`")
    for field in ("hidden_size", "vocab_size"):
        if not hasattr(module.config, field):
            raise TypeError(f"backbone config {type(module.config).__name__} has no `{field}`")
