"""subject_driven: a distinctive two-colour object from a reference image, placed in a new scene.

The reference image shows the subject alone, large and centred on a plain background. The
instruction names only its kind ("the circle from <img><|image_1|></img> at the top left and a
small blue square at the center on a white background"), so its two colours and their pattern
must come from the image. In the output it is drawn at size "large" in the stated cell, next to
the other, fully described shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from omnigen.data.shapes.sample import ShapesSample, image_tag, pick
from omnigen.data.shapes.world import (
    BACKGROUND_COLOURS,
    POSITIONS,
    SCENE_PHRASE,
    SHAPE_COLOURS,
    SHAPE_KINDS,
    SIZES,
    Scene,
    cell_offsets,
    describe_shape,
    join_phrases,
    kind_mask,
    render,
    sample_scene,
)

# Two-colour patterns, in the shape's own frame (`half` = half its extent):
# - striped: STRIPES horizontal bands of equal height, first colour at the top, alternating;
# - split: first colour on the left half (x < 0), second on the right;
# - dotted: first colour with a disc of the second, radius DOT_RADIUS * half, at the shape's
#   centroid (the centre; a third of `half` below it for the apex-up triangle).
PATTERNS: tuple[str, ...] = ("striped", "split", "dotted")
STRIPES = 4
DOT_RADIUS = 0.45
SUBJECT_SIZE = "large"  # in the output scene; the pattern needs the room
REFERENCE_EXTENT = 0.6  # subject extent in the reference image, as a fraction of the side
SUBJECT_PHRASE = "the {kind} from {image} at the {position}"


@dataclass(frozen=True)
class Subject:
    kind: str
    pattern: str
    colours: tuple[str, str]  # (first, second), distinct

    def __post_init__(self) -> None:
        object.__setattr__(self, "colours", tuple(self.colours))
        if self.kind not in SHAPE_KINDS or self.pattern not in PATTERNS:
            raise ValueError(
                f"Subject needs a kind in {SHAPE_KINDS} and a pattern in {PATTERNS}, "
                f"got {self.kind!r}, {self.pattern!r}"
            )
        if len(self.colours) != 2 or self.colours[0] == self.colours[1] or not set(self.colours) <= set(SHAPE_COLOURS):
            raise ValueError(f"Subject.colours must be two distinct shape colours, got {self.colours!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "pattern": self.pattern, "colours": list(self.colours)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Subject:
        return cls(kind=data["kind"], pattern=data["pattern"], colours=tuple(data["colours"]))


def pattern_masks(subject: Subject, y: np.ndarray, x: np.ndarray, half: float) -> tuple[np.ndarray, np.ndarray]:
    """(covered, second_colour) at offsets (y, x) from the subject's centre."""
    covered = kind_mask(subject.kind, y, x, half)
    if subject.pattern == "striped":
        band = np.floor((y + half) / (2 * half) * STRIPES)
        second = np.broadcast_to(band % 2 == 1, covered.shape)
    elif subject.pattern == "split":
        second = np.broadcast_to(x >= 0, covered.shape)
    else:
        centre = half / 3 if subject.kind == "triangle" else 0.0
        second = x * x + (y - centre) ** 2 <= (DOT_RADIUS * half) ** 2
    return covered, covered & second


def _paint(
    image: np.ndarray, subject: Subject, y: np.ndarray, x: np.ndarray, half: float, rows: slice, cols: slice
) -> None:
    covered, second = pattern_masks(subject, y, x, half)
    view = image[rows, cols]
    view[covered & ~second] = SHAPE_COLOURS[subject.colours[0]]
    view[second] = SHAPE_COLOURS[subject.colours[1]]


def subject_pixels(subject: Subject, position: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Full-size boolean masks (covered, second colour) of the subject drawn in a scene cell."""
    (rows, cols), y, x = cell_offsets(position, size)
    covered, second = pattern_masks(subject, y, x, SIZES[SUBJECT_SIZE] / 2)
    full = np.zeros((2, size, size), dtype=bool)
    full[0, rows, cols], full[1, rows, cols] = covered, second
    return full[0], full[1]


def render_with_subject(scene: Scene, subject: Subject, position: str, size: int) -> np.ndarray:
    """render(scene) with the subject drawn at size SUBJECT_SIZE in the (free) cell `position`."""
    if position in {s.position for s in scene.shapes}:
        raise ValueError(f"subject position {position!r} is taken by another shape")
    image = render(scene, size)
    (rows, cols), y, x = cell_offsets(position, size)
    _paint(image, subject, y, x, SIZES[SUBJECT_SIZE] / 2, rows, cols)
    return image


def render_reference(subject: Subject, background: str, size: int) -> np.ndarray:
    """The subject alone, centred, REFERENCE_EXTENT of the side, on a plain background."""
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUND_COLOURS[background]
    offsets = (np.arange(size) + 0.5) / size - 0.5
    _paint(image, subject, offsets[:, None], offsets[None, :], REFERENCE_EXTENT / 2, slice(None), slice(None))
    return image


def make_subject_driven(rng: np.random.Generator, image_size: int) -> ShapesSample:
    first, second = (list(SHAPE_COLOURS)[int(i)] for i in rng.choice(len(SHAPE_COLOURS), size=2, replace=False))
    subject = Subject(kind=pick(rng, SHAPE_KINDS), pattern=pick(rng, PATTERNS), colours=(first, second))
    reference_background = pick(rng, list(BACKGROUND_COLOURS))
    scene = sample_scene(rng, min_shapes=1, max_shapes=2)  # the other shapes, and the background
    taken = {s.position for s in scene.shapes}
    position = pick(rng, [p for p in POSITIONS if p not in taken])
    subject_phrase = SUBJECT_PHRASE.format(kind=subject.kind, image=image_tag(1), position=position)
    # The subject takes its place in reading order among the described shapes.
    phrases = sorted(
        [(POSITIONS[position], subject_phrase), *((POSITIONS[s.position], describe_shape(s)) for s in scene.shapes)]
    )
    instruction = SCENE_PHRASE.format(shapes=join_phrases([p for _, p in phrases]), background=scene.background)
    return ShapesSample(
        instruction=instruction,
        input_images=[render_reference(subject, reference_background, image_size)],
        output_image=render_with_subject(scene, subject, position, image_size),
        task="subject",
        family="subject_driven",
        spec={
            "subject": {**subject.to_dict(), "size": SUBJECT_SIZE, "position": position},
            "reference": {"background": reference_background, "extent": REFERENCE_EXTENT},
            "scene": scene.to_dict(),  # the other shapes and the background
        },
    )
