"""Plain causal attention, as the LLM was pre-trained: image patches see only earlier patches."""

from omnigen.model.masks.base import MaskMod, MaskStrategy, SequenceLayout, causal


class CausalMask(MaskStrategy):
    prefix_independent = True

    def mask_mod(self, layout: SequenceLayout) -> MaskMod:
        return causal(layout)
