"""The paper's edit weighting (Eq. 2): up-weight the latent positions an edit changes.

In editing, most of the output equals the input image, so an unweighted loss is minimised by
copying. Positions where target and reference differ get weight clip(1 / d, clip_min, clip_max),
d being the sample's mean (squared or absolute) latent difference; the rest keep weight 1.

`margin` (0 in the paper) grows the changed region by that many latent positions. A change's
outline is decided as much by the unchanged positions beside it as by the changed ones: weighted
only inside, the loss charges a shape drawn too large at weight 1 and one drawn too small at up to
`clip_max`, so a model learns to fill whole patches (every small Shapes-X2I circle and triangle
drawn as a square: experiments/speedrun).
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from omnigen.flow.weighting.base import LossWeighting

NORMS = ("l2", "l1")


def check_references(target: Tensor, references: list[Tensor | None]) -> None:
    if len(references) != target.shape[0]:
        raise ValueError(f"got {len(references)} references for a batch of {target.shape[0]}")


def is_edit(target: Tensor, reference: Tensor | None) -> bool:
    """Whether a sample (C, H, W) has an input image of its own shape to be compared with."""
    return reference is not None and reference.shape == target.shape


class EditRegionWeighting(LossWeighting):
    def __init__(
        self,
        threshold: float = 0.05,
        clip_min: float = 5.0,
        clip_max: float = 64.0,
        norm: str = "l2",
        eps: float = 1e-8,
        margin: int = 0,
    ) -> None:
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if not 0 < clip_min <= clip_max:
            raise ValueError(f"need 0 < clip_min <= clip_max, got clip_min={clip_min}, clip_max={clip_max}")
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        if not isinstance(margin, int) or margin < 0:
            raise ValueError(f"margin must be an int >= 0 (latent positions), got {margin!r}")
        self.margin = margin
        self.threshold, self.clip_min, self.clip_max, self.norm, self.eps = threshold, clip_min, clip_max, norm, eps

    def changed_weight(self, target: Tensor, reference: Tensor, clip_max: float) -> Tensor:
        """Scalar weight of the changed region for one sample (C, H, W)."""
        diff = target - reference
        distance = diff.pow(2).mean() if self.norm == "l2" else diff.abs().mean()
        return (1.0 / (distance + self.eps)).clamp(self.clip_min, clip_max)

    def sample_weights(self, target: Tensor, reference: Tensor, clip_max: float) -> Tensor:
        """(C, H, W) weights of one sample against the image it is compared with."""
        # A latent position is changed when its channel-mean |difference| passes the threshold.
        changed = (target - reference).abs().mean(dim=0, keepdim=True) > self.threshold  # (1, H, W)
        if self.margin:  # the changed region and every position within `margin` of it (Chebyshev)
            changed = F.max_pool2d(changed.float(), 2 * self.margin + 1, stride=1, padding=self.margin) > 0
        return torch.where(changed, self.changed_weight(target, reference, clip_max), 1.0).expand_as(target)

    def weights(self, target: Tensor, references: list[Tensor | None]) -> Tensor:
        check_references(target, references)
        out = torch.ones_like(target)
        for b, reference in enumerate(references):
            if is_edit(target[b], reference):  # otherwise nothing to compare against: a plain sample, weight 1
                out[b] = self.sample_weights(target[b], reference, self.clip_max)
        return out

    def __repr__(self) -> str:
        return (
            f"EditRegionWeighting(threshold={self.threshold}, clip_min={self.clip_min}, "
            f"clip_max={self.clip_max}, norm={self.norm!r}, margin={self.margin})"
        )
