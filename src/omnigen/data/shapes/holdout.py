"""Attribute combinations kept out of training, for compositional generalisation (as GenEval tests it).

A `Holdout` names (colour, kind) and (kind, position) pairs. A sample holds a pair when any image of it
(input or output) shows a shape with it: every scene its spec records (t2i's scene, an edit's source and
target, a condition's or CV task's scene, a subject-driven sample's other shapes) and the subject of
subject_driven, in each of its two colours, at its cell in the output and at the centre of its reference
image. `data.holdout=combos` trains on samples holding none (sample_at redraws the others);
`python -m omnigen.evaluate suite=held_out_combos` scores only samples holding one, `suite=seen_combos`
only samples holding none.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from omnigen.data.shapes.sample import ShapesSample
from omnigen.data.shapes.world import POSITIONS, SHAPE_COLOURS, SHAPE_KINDS


@dataclass(frozen=True)
class Holdout:
    colour_kind: frozenset[tuple[str, str]]
    kind_position: frozenset[tuple[str, str]]

    def __post_init__(self) -> None:
        for colour, kind in self.colour_kind:
            if colour not in SHAPE_COLOURS or kind not in SHAPE_KINDS:
                raise ValueError(f"Holdout.colour_kind: ({colour!r}, {kind!r}) is not a (shape colour, kind) pair")
        for kind, position in self.kind_position:
            if kind not in SHAPE_KINDS or position not in POSITIONS:
                raise ValueError(f"Holdout.kind_position: ({kind!r}, {position!r}) is not a (kind, position) pair")

    def holds(self, sample: ShapesSample) -> bool:
        """Whether any image of the sample shows a held-out pair."""
        return any(
            (colour, kind) in self.colour_kind or (kind, position) in self.kind_position
            for colour, kind, position in appearances(sample.spec)
        )

    def excludes(self, sample: ShapesSample) -> bool:
        """What training keeps: no image of the sample shows a held-out pair."""
        return not self.holds(sample)


# 3 of the 21 (colour, kind) pairs, each kind once, and 3 of the 27 (kind, position) pairs, none at the centre
# (a subject's reference image shows it there, so a centre pair would keep a whole kind of subject out).
# About a quarter of the shapes drawn hold one, so about half of the three-shape scenes do.
HOLDOUTS: dict[str, Holdout] = {
    "combos": Holdout(
        colour_kind=frozenset({("red", "circle"), ("blue", "triangle"), ("yellow", "square")}),
        kind_position=frozenset({("circle", "top right"), ("square", "bottom left"), ("triangle", "left")}),
    )
}


def holdout_named(name: str | None) -> Holdout | None:
    """HOLDOUTS[name]; None for none."""
    if name is None:
        return None
    if name not in HOLDOUTS:
        raise ValueError(f"unknown Shapes-X2I holdout {name!r}; known: {sorted(HOLDOUTS)} (or null for none)")
    return HOLDOUTS[name]


def appearances(spec: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(colour, kind, position) of every shape any image of a sample shows, read from its spec."""
    for value in spec.values():
        if isinstance(value, dict) and "shapes" in value:  # a scene: scene, source, target
            for shape in value["shapes"]:
                yield shape["colour"], shape["kind"], shape["position"]
    if subject := spec.get("subject"):
        for colour in subject["colours"]:
            yield colour, subject["kind"], subject["position"]
            yield colour, subject["kind"], "center"  # the reference image
