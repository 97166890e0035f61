"""Foreground weighting: the edit weighting, with a sample that edits nothing read as an edit of
a blank canvas of its own background.

A text-to-image scene is mostly background. Its shapes, a few percent of the pixels, are what the
prompt describes, and an unweighted loss learns the background first and their outlines last.
Here every sample without an input image to compare with is compared with its background, each
channel's median over positions (the colour of most of the image): positions that differ from it
get the edit weighting's clip(1 / d) (d: the sample's mean distance to that canvas), the rest 1.
Samples that edit an input image are weighted against it, exactly as `EditRegionWeighting` does,
or (`edits=False`) not at all: the weighting shifts the loss from the region an edit keeps to the
region it changes, which slows learning to copy (unchanged-region PSNR 17-18 against 21-23 dB after
30 minutes in experiments/speedrun).
"""

from typing import Any

import torch
from torch import Tensor

from omnigen.flow.weighting.edit_region import EditRegionWeighting, check_references, is_edit


def background_canvas(target: Tensor) -> Tensor:
    """(C, H, W): each channel's median over positions, everywhere."""
    return target.flatten(1).median(dim=1).values[:, None, None].expand_as(target)  # (C, 1, 1) -> (C, H, W)


class ForegroundWeighting(EditRegionWeighting):
    def __init__(self, *args: Any, edits: bool = True, edit_clip_max: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.edits = edits  # False: an edit gets weight 1 everywhere
        # The clip of the edits' weights (None: clip_max, the scenes'), so one can move without the other.
        self.edit_clip_max = self.clip_max if edit_clip_max is None else edit_clip_max
        if self.edit_clip_max < self.clip_min:
            raise ValueError(f"need edit_clip_max >= clip_min={self.clip_min}, got {edit_clip_max}")

    def weights(self, target: Tensor, references: list[Tensor | None]) -> Tensor:
        check_references(target, references)
        out = torch.ones_like(target)
        for b, reference in enumerate(references):
            if not is_edit(target[b], reference):  # a scene: its shapes against a blank canvas of its background
                out[b] = self.sample_weights(target[b], background_canvas(target[b]), self.clip_max)
            elif self.edits:  # an edit: what changes against the image it edits
                out[b] = self.sample_weights(target[b], reference, self.edit_clip_max)
        return out

    def __repr__(self) -> str:
        return f"Foreground{super().__repr__()[:-1]}, edits={self.edits}, edit_clip_max={self.edit_clip_max})"
