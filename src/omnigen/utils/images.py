"""Tensor <-> PIL conversions, input images read and fitted to the token grid, and image grids (no torchvision on
these machines)."""

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor

from omnigen.utils.cli import UserError, missing_path

log = logging.getLogger(__name__)


def to_pil(image: Tensor) -> Image.Image:
    """(3, H, W) in [-1, 1] -> RGB image."""
    array = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).numpy())


def from_array(array: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [-1, 1]."""
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {array.shape} {array.dtype}")
    return torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1


def read_image(path: str | Path, name: str) -> Image.Image:
    """The image file at `path`, decoded now, so a missing, truncated or foreign file is named as `name`."""
    if not Path(path).is_file():
        raise missing_path(path, what=name)
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, Image.DecompressionBombError) as error:  # unidentified, truncated, too many pixels
        raise UserError(f"{name}: {path} cannot be read as an image ({error})") from error


def as_tensor(image: "Image.Image | str | Path | np.ndarray | Tensor", name: str) -> Tensor:
    """A PIL image, an image file, an (H, W, 3) uint8 array or a (3, H, W) tensor -> (3, H, W) in [-1, 1]."""
    if isinstance(image, (str, Path)):
        image = read_image(image, name)
    if isinstance(image, Image.Image):
        image = np.array(image.convert("RGB"))  # a writable copy for torch
    if isinstance(image, np.ndarray):
        image = from_array(image)
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(
            f"{name}: expected a PIL image, path, (H, W, 3) uint8 array or (3, H, W) tensor, got "
            f"{getattr(image, 'shape', type(image).__name__)}"
        )
    return image


def fit_to_grid(image: Tensor, max_size: int, multiple: int, name: str) -> Tensor:
    """(3, H, W) scaled down to at most `max_size` on its longer side, then centre-cropped to a multiple of
    `multiple` pixels (a token's side) each way."""
    h, w = image.shape[-2:]
    if max(h, w) > max_size:
        scale = max_size / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        image = F.interpolate(image[None].float(), size=size, mode="bicubic", antialias=True)[0].clamp(-1, 1)
    h, w = image.shape[-2:]
    crop_h, crop_w = h - h % multiple, w - w % multiple
    if crop_h == 0 or crop_w == 0:
        raise UserError(f"{name}: {h}×{w} is smaller than one token ({multiple}×{multiple} pixels)")
    if (crop_h, crop_w) != (h, w):
        log.info("%s: centre-cropped %d×%d to %d×%d (a multiple of %d pixels)", name, h, w, crop_h, crop_w, multiple)
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    return image[:, top : top + crop_h, left : left + crop_w].float()


def grid(rows: list[list[Image.Image | None]], cell: int, pad: int = 2) -> Image.Image:
    """Paste images (None leaves a blank) into a grid of cell × cell tiles."""
    cols = max(len(r) for r in rows)
    navy = (40, 40, 90)  # unlike any Shapes-X2I background, so tiles stand out
    canvas = Image.new("RGB", (cols * (cell + pad) + pad, len(rows) * (cell + pad) + pad), navy)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            if image is not None:
                canvas.paste(
                    image.resize((cell, cell), Image.NEAREST), (pad + j * (cell + pad), pad + i * (cell + pad))
                )
    return canvas


def compare_generated(grids: dict[str, Image.Image], cell: int, pad: int = 2) -> Image.Image:
    """Several `grid`s of the same samples whose last column is generated ({label: grid}), side by side: the
    first whole (inputs | target | generated), then only the generated column of each other, under a
    strip naming them (the first label over the first grid's generated column)."""
    first, *others = grids.values()
    if any(g.height != first.height for g in others):
        raise ValueError(f"grids of different samples: heights {[g.height for g in grids.values()]}")
    columns = [first] + [g.crop((g.width - cell - 2 * pad, 0, g.width, g.height)) for g in others]
    per_line = max(1, cell // 6)  # ~6 px per character of the default font: longer labels wrap
    lines = {label: [label[i : i + per_line] for i in range(0, len(label), per_line)] or [""] for label in grids}
    strip = 11 * max(len(wrapped) for wrapped in lines.values()) + 1
    canvas = Image.new("RGB", (sum(c.width for c in columns), first.height + strip), (255, 255, 255))
    draw, x = ImageDraw.Draw(canvas), 0
    for i, (label, column) in enumerate(zip(grids, columns, strict=True)):
        canvas.paste(column, (x, strip))
        label_x = x + column.width - cell - pad if i == 0 else x + pad
        draw.multiline_text((label_x, 0), "\n".join(lines[label]), fill=(0, 0, 0), spacing=1)
        x += column.width
    return canvas
