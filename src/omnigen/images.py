"""Tensor <-> PIL conversions and image grids (no torchvision on these machines)."""

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def to_pil(image: Tensor) -> Image.Image:
    """(3, H, W) in [-1, 1] -> RGB image."""
    array = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).numpy())


def from_array(array: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [-1, 1]."""
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {array.shape} {array.dtype}")
    return torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1


def grid(rows: list[list[Image.Image | None]], cell: int, pad: int = 2) -> Image.Image:
    """Paste images (None leaves a blank) into a grid of cell × cell tiles."""
    cols = max(len(r) for r in rows)
    navy = (40, 40, 90)  # unlike any Shapes-X2I background, so tiles stand out
    canvas = Image.new("RGB", (cols * (cell + pad) + pad, len(rows) * (cell + pad) + pad), navy)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            if image is not None:
                canvas.paste(image.resize((cell, cell), Image.NEAREST), (pad + j * (cell + pad), pad + i * (cell + pad)))
    return canvas
