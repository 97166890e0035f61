"""The paper's mask: causal over the sequence, bidirectional inside every image span."""

from torch import Tensor

from omnigen.model.masks.base import MaskMod, MaskStrategy, SequenceLayout, causal, same_image


class OmniGenMask(MaskStrategy):
    """Causal + bidirectional within each image (condition images and the output image).

    Nothing before the output image can see it (it comes later and is not in their span), so the
    condition prefix is independent of the noisy output and cacheable across sampling steps.
    """

    prefix_independent = True

    def mask_mod(self, layout: SequenceLayout) -> MaskMod:
        before, image = causal(layout), same_image(layout)

        def rule(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
            return before(b, h, q, kv) | image(b, h, q, kv)

        return rule
