"""OmniGen v1's positions: one 1-D RoPE position per token over the whole sequence (padding 0,
restarting at 0 for each packed sample); the LLM's own rotary embedding, unchanged."""

from torch import Tensor

from omnigen.model.masks.base import SequenceLayout
from omnigen.model.positions.base import PositionScheme


class SequentialPositions(PositionScheme):
    diffusers_compatible = True

    def position_ids(self, layout: SequenceLayout) -> Tensor:
        return layout.position_ids()  # (B, L)
