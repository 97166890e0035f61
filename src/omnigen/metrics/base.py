"""Read-back helpers shared by the Shapes-X2I metrics: palette classes, connected components, shapes.

Everything works on plain uint8 RGB arrays with numpy only, so a metric needs no learned model:
- each pixel takes the class of its nearest palette colour (palettes are far apart, so this
  survives a lossy VAE round trip);
- shapes are 4-connected components of one shape colour, large enough not to be fringe noise;
- a component's kind is the kind whose template, drawn over the component's bounding box the way
  world.py draws shapes, overlaps it best (IoU). Fill ratio (square 1, circle pi/4, triangle 1/2)
  alone cannot work at small sizes: a small circle at 32 px is a 4x4 block, identical to a square.
  Ties go to the expected kind, since then the pixels are exactly what that kind renders to;
- a component sits in the grid cell (world.cell_slices) holding its centroid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omnigen.data.shapes.world import (
    BACKGROUND_COLOURS,
    GRID,
    POSITIONS,
    SHAPE_COLOURS,
    SHAPE_KINDS,
    SIZES,
    kind_mask,
)

# Shape colours first, so class i < N_SHAPE_COLOURS is SHAPE_NAMES[i]; background colours after.
SHAPE_NAMES: tuple[str, ...] = tuple(SHAPE_COLOURS)
BACKGROUND_NAMES: tuple[str, ...] = tuple(BACKGROUND_COLOURS)
PALETTE_NAMES: tuple[str, ...] = SHAPE_NAMES + BACKGROUND_NAMES
PALETTE = np.array([*SHAPE_COLOURS.values(), *BACKGROUND_COLOURS.values()], dtype=np.float64)
N_SHAPE_COLOURS = len(SHAPE_NAMES)
# A shape component must cover this fraction of the smallest shape's area (a small triangle, about
# half its extent squared); smaller blobs are fringe or noise.
MIN_AREA_FRACTION = 0.35
# PSNR of identical images is infinite; report this finite cap so means and JSON stay usable.
MAX_PSNR = 100.0
# Restoration score: PSNR / PSNR_FOR_FULL_SCORE, clipped to [0, 1] (40 dB is visually lossless here).
PSNR_FOR_FULL_SCORE = 40.0
_SHIFTS = np.array([-0.5, -0.25, 0.0, 0.25, 0.5])  # sub-pixel template centres tried by classify_kind
_EXTENTS = np.array([-0.5, -0.25, 0.0, 0.25, 0.5])  # and half-extent adjustments, in pixels
POSITION_OF_CELL: dict[tuple[int, int], str] = {cell: name for name, cell in POSITIONS.items()}


@dataclass(frozen=True)
class Detection:
    colour: str
    kind: str
    position: str
    size: str
    mask: np.ndarray  # (H, W) bool

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def nearest_class(image: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) index of the nearest colour of `palette` (K, 3) for each pixel of an (H, W, 3) image."""
    pixels = image.reshape(-1, 1, 3).astype(np.float64)
    distances = ((pixels - palette[None]) ** 2).sum(-1)
    return distances.argmin(-1).reshape(image.shape[:2])


def palette_classes(image: np.ndarray) -> np.ndarray:
    """Index into PALETTE_NAMES for every pixel."""
    return nearest_class(image, PALETTE)


def components(classes: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """4-connected components of equal `classes` among `keep` pixels: (H, W) ids, 0 outside `keep`."""
    h, w = classes.shape
    big = h * w + 1
    labels = np.where(keep, np.arange(1, h * w + 1).reshape(h, w), big)
    # Min-label propagation: each pass spreads the smallest id one pixel further; converges after
    # the longest geodesic path, which is short for the compact shapes of this world.
    while True:
        best = labels.copy()
        for axis, step in ((0, 1), (0, -1), (1, 1), (1, -1)):
            shifted_labels = np.roll(labels, step, axis)
            same = np.roll(classes, step, axis) == classes
            # np.roll wraps around; the wrapped row/column must not connect.
            edge = [slice(None), slice(None)]
            edge[axis] = 0 if step == 1 else -1
            same[tuple(edge)] = False
            best = np.where(keep & same, np.minimum(best, shifted_labels), best)
        if np.array_equal(best, labels):
            break
        labels = best
    labels[~keep] = 0
    _, dense = np.unique(labels, return_inverse=True)
    return dense.reshape(h, w) if labels.min() == 0 else dense.reshape(h, w) + 1


def min_area(size: int) -> float:
    return MIN_AREA_FRACTION * 0.5 * (min(SIZES.values()) * size) ** 2


def cell_of(row: float, col: float, size: int) -> str:
    """Name of the grid cell containing the point (row, col) in pixel-centre coordinates."""
    grid_row = min(GRID - 1, max(0, int((row + 0.5) * GRID / size)))
    grid_col = min(GRID - 1, max(0, int((col + 0.5) * GRID / size)))
    return POSITION_OF_CELL[(grid_row, grid_col)]


def classify_kind(mask: np.ndarray, prefer: str | None = None) -> str:
    """Kind whose template over the mask's bounding box has the highest IoU with it (ties -> prefer).

    Small shapes are heavily aliased, so each template is tried at a few sub-pixel centres and
    extents and keeps its best IoU.
    """
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min() - 1, rows.max() + 2, cols.min() - 1, cols.max() + 2
    padded = np.pad(mask, 1)[top + 1 : bottom + 1, left + 1 : right + 1]
    half0 = max(bottom - top, right - left) / 2 - 1
    y0 = np.arange(top, bottom)[:, None] + 0.5 - (top + bottom) / 2
    x0 = np.arange(left, right)[None, :] + 0.5 - (left + right) / 2
    # Broadcast over (shift y, shift x, extent, row, col) to try every template at once.
    y = y0[None, None, None] - _SHIFTS[:, None, None, None, None]
    x = x0[None, None, None] - _SHIFTS[None, :, None, None, None]
    half = half0 + _EXTENTS[None, None, :, None, None]
    scores = {}
    for kind in SHAPE_KINDS:
        template = kind_mask(kind, y, x, half)
        overlap = (template & padded).sum((-2, -1)) / np.maximum(1, (template | padded).sum((-2, -1)))
        scores[kind] = float(overlap.max())
    best = max(scores.values())
    if prefer is not None and scores.get(prefer, -1.0) >= best - 1e-9:
        return prefer
    return max(scores, key=lambda k: scores[k])


def size_class(mask: np.ndarray, size: int) -> str:
    """The named size whose extent is nearest the mask's bounding-box side."""
    rows, cols = np.nonzero(mask)
    extent = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) / size
    return min(SIZES, key=lambda name: abs(SIZES[name] - extent))


def detect(image: np.ndarray, expected: dict[tuple[str, str], str] | None = None) -> list[Detection]:
    """Shapes in an image: components of shape colours above min_area, with kind, cell and size.

    `expected` maps (colour, position) to the expected kind there, used only to break kind ties.
    """
    size = image.shape[0]
    classes = palette_classes(image)
    ids = components(classes, classes < N_SHAPE_COLOURS)
    areas = np.bincount(ids.ravel())
    fringe = _fringe(ids, areas)
    found = []
    for index in range(1, int(ids.max()) + 1):
        if areas[index] < min_area(size) or fringe[index]:
            continue
        mask = ids == index
        rows, cols = np.nonzero(mask)
        colour = SHAPE_NAMES[int(classes[rows[0], cols[0]])]
        position = cell_of(float(rows.mean()), float(cols.mean()), size)
        prefer = (expected or {}).get((colour, position))
        found.append(Detection(colour, classify_kind(mask, prefer), position, size_class(mask, size), mask))
    return found


def _fringe(ids: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """Per component id: does it touch a larger shape component? Shapes never touch (cells keep
    them apart), so such a blob is a blurred rim of mixed colour (e.g. a VAE's), not a shape."""
    fringe = np.zeros(len(areas), dtype=bool)
    for a, b in ((ids[1:], ids[:-1]), (ids[:, 1:], ids[:, :-1])):
        touching = (a != b) & (a > 0) & (b > 0)
        a, b = a[touching], b[touching]
        fringe[a[areas[a] < areas[b]]] = True
        fringe[b[areas[b] < areas[a]]] = True
    return fringe


def background_name(image: np.ndarray) -> str:
    """Most frequent palette class over the whole image (shapes cover well under half of it)."""
    counts = np.bincount(palette_classes(image).ravel(), minlength=len(PALETTE_NAMES))
    return PALETTE_NAMES[int(counts.argmax())]


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB over all pixels (or `mask`), 0..255 scale, capped at MAX_PSNR (identical -> cap)."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        diff = diff[mask]
    if diff.size == 0:
        return MAX_PSNR
    mse = float((diff**2).mean())
    return MAX_PSNR if mse == 0 else min(MAX_PSNR, 10 * float(np.log10(255.0**2 / mse)))


def psnr_score(value: float) -> float:
    return float(min(1.0, max(0.0, value / PSNR_FOR_FULL_SCORE)))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; two empty masks agree perfectly."""
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


def dilate(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """Square (Chebyshev) dilation, edges not wrapped."""
    padded = np.pad(mask, radius)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def boundary_f1(pred: np.ndarray, truth: np.ndarray, tolerance: int = 1) -> float:
    """F1 of edge pixels, a match being within `tolerance` px (precision and recall both ways)."""
    if not pred.any() and not truth.any():
        return 1.0
    if not pred.any() or not truth.any():
        return 0.0
    precision = float((pred & dilate(truth, tolerance)).sum() / pred.sum())
    recall = float((truth & dilate(pred, tolerance)).sum() / truth.sum())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def grey(image: np.ndarray) -> np.ndarray:
    """Mean of the channels, float (maps are grey; a generated one may not be exactly)."""
    return image.astype(np.float64).mean(-1)
