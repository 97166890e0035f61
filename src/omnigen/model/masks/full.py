"""Full bidirectional attention over all valid tokens (DiT-like; no kv-cache possible)."""

from torch import Tensor

from omnigen.model.masks.base import MaskStrategy, SequenceLayout


class FullMask(MaskStrategy):
    # Condition tokens attend to the noisy output image, so the prefix changes every step.
    prefix_independent = False

    def allowed(self, layout: SequenceLayout) -> Tensor:
        return layout.valid[:, None, :] & layout.valid[:, :, None]
