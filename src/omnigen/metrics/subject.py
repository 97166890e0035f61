"""subject_driven: the reference subject (kind, two colours, pattern) in its stated cell, and the
rest of the scene as t2i.

- subject_colours: 1 if both subject colours are in the stated cell, each on at least
  MIN_COLOUR_SHARE of the pixels it should cover there;
- subject_kind: 1 if the union of the subject-colour pixels in the cell reads as the subject's kind;
- subject_pattern: mean over the two colours of the IoU (within the cell) between the pixels of
  that colour and where the pattern puts it (subject.subject_pixels);
- subject_fidelity: 1 if colours and kind are right and subject_pattern >= PATTERN_IOU;
- object ... exact_scene: t2i scores of spec["scene"] (the other shapes and the background),
  ignoring detections in the subject's cell (the subject reads as two components there).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from omnigen.data.shapes.subject import Subject, subject_pixels
from omnigen.data.shapes.world import cell_slices
from omnigen.metrics.base import (
    PALETTE_NAMES,
    background_name,
    classify_kind,
    detect,
    iou,
    palette_classes,
)
from omnigen.metrics.t2i import expected_kinds, scene_scores

MIN_COLOUR_SHARE = 0.5
PATTERN_IOU = 0.5


def subject_scores(spec: dict[str, Any], generated: np.ndarray) -> dict[str, float]:
    info = spec["subject"]
    subject, position, size = Subject.from_dict(info), info["position"], generated.shape[0]
    covered, second = subject_pixels(subject, position, size)
    expected = (covered & ~second, second)
    cell = np.zeros((size, size), dtype=bool)
    cell[cell_slices(position, size)] = True
    classes = palette_classes(generated)
    drawn = [cell & (classes == PALETTE_NAMES.index(c)) for c in subject.colours]
    colours_ok = all((d & e).sum() >= MIN_COLOUR_SHARE * e.sum() for d, e in zip(drawn, expected, strict=True))
    union = drawn[0] | drawn[1]
    kind_ok = bool(union.any()) and classify_kind(union, prefer=subject.kind) == subject.kind
    pattern = float(np.mean([iou(d, e) for d, e in zip(drawn, expected, strict=True)]))
    return {
        "subject_colours": float(colours_ok),
        "subject_kind": float(kind_ok),
        "subject_pattern": pattern,
        "subject_fidelity": float(colours_ok and kind_ok and pattern >= PATTERN_IOU),
    }


def score_subject(spec: dict[str, Any], generated: np.ndarray) -> dict[str, float]:
    scene = spec["scene"]
    found = [d for d in detect(generated, expected_kinds(scene["shapes"])) if d.position != spec["subject"]["position"]]
    return subject_scores(spec, generated) | scene_scores(scene, found, background_name(generated))
