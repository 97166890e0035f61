"""mixed_modal edits (recolour / remove / add / move), read back from the generated image.

- edit_correct: 1 if the edit happened at the named object, else 0:
  recolour: a shape of the object's kind and the new colour in its cell;
  remove: no shape of the object's colour and kind anywhere, and nothing left in its cell;
  add: a shape of the new kind and colour in its cell;
  move: a shape of the object's colour and kind in the new cell, and nothing left in the old one.
- unchanged_psnr (dB) / unchanged_score (= min(1, PSNR/40)): PSNR against the target over the
  pixels outside the edit region, the union of the grid cells of every shape that differs
  between the source and target specs (cells, not exact pixels, so a slightly blurred or
  re-drawn edit is not charged to the unchanged region).
- plus the target scene's t2i scores (object ... exact_scene), prefixed "target_".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from omnigen.data.shapes.world import Scene, cell_slices, render
from omnigen.metrics.base import Detection, background_name, detect, psnr, psnr_score
from omnigen.metrics.t2i import expected_kinds, scene_scores


def edit_region(spec: dict[str, Any], size: int) -> np.ndarray:
    """(size, size) bool: the cells of shapes present in only one of the source and target scenes."""
    source = {tuple(sorted(s.items())) for s in spec["source"]["shapes"]}
    target = {tuple(sorted(s.items())) for s in spec["target"]["shapes"]}
    region = np.zeros((size, size), dtype=bool)
    for shape in source ^ target:
        region[cell_slices(dict(shape)["position"], size)] = True
    return region


def _has(found: list[Detection], position: str, colour: str, kind: str) -> bool:
    return any(d.position == position and d.colour == colour and d.kind == kind for d in found)


def edit_correct(edit: dict[str, Any], found: list[Detection]) -> bool:
    obj = edit["object"]
    if edit["kind"] == "recolour":
        return _has(found, obj["position"], edit["colour"], obj["kind"])
    if edit["kind"] == "remove":
        gone = not any(d.colour == obj["colour"] and d.kind == obj["kind"] for d in found)
        return gone and not any(d.position == obj["position"] for d in found)
    if edit["kind"] == "add":
        return _has(found, obj["position"], obj["colour"], obj["kind"])
    moved = _has(found, edit["position"], obj["colour"], obj["kind"])
    return moved and not any(d.position == obj["position"] for d in found)


def score_edit(spec: dict[str, Any], generated: np.ndarray, target: np.ndarray | None = None) -> dict[str, float]:
    """`target` defaults to rendering spec["target"] (the sample's output image)."""
    size = generated.shape[0]
    if target is None:
        target = render(Scene.from_dict(spec["target"]), size)
    found = detect(generated, expected_kinds(spec["target"]["shapes"] + [spec["edit"]["object"]]))
    keep = ~edit_region(spec, size)
    value = psnr(generated, target, keep)
    scores = {
        "edit_correct": float(edit_correct(spec["edit"], found)),
        "unchanged_psnr": value,
        "unchanged_score": psnr_score(value),
    }
    target_scores = scene_scores(spec["target"], found, background_name(generated))
    return scores | {f"target_{k}": v for k, v in target_scores.items()}
