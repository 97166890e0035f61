"""Full bidirectional attention over each sample's tokens (DiT-like; no kv-cache possible)."""

from omnigen.model.masks.base import MaskMod, MaskStrategy, SequenceLayout, same_sample


class FullMask(MaskStrategy):
    # Condition tokens attend to the noisy output image, so the prefix changes every step.
    prefix_independent = False

    def mask_mod(self, layout: SequenceLayout) -> MaskMod:
        return same_sample(layout)
