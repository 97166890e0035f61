"""Position schemes: the rotary positions each token of `[condition | time | output]` gets.

A scheme turns a `SequenceLayout` into the (B, L) integer `position_ids` the LLM is called with,
and may change how the LLM turns them into rotary angles (`install`, once, when the model is
built). Positions are a function of the whole layout, so a kv-cached prefix and the steps after it
slice one tensor and get what an uncached call gets; packed samples restart at 0, as alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

from omnigen.model.masks.base import SequenceLayout


class PositionScheme(ABC):
    #: False where diffusers' OmniGenTransformer2DModel (1-D RoPE over the sequence) cannot express it.
    diffusers_compatible: bool = False

    def install(self, llm: nn.Module) -> None:  # noqa: B027 (a hook most schemes leave empty)
        """Adapt the LLM's rotary embedding to this scheme's position ids (default: nothing to do)."""

    @abstractmethod
    def position_ids(self, layout: SequenceLayout) -> Tensor:
        """(B, L) int64 position ids for the LLM's rotary embedding."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
