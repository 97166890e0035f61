"""Batching X2I samples: output images stacked (one size per batch), the rest kept as lists."""

from typing import Any

import torch


def collate_x2i(samples: list[dict[str, Any]]) -> dict[str, Any]:
    sizes = {tuple(s["output_image"].shape) for s in samples}
    if len(sizes) != 1:
        raise ValueError(f"a batch must share one output size, got {sorted(sizes)}")
    return {
        "instruction": [s["instruction"] for s in samples],
        "input_images": [list(s["input_images"]) for s in samples],
        "output_image": torch.stack([s["output_image"] for s in samples]),  # (B, 3, H, W)
        "task": [s["task"] for s in samples],
        "spec": [s["spec"] for s in samples],
        "edit_source": [s.get("edit_source") for s in samples],
    }
