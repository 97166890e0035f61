"""Condition maps and degradations of Shapes-X2I scenes (numpy only, exact and fast).

Maps are (size, size, 3) uint8 images computed from a scene's label map (world.label_map):
- edge map: white (255) on black, on every shape pixel with a 4-neighbour outside that shape
  (a one-pixel inner outline);
- segmentation map: each pixel in the flat colour of its class (SEGMENTATION_COLOURS: the
  shape's kind, or background);
- depth map: grey, "nearer" = brighter; the background is a ground plane (a vertical ramp from
  DEPTH_BACKGROUND[0] at the top to DEPTH_BACKGROUND[1] at the bottom), each shape a flat grey
  DEPTH_ROWS[grid row] (lower in the image = nearer);
- box map: white one-pixel outline of each shape's tight bounding box, on black;
- object mask: white on the named shape's pixels, black elsewhere.
Degradations (inputs of the cv_tasks restoration tasks) are pure functions of their stated
parameters, so a metric can recompute them: Gaussian blur, additive Gaussian noise, a box filled
with MASK_COLOUR, ITU-R 601 greyscale.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from omnigen.data.shapes.world import GRID, POSITIONS, SHAPE_KINDS, Scene

WHITE, BLACK = 255, 0
SEGMENTATION_COLOURS: dict[str, tuple[int, int, int]] = {
    "background": (0, 0, 0),
    "circle": (255, 0, 255),
    "square": (0, 255, 255),
    "triangle": (255, 255, 0),
}
DEPTH_BACKGROUND: tuple[int, int] = (16, 96)  # grey at the top and the bottom edge of the ground plane
DEPTH_ROWS: tuple[int, int, int] = (136, 196, 255)  # grey of a shape in grid row 0, 1, 2
# Unlike every scene colour (palettes of world.py), so the masked box is exactly recoverable.
MASK_COLOUR: tuple[int, int, int] = (255, 0, 255)
# Integer ITU-R 601 luma weights (per mille): grey = round((299 R + 587 G + 114 B) / 1000).
LUMA_WEIGHTS: tuple[int, int, int] = (299, 587, 114)
_SEGMENTATION_LUT = np.array([SEGMENTATION_COLOURS[k] for k in ("background", *SHAPE_KINDS)], dtype=np.uint8)


def _grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(values.astype(np.uint8)[..., None], 3, axis=-1)


def edge_pixels(labels: np.ndarray) -> np.ndarray:
    """Shape pixels (label > 0) with a 4-neighbour of another label; outside the image counts as 0."""
    padded = np.pad(labels, 1)
    centre = padded[1:-1, 1:-1]
    up, down, left, right = padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]
    differs = (up != centre) | (down != centre) | (left != centre) | (right != centre)
    return differs & (centre > 0)


def edge_map(labels: np.ndarray) -> np.ndarray:
    return _grey(np.where(edge_pixels(labels), WHITE, BLACK))


def segmentation_map(scene: Scene, labels: np.ndarray) -> np.ndarray:
    # label -> class index (0 = background, 1 + SHAPE_KINDS.index(kind)) -> colour
    classes = np.array([0, *(1 + SHAPE_KINDS.index(s.kind) for s in scene.shapes)])
    return _SEGMENTATION_LUT[classes[labels]]


def depth_map(scene: Scene, labels: np.ndarray) -> np.ndarray:
    size = labels.shape[0]
    far, near = DEPTH_BACKGROUND
    ramp = np.round(far + (near - far) * (np.arange(size) + 0.5) / size)
    levels = np.array([0, *(DEPTH_ROWS[POSITIONS[s.position][0]] for s in scene.shapes)])
    depth = np.where(labels > 0, levels[labels], ramp[:, None])
    return _grey(depth)


def bounding_box(mask: np.ndarray) -> list[int]:
    """[top, left, bottom, right] of a non-empty boolean mask, bottom/right exclusive."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1]


def shape_boxes(labels: np.ndarray, count: int) -> list[list[int]]:
    return [bounding_box(labels == i + 1) for i in range(count)]


def box_map(labels: np.ndarray, count: int) -> np.ndarray:
    canvas = np.zeros(labels.shape, dtype=np.uint8)
    for top, left, bottom, right in shape_boxes(labels, count):
        canvas[top:bottom, [left, right - 1]] = WHITE
        canvas[[top, bottom - 1], left:right] = WHITE
    return _grey(canvas)


def object_mask(labels: np.ndarray, index: int) -> np.ndarray:
    """White on the pixels of scene.shapes[index], black elsewhere."""
    return _grey(np.where(labels == index + 1, WHITE, BLACK))


def gaussian_kernel(sigma: float) -> np.ndarray:
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return taps / taps.sum()


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (radius ceil(3 sigma), edge pixels replicated), rounded to uint8."""
    kernel = gaussian_kernel(sigma)
    radius = len(kernel) // 2
    out = image.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        length = out.shape[axis]
        out = sum(w * padded.take(np.arange(k, k + length), axis=axis) for k, w in enumerate(kernel))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def add_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Additive i.i.d. Gaussian noise per pixel and channel (0..255 scale), rounded and clipped."""
    noisy = image + rng.normal(0.0, std, size=image.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def mask_box(image: np.ndarray, box: list[int]) -> np.ndarray:
    top, left, bottom, right = box
    out = image.copy()
    out[top:bottom, left:right] = MASK_COLOUR
    return out


def greyscale(image: np.ndarray) -> np.ndarray:
    luma = (image.astype(np.int64) @ np.array(LUMA_WEIGHTS) + 500) // 1000
    return _grey(luma)


def map_encodings() -> dict[str, dict[str, Any]]:
    """JSON-able description of each map's encoding (copied into the specs that use one)."""
    return {
        "edges": {"edge": WHITE, "background": BLACK},
        "segmentation": {"classes": {k: list(v) for k, v in SEGMENTATION_COLOURS.items()}},
        "depth": {"background": list(DEPTH_BACKGROUND), "rows": list(DEPTH_ROWS), "grid": GRID},
        "boxes": {"box": WHITE, "background": BLACK, "outline_px": 1},
    }
