"""The paper's mask: causal over the sequence, bidirectional inside every image span."""

from torch import Tensor

from omnigen.model.masks.base import MaskStrategy, SequenceLayout, causal_pairs, same_image_pairs


class OmniGenMask(MaskStrategy):
    """Causal + bidirectional within each image (condition images and the output image).

    Nothing before the output image can see it (it comes later and is not in their span), so the
    condition prefix is independent of the noisy output and cacheable across sampling steps.
    """

    prefix_independent = True

    def allowed(self, layout: SequenceLayout) -> Tensor:
        return causal_pairs(layout) | same_image_pairs(layout)
