"""Programmatic Shapes-X2I metrics: read a generated image back against its sample's spec.

score(family, task, spec, generated) -> {name: value}; every value is in [0, 1] except PSNRs
(dB, keys ending in "psnr", capped at base.MAX_PSNR). See each family's module for definitions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from omnigen.metrics.base import MAX_PSNR
from omnigen.metrics.conditions import score_visual_condition
from omnigen.metrics.cv import score_cv
from omnigen.metrics.edit import score_edit
from omnigen.metrics.subject import score_subject
from omnigen.metrics.t2i import score_t2i

FAMILIES = ("text_to_image", "mixed_modal", "subject_driven", "visual_condition", "cv_tasks")


def score(family: str, task: str, spec: dict[str, Any], generated: np.ndarray) -> dict[str, float]:
    """Scores of one generated (H, W, 3) uint8 image. The spec alone renders every reference image
    (target, condition map, clean image), so the sample's input images are not needed."""
    generated = np.asarray(generated)
    if generated.ndim != 3 or generated.shape[-1] != 3 or generated.shape[0] != generated.shape[1]:
        raise ValueError(f"generated must be a square (H, W, 3) image, got shape {generated.shape}")
    if generated.dtype != np.uint8:
        raise ValueError(f"generated must be uint8, got {generated.dtype}")
    if family == "text_to_image":
        return score_t2i(spec, generated)
    if family == "mixed_modal":
        return score_edit(spec, generated)
    if family == "subject_driven":
        return score_subject(spec, generated)
    if family == "visual_condition":
        return score_visual_condition(spec, generated)
    if family == "cv_tasks":
        return score_cv(task, spec, generated)
    raise ValueError(f"unknown family {family!r}; known families: {list(FAMILIES)}")


__all__ = ["FAMILIES", "MAX_PSNR", "score"]
