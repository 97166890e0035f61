"""The Shapes-X2I world: seeded scenes of flat shapes on a 3x3 grid.

Scenes are small enough to render in microseconds and fully described by a
`Scene` value, so every rendered image has exact, programmatically checkable
ground truth (colours are exact palette values, shapes never overlap).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

# Saturated and pairwise far apart in RGB, so a metric can classify a pixel by
# nearest palette colour even after a lossy VAE round trip.
SHAPE_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 180, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 190),
    "orange": (250, 130, 20),
    "cyan": (30, 210, 220),
}
# Disjoint from SHAPE_COLOURS, so no shape can vanish into its background.
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
}
SHAPE_KINDS: tuple[str, ...] = ("circle", "square", "triangle")
# Extent (bounding-box side) as a fraction of the image side. A cell is 1/3 of
# the side, so "large" leaves a margin of ~0.04 on each side of its cell.
SIZES: dict[str, float] = {"small": 0.14, "large": 0.26}
POSITIONS: dict[str, tuple[int, int]] = {
    "top left": (0, 0),
    "top": (0, 1),
    "top right": (0, 2),
    "left": (1, 0),
    "center": (1, 1),
    "right": (1, 2),
    "bottom left": (2, 0),
    "bottom": (2, 1),
    "bottom right": (2, 2),
}
GRID = 3
# Image sides must survive VAE downsampling (x8) followed by 2x2 patching.
SIZE_MULTIPLE = 16

# Caption grammar. vocab.py reads the literal words out of these templates, so
# the tokenizer vocabulary cannot drift from what describe() produces.
SHAPE_PHRASE = "a {size} {colour} {kind} at the {position}"
SCENE_PHRASE = "{shapes} on a {background} background"
# Layout captions leave the size out (a condition map or the input image shows it).
LAYOUT_PHRASE = "a {colour} {kind} at the {position}"
LIST_SEPARATOR = ", "
LIST_LAST_SEPARATOR = " and "


def _check_choice(owner: str, field: str, value: Any, allowed: Any) -> None:
    if value not in allowed:
        raise ValueError(f"{owner}.{field} must be one of {sorted(allowed)}, got {value!r}")


@dataclass(frozen=True)
class ShapeSpec:
    kind: str
    colour: str
    size: str
    position: str

    def __post_init__(self) -> None:
        _check_choice("ShapeSpec", "kind", self.kind, SHAPE_KINDS)
        _check_choice("ShapeSpec", "colour", self.colour, SHAPE_COLOURS)
        _check_choice("ShapeSpec", "size", self.size, SIZES)
        _check_choice("ShapeSpec", "position", self.position, POSITIONS)

    @property
    def name(self) -> str:
        """Referring expression, unambiguous within a valid scene."""
        return f"{self.colour} {self.kind}"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "colour": self.colour, "size": self.size, "position": self.position}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> ShapeSpec:
        return cls(kind=data["kind"], colour=data["colour"], size=data["size"], position=data["position"])


@dataclass(frozen=True)
class Scene:
    background: str
    shapes: tuple[ShapeSpec, ...]

    def __post_init__(self) -> None:
        _check_choice("Scene", "background", self.background, BACKGROUND_COLOURS)
        # Accept any sequence but store a tuple, so scenes stay hashable/comparable.
        object.__setattr__(self, "shapes", tuple(self.shapes))
        if not self.shapes:
            raise ValueError("Scene.shapes must contain at least one shape, got ()")
        for shape in self.shapes:
            if not isinstance(shape, ShapeSpec):
                raise ValueError(f"Scene.shapes must contain ShapeSpec values, got {shape!r}")
        positions = [s.position for s in self.shapes]
        if len(set(positions)) != len(positions):
            raise ValueError(f"Scene.shapes must occupy distinct cells, got positions {positions}")
        names = [s.name for s in self.shapes]
        if len(set(names)) != len(names):
            raise ValueError(f"Scene.shapes must have unique (colour, kind) pairs, got {names}")

    def to_dict(self) -> dict[str, Any]:
        return {"background": self.background, "shapes": [s.to_dict() for s in self.shapes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        return cls(background=data["background"], shapes=tuple(ShapeSpec.from_dict(s) for s in data["shapes"]))


def sample_scene(rng: np.random.Generator, min_shapes: int = 1, max_shapes: int = 3) -> Scene:
    """Draw a valid scene with between min_shapes and max_shapes shapes (inclusive)."""
    if not 1 <= min_shapes <= max_shapes <= len(POSITIONS):
        raise ValueError(f"need 1 <= min_shapes <= max_shapes <= {len(POSITIONS)}, got {min_shapes}, {max_shapes}")
    n = int(rng.integers(min_shapes, max_shapes + 1))
    positions = list(POSITIONS)
    colours = list(SHAPE_COLOURS)
    # Drawing distinct cells and distinct (colour, kind) pairs without
    # replacement satisfies both invariants by construction.
    cells = sorted(rng.choice(len(positions), size=n, replace=False))  # sorted: reading order
    pairs = rng.choice(len(colours) * len(SHAPE_KINDS), size=n, replace=False)
    sizes = rng.integers(0, len(SIZES), size=n)
    shapes = tuple(
        ShapeSpec(
            kind=SHAPE_KINDS[int(pair) % len(SHAPE_KINDS)],
            colour=colours[int(pair) // len(SHAPE_KINDS)],
            size=list(SIZES)[int(size)],
            position=positions[int(cell)],
        )
        for cell, pair, size in zip(cells, pairs, sizes, strict=True)
    )
    background = list(BACKGROUND_COLOURS)[int(rng.integers(len(BACKGROUND_COLOURS)))]
    return Scene(background=background, shapes=shapes)


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or size <= 0 or size % SIZE_MULTIPLE:
        raise ValueError(f"image size must be a positive multiple of {SIZE_MULTIPLE}, got {size!r}")


@cache
def _cell_range(index: int, size: int) -> tuple[int, int]:
    # Pixels whose centres fall inside [index/3, (index+1)/3) of the side. The
    # bound is never exactly an integer (2*index*size - 3 is odd), so no ties.
    lo = int(np.ceil(index * size / GRID - 0.5))
    hi = int(np.ceil((index + 1) * size / GRID - 0.5))
    return lo, hi


def cell_slices(position: str, size: int) -> tuple[slice, slice]:
    """(rows, cols) pixel slices of a grid cell; every shape lies inside its cell."""
    _check_size(size)
    row, col = POSITIONS[position]
    return slice(*_cell_range(row, size)), slice(*_cell_range(col, size))


def cell_centre(position: str, size: int) -> tuple[int, int]:
    """(row, col) of the pixel containing the cell's centre; always inside its shape."""
    _check_size(size)
    row, col = POSITIONS[position]
    return int((row + 0.5) * size / GRID), int((col + 0.5) * size / GRID)


def kind_mask(kind: str, y: np.ndarray, x: np.ndarray, half: float) -> np.ndarray:
    """Which offsets (y, x) from a shape's centre it covers; `half` is half its extent (any units)."""
    if kind == "circle":
        return x * x + y * y <= half * half
    if kind == "square":
        return (np.abs(x) <= half) & (np.abs(y) <= half)
    # triangle, apex up: half-width grows linearly from 0 at the apex to `half` at the base
    return (y <= half) & (np.abs(x) <= (y + half) / 2)


def cell_offsets(position: str, size: int) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """A cell's (rows, cols) slices and its pixel centres' offsets (y as a column, x as a row) from the
    cell centre, in units of the image side."""
    rows, cols = cell_slices(position, size)
    grid_row, grid_col = POSITIONS[position]
    y = (np.arange(rows.start, rows.stop) + 0.5) / size - (grid_row + 0.5) / GRID
    x = (np.arange(cols.start, cols.stop) + 0.5) / size - (grid_col + 0.5) / GRID
    return (rows, cols), y[:, None], x[None, :]


def _mask_in_cell(shape: ShapeSpec, size: int) -> tuple[tuple[slice, slice], np.ndarray]:
    return _cell_mask(shape.kind, shape.size, shape.position, size)


@cache
def _cell_mask(kind: str, extent: str, position: str, size: int) -> tuple[tuple[slice, slice], np.ndarray]:
    # 54 masks per image side, drawn once: rendering is most of what regenerating a training stream costs.
    (rows, cols), y, x = cell_offsets(position, size)
    mask = kind_mask(kind, y, x, SIZES[extent] / 2)
    mask.flags.writeable = False  # shared by every render
    return (rows, cols), mask


def shape_mask(shape: ShapeSpec, size: int) -> np.ndarray:
    """Boolean (size, size) mask of the pixels render() paints for this shape."""
    (rows, cols), local = _mask_in_cell(shape, size)
    mask = np.zeros((size, size), dtype=bool)
    mask[rows, cols] = local
    return mask


def render(scene: Scene, size: int) -> np.ndarray:
    """Render to uint8 (size, size, 3) with hard edges, so colours are exact palette values."""
    _check_size(size)
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUND_COLOURS[scene.background]
    for shape in scene.shapes:
        (rows, cols), local = _mask_in_cell(shape, size)
        image[rows, cols][local] = SHAPE_COLOURS[shape.colour]
    return image


def label_map(scene: Scene, size: int) -> np.ndarray:
    """(size, size) int array: 0 on the background, i + 1 on the pixels of scene.shapes[i]."""
    _check_size(size)
    labels = np.zeros((size, size), dtype=np.int64)
    for i, shape in enumerate(scene.shapes):
        (rows, cols), local = _mask_in_cell(shape, size)
        labels[rows, cols][local] = i + 1
    return labels


def join_phrases(phrases: list[str]) -> str:
    """'A', 'A and B', 'A, B and C'."""
    if len(phrases) == 1:
        return phrases[0]
    return LIST_SEPARATOR.join(phrases[:-1]) + LIST_LAST_SEPARATOR + phrases[-1]


def describe_shape(shape: ShapeSpec) -> str:
    return SHAPE_PHRASE.format(size=shape.size, colour=shape.colour, kind=shape.kind, position=shape.position)


def describe(scene: Scene) -> str:
    """Caption, e.g. 'a large red circle at the top left and ... on a white background'."""
    shapes = join_phrases([describe_shape(s) for s in scene.shapes])
    return SCENE_PHRASE.format(shapes=shapes, background=scene.background)


def describe_layout(scene: Scene) -> str:
    """Caption without sizes, e.g. 'a red circle at the top left and ... on a white background'."""
    shapes = join_phrases(
        [LAYOUT_PHRASE.format(colour=s.colour, kind=s.kind, position=s.position) for s in scene.shapes]
    )
    return SCENE_PHRASE.format(shapes=shapes, background=scene.background)
