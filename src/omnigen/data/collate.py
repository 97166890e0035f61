"""Batching X2I samples: output images stacked when they share a size, else (mixed-size batches)
a list; the rest kept as lists."""

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from omnigen.data.schema import X2ISample
from omnigen.utils.images import from_array


def to_tensor(image: Image.Image) -> Tensor:
    """RGB image -> (3, H, W) in [-1, 1]."""
    return from_array(np.array(image, dtype=np.uint8))


def collate_samples(samples: list[X2ISample], mixed_sizes: bool = False) -> dict[str, Any]:
    sizes = {s.output_image.size for s in samples}
    if len(sizes) != 1 and not mixed_sizes:
        raise ValueError(
            f"a batch must share one output size, got {sorted(sizes)} (bucket the samples by size, "
            "or data.mixed_sizes=true: training packs any sizes)"
        )
    outputs = [to_tensor(s.output_image) for s in samples]
    return {
        "instruction": [s.instruction for s in samples],
        "input_images": [[to_tensor(im) for im in s.input_images] for s in samples],
        "output_image": torch.stack(outputs) if len(sizes) == 1 else outputs,  # (B, 3, H, W), or [(3, H, W), ...]
        "task": [s.task for s in samples],
        "family": [s.family for s in samples],
        "spec": [s.spec for s in samples],
        "edit_source": [s.edit_source for s in samples],
        "key": [s.key for s in samples],
    }


def to_item(sample: X2ISample) -> dict[str, Any]:
    """One sample as a batch of one would hold it, unbatched (e.g. for sample-grid previews)."""
    return {k: v[0] for k, v in collate_samples([sample]).items()}
