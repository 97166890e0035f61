"""visual_condition (canny / segmentation / depth / bbox): the scene as t2i, plus adherence of the
generated image to the condition map, both read back from the generated pixels:
- foreground_iou: IoU of the detected shape pixels with the condition's shape pixels (every map);
- canny -> edge_f1: the generated edge map (a detected-shape pixel whose 4-neighbour is not the
  same shape, as maps.edge_pixels) vs the condition's edges, F1 with a 1 px match tolerance;
- segmentation -> seg_miou: mean IoU over the classes (background, kinds) present in either the
  kind map of the detections or the ground truth;
- depth -> depth_accuracy: fraction of pixels within DEPTH_TOLERANCE grey levels of the condition,
  the generated depth being the depth map of the detections (their cells' rows);
- bbox -> box_iou: mean over condition boxes of the best IoU with a detection's bounding box.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from omnigen.data.shapes.maps import (
    DEPTH_BACKGROUND,
    DEPTH_ROWS,
    bounding_box,
    depth_map,
    edge_pixels,
    shape_boxes,
)
from omnigen.data.shapes.world import POSITIONS, SHAPE_KINDS, Scene, label_map
from omnigen.metrics.base import Detection, background_name, boundary_f1, detect, iou
from omnigen.metrics.t2i import expected_kinds, scene_scores

DEPTH_TOLERANCE = 8  # grey levels; shape levels are >= 40 apart from each other and the ground


def detection_labels(found: list[Detection], size: int) -> np.ndarray:
    """Label map of the detections: 0 background, i + 1 on found[i]'s pixels."""
    labels = np.zeros((size, size), dtype=np.int64)
    for i, det in enumerate(found):
        labels[det.mask] = i + 1
    return labels


def kind_classes(labels: np.ndarray, kinds: list[str]) -> np.ndarray:
    """Segmentation classes: 0 background, 1 + SHAPE_KINDS.index(kind) on each labelled shape."""
    lut = np.array([0, *(1 + SHAPE_KINDS.index(k) for k in kinds)])
    return lut[labels]


def mean_iou(pred: np.ndarray, truth: np.ndarray, classes: int) -> float:
    present = [c for c in range(classes) if (pred == c).any() or (truth == c).any()]
    return float(np.mean([iou(pred == c, truth == c) for c in present]))


def box_iou(a: list[int], b: list[int]) -> float:
    top, left = max(a[0], b[0]), max(a[1], b[1])
    inter = max(0, min(a[2], b[2]) - top) * max(0, min(a[3], b[3]) - left)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area else 0.0


def adherence(kind: str, scene: Scene, found: list[Detection], size: int) -> dict[str, float]:
    truth = label_map(scene, size)
    pred = detection_labels(found, size)
    scores = {"foreground_iou": iou(pred > 0, truth > 0)}
    if kind == "edges":
        scores["edge_f1"] = boundary_f1(edge_pixels(pred), edge_pixels(truth))
    elif kind == "segmentation":
        truth_classes = kind_classes(truth, [s.kind for s in scene.shapes])
        scores["seg_miou"] = mean_iou(kind_classes(pred, [d.kind for d in found]), truth_classes, 1 + len(SHAPE_KINDS))
    elif kind == "depth":
        far, near = DEPTH_BACKGROUND
        ramp = np.round(far + (near - far) * (np.arange(size) + 0.5) / size)
        levels = np.array([0, *(DEPTH_ROWS[POSITIONS[d.position][0]] for d in found)])
        generated = np.where(pred > 0, levels[pred], ramp[:, None])
        target = depth_map(scene, truth)[..., 0].astype(np.float64)
        scores["depth_accuracy"] = float((np.abs(generated - target) <= DEPTH_TOLERANCE).mean())
    else:
        boxes = [bounding_box(d.mask) for d in found]
        scores["box_iou"] = float(
            np.mean([max((box_iou(t, b) for b in boxes), default=0.0) for t in shape_boxes(truth, len(scene.shapes))])
        )
    return scores


def score_visual_condition(spec: dict[str, Any], generated: np.ndarray) -> dict[str, float]:
    scene = spec["scene"]
    found = detect(generated, expected_kinds(scene["shapes"]))
    scores = scene_scores(scene, found, background_name(generated))
    return scores | adherence(spec["condition"]["type"], Scene.from_dict(scene), found, generated.shape[0])
