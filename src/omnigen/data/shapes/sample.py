"""The sample type every Shapes-X2I family produces, and helpers the family modules share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class ShapesSample:
    instruction: str  # with <img><|image_i|></img> placeholders, ids 1..len(input_images)
    input_images: list[np.ndarray]  # (H, W, 3) uint8
    output_image: np.ndarray  # (H, W, 3) uint8
    task: str  # "name" or "name/detail"; name is one of omnigen.data.schema.TASKS[family]
    family: str  # a key of omnigen.data.schema.TASKS
    spec: dict[str, Any]  # JSON-serialisable ground truth
    # Index of the input image the output is an edit of (edit-region loss weighting), else None.
    edit_source: int | None = None


def image_tag(index: int) -> str:
    """Placeholder of input image `index` (1-based), as the processor expects it."""
    return f"<img><|image_{index}|></img>"


# Instructions over one input image start with its placeholder.
IMAGE_PREFIX = image_tag(1) + " "


def pick(rng: np.random.Generator, options: list[str] | tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]
