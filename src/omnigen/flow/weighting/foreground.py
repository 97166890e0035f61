"""Foreground weighting: the edit weighting, with a sample that edits nothing read as an edit of
a blank canvas of its own background.

A text-to-image scene is mostly background. Its shapes, a few percent of the pixels, are what the
prompt describes, and an unweighted loss learns the background first and their outlines last.
Here every sample without an input image to compare with is compared with its background, each
channel's median over positions (the colour of most of the image): positions that differ from it
get the edit weighting's clip(1 / d) (d: the sample's mean distance to that canvas), the rest 1.
Samples that edit an input image are weighted against it, exactly as `EditRegionWeighting` does.
"""

from torch import Tensor

from omnigen.flow.weighting.edit_region import EditRegionWeighting


def background_canvas(target: Tensor) -> Tensor:
    """(C, H, W): each channel's median over positions, everywhere."""
    return target.flatten(1).median(dim=1).values[:, None, None].expand_as(target)  # (C, 1, 1) -> (C, H, W)


class ForegroundWeighting(EditRegionWeighting):
    def weights(self, target: Tensor, references: list[Tensor | None]) -> Tensor:
        # A references list of the wrong length stays that length here, so the edit weighting refuses it.
        canvases = [reference if reference is not None and reference.shape == target[b].shape
                    else background_canvas(target[b]) for b, reference in enumerate(references)]
        return super().weights(target, canvases)

    def __repr__(self) -> str:
        return "Foreground" + super().__repr__()
