"""text_to_image: a mini GenEval over the read-back shapes of a generated scene.

Expected shapes are matched one-to-one to detections of the same kind (greedily, preferring the
same colour, then the same cell), so each attribute is judged on the object that was drawn:
- object: fraction of expected shapes matched (a shape of that kind is present);
- colour / position / size: fraction of expected shapes whose match has the right colour / cell /
  size (an unmatched shape scores 0 on all of them);
- count: 1 if exactly as many shapes were drawn as expected, else 0;
- placed: fraction of expected shapes with a detection of their colour in their cell, whatever its
  kind (a model that draws every shape as a square still places it: object, colour and position
  say the kind is wrong, this says the rest is right);
- background: 1 if the most frequent palette colour is the expected background;
- exact_scene: 1 if object, colour, position, size, count and background are all perfect.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from omnigen.metrics.base import Detection, background_name, detect


def expected_kinds(shapes: list[dict[str, str]]) -> dict[tuple[str, str], str]:
    return {(s["colour"], s["position"]): s["kind"] for s in shapes}


def match(shapes: list[dict[str, str]], found: list[Detection]) -> list[Detection | None]:
    """For each expected shape, its matched detection (same kind) or None."""
    pairs = []
    for i, shape in enumerate(shapes):
        for j, det in enumerate(found):
            if det.kind == shape["kind"]:
                quality = 4 * (det.colour == shape["colour"]) + 2 * (det.position == shape["position"])
                pairs.append((-(quality + (det.size == shape["size"])), i, j))
    matched: list[Detection | None] = [None] * len(shapes)
    used: set[int] = set()
    for _, i, j in sorted(pairs):
        if matched[i] is None and j not in used:
            matched[i] = found[j]
            used.add(j)
    return matched


def scene_scores(scene: dict[str, Any], found: list[Detection], background: str) -> dict[str, float]:
    """Scores of detections against a scene spec {"background", "shapes"}."""
    shapes = scene["shapes"]
    matched = match(shapes, found)
    n = len(shapes)

    def fraction(test: str) -> float:
        return sum(m is not None and getattr(m, test) == s[test] for s, m in zip(shapes, matched, strict=True)) / n

    scores = {
        "object": sum(m is not None for m in matched) / n,
        "colour": fraction("colour"),
        "position": fraction("position"),
        "size": fraction("size"),
        "count": float(len(found) == n),
        "background": float(background == scene["background"]),
    }
    scores["exact_scene"] = float(all(v == 1.0 for v in scores.values()))
    placed = {(d.colour, d.position) for d in found}
    scores["placed"] = sum((s["colour"], s["position"]) in placed for s in shapes) / n
    return scores


def score_t2i(spec: dict[str, Any], generated: np.ndarray) -> dict[str, float]:
    scene = spec["scene"]
    found = detect(generated, expected_kinds(scene["shapes"]))
    return scene_scores(scene, found, background_name(generated))
