"""Task families over the Shapes-X2I world, one per family of omnigen.data.schema.TASKS
(few-shot episodes excepted: the data layer builds those from any family).

- text_to_image ("t2i"): caption -> scene (this module).
- mixed_modal ("edit/<kind>"): scene + instruction -> edited scene (this module).
- subject_driven ("subject"): reference image of a two-colour object -> a new scene with it
  (subject.py).
- visual_condition ("canny", "segmentation", "depth", "bbox"): condition map + layout caption ->
  scene (conditions.py).
- cv_tasks ("edges", "segmentation", "depth", "referring": scene -> map; "deblur", "denoise",
  "inpaint", "colourise": degraded -> clean scene) (conditions.py).

Every sample carries a JSON-serialisable `spec` with its full ground truth, so
metrics can check generated images against it without any learned model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from omnigen.data.shapes import conditions, subject
from omnigen.data.shapes.sample import IMAGE_PREFIX, ShapesSample, pick
from omnigen.data.shapes.world import (
    POSITIONS,
    SHAPE_COLOURS,
    SHAPE_KINDS,
    SIZES,
    Scene,
    ShapeSpec,
    describe,
    describe_shape,
    render,
    sample_scene,
)

EDIT_KINDS: tuple[str, ...] = ("recolour", "remove", "add", "move")
# Edit grammar; vocab.py reads the literal words out of these templates.
EDIT_TEMPLATES: dict[str, str] = {
    "recolour": "make the {object} {colour}",
    "remove": "remove the {object}",
    "add": "add {shape}",
    "move": "move the {object} to the {position}",
}
# Every task each family emits.
FAMILY_TASKS: dict[str, tuple[str, ...]] = {
    "text_to_image": ("t2i",),
    "mixed_modal": tuple(f"edit/{kind}" for kind in EDIT_KINDS),
    "subject_driven": ("subject",),
    "visual_condition": tuple(conditions.VISUAL_CONDITIONS),
    "cv_tasks": conditions.CV_TASKS,
}
FAMILIES: tuple[str, ...] = tuple(FAMILY_TASKS)
# Every instruction template beyond the caption grammar of world.py, and the words filled into
# them that are not palette/position names; vocab.py reads its vocabulary out of these.
INSTRUCTION_TEMPLATES: tuple[str, ...] = (
    *EDIT_TEMPLATES.values(),
    subject.SUBJECT_PHRASE,
    conditions.VISUAL_CONDITION_TEMPLATE,
    *conditions.CV_TEMPLATES.values(),
)
FILLER_PHRASES: tuple[str, ...] = tuple(name for _, name in conditions.VISUAL_CONDITIONS.values())


def _free_positions(scene: Scene) -> list[str]:
    taken = {s.position for s in scene.shapes}
    return [p for p in POSITIONS if p not in taken]


def _free_colours(scene: Scene, kind: str) -> list[str]:
    # Colours that would not duplicate an existing (colour, kind) pair.
    taken = {s.colour for s in scene.shapes if s.kind == kind}
    return [c for c in SHAPE_COLOURS if c not in taken]


def _replace_shape(scene: Scene, old: ShapeSpec, new: ShapeSpec | None) -> Scene:
    shapes = tuple(new if s == old else s for s in scene.shapes)
    return Scene(background=scene.background, shapes=tuple(s for s in shapes if s is not None))


def _edit_recolour(rng: np.random.Generator, source: Scene) -> tuple[Scene, str, dict[str, Any]]:
    obj = source.shapes[int(rng.integers(len(source.shapes)))]
    # _free_colours excludes obj's own colour, so the edit always changes something.
    colour = pick(rng, _free_colours(source, obj.kind))
    target = _replace_shape(source, obj, replace(obj, colour=colour))
    text = EDIT_TEMPLATES["recolour"].format(object=obj.name, colour=colour)
    return target, text, {"object": obj.to_dict(), "colour": colour}


def _edit_remove(rng: np.random.Generator, source: Scene) -> tuple[Scene, str, dict[str, Any]]:
    obj = source.shapes[int(rng.integers(len(source.shapes)))]
    target = _replace_shape(source, obj, None)
    return target, EDIT_TEMPLATES["remove"].format(object=obj.name), {"object": obj.to_dict()}


def _edit_add(rng: np.random.Generator, source: Scene) -> tuple[Scene, str, dict[str, Any]]:
    kind = pick(rng, list(SHAPE_KINDS))
    new = ShapeSpec(
        kind=kind,
        colour=pick(rng, _free_colours(source, kind)),
        size=pick(rng, list(SIZES)),
        position=pick(rng, _free_positions(source)),
    )
    target = Scene(background=source.background, shapes=source.shapes + (new,))
    return target, EDIT_TEMPLATES["add"].format(shape=describe_shape(new)), {"object": new.to_dict()}


def _edit_move(rng: np.random.Generator, source: Scene) -> tuple[Scene, str, dict[str, Any]]:
    obj = source.shapes[int(rng.integers(len(source.shapes)))]
    position = pick(rng, _free_positions(source))
    target = _replace_shape(source, obj, replace(obj, position=position))
    text = EDIT_TEMPLATES["move"].format(object=obj.name, position=position)
    return target, text, {"object": obj.to_dict(), "position": position}


_EDITS: dict[str, Callable[[np.random.Generator, Scene], tuple[Scene, str, dict[str, Any]]]] = {
    "recolour": _edit_recolour,
    "remove": _edit_remove,
    "add": _edit_add,
    "move": _edit_move,
}


def _make_t2i(rng: np.random.Generator, image_size: int) -> ShapesSample:
    scene = sample_scene(rng)
    return ShapesSample(
        instruction=describe(scene),
        input_images=[],
        output_image=render(scene, image_size),
        task="t2i",
        family="text_to_image",
        spec={"scene": scene.to_dict()},
    )


def _make_edit(rng: np.random.Generator, image_size: int) -> ShapesSample:
    kind = pick(rng, list(EDIT_KINDS))
    # A scene must keep at least one shape, so removal needs two to start with.
    source = sample_scene(rng, min_shapes=2 if kind == "remove" else 1, max_shapes=3)
    target, text, details = _EDITS[kind](rng, source)
    return ShapesSample(
        instruction=IMAGE_PREFIX + text,
        input_images=[render(source, image_size)],
        output_image=render(target, image_size),
        task=f"edit/{kind}",
        family="mixed_modal",
        spec={"source": source.to_dict(), "target": target.to_dict(), "edit": {"kind": kind, **details}},
        edit_source=0,
    )


_FAMILY_MAKERS: dict[str, Callable[[np.random.Generator, int], ShapesSample]] = {
    "text_to_image": _make_t2i,
    "mixed_modal": _make_edit,
    "subject_driven": subject.make_subject_driven,
    **conditions.MAKERS,
}


def make_sample(family: str, rng: np.random.Generator, image_size: int) -> ShapesSample:
    if family not in _FAMILY_MAKERS:
        raise ValueError(f"unknown Shapes-X2I family {family!r}; known families: {list(FAMILIES)}")
    return _FAMILY_MAKERS[family](rng, image_size)


def family_probabilities(families: dict[str, float]) -> tuple[list[str], np.ndarray]:
    """Validated family names and their normalised probabilities."""
    names = list(families)
    for name in names:
        if name not in _FAMILY_MAKERS:
            raise ValueError(f"unknown Shapes-X2I family {name!r}; known families: {list(FAMILIES)}")
    weights = np.asarray([families[n] for n in names], dtype=np.float64)
    if weights.size == 0 or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"family ratios must be non-negative with a positive sum, got {families}")
    return names, weights / weights.sum()


MAX_REDRAWS = 1000  # a filter that rejects this many draws in a row rejects (nearly) everything


def sample_at(
    index: int,
    seed: int,
    families: dict[str, float],
    image_size: int,
    accept: Callable[[ShapesSample], bool] | None = None,
) -> ShapesSample:
    """Sample `index` of the stream `seed`: a pure function of its arguments (random access). With `accept`
    (e.g. Holdout.excludes), a sample it refuses is redrawn in the same family from (seed, index, attempt),
    so the family mix stays as set and the samples it accepts are the unfiltered stream's."""
    names, probabilities = family_probabilities(families)
    # Seeding per (seed, index) rather than advancing one stream makes samples
    # independent of iteration order, worker sharding and resumption.
    rng = np.random.default_rng([seed, index])
    family = names[int(rng.choice(len(names), p=probabilities))]
    sample = make_sample(family, rng, image_size)
    attempt = 0
    while accept is not None and not accept(sample):
        attempt += 1
        if attempt > MAX_REDRAWS:
            raise ValueError(f"sample {index} of stream {seed}: {MAX_REDRAWS} {family} draws in a row refused")
        sample = make_sample(family, np.random.default_rng([seed, index, attempt]), image_size)
    return sample
