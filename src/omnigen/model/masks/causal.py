"""Plain causal attention, as the LLM was pre-trained: image patches see only earlier patches."""

from torch import Tensor

from omnigen.model.masks.base import MaskStrategy, SequenceLayout, causal_pairs


class CausalMask(MaskStrategy):
    prefix_independent = True

    def allowed(self, layout: SequenceLayout) -> Tensor:
        return causal_pairs(layout)
