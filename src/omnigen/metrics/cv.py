"""cv_tasks: maps predicted from a scene, and restorations of a degraded scene.

Maps, against the ground truth rendered from spec["scene"] (maps.py encodings):
- edges -> edge_f1 (1 px tolerance) and edge_f1_exact (0 px): white (grey > 127) pixels vs edges;
- segmentation -> seg_miou (classes by nearest SEGMENTATION_COLOURS) and pixel_accuracy;
- depth -> depth_accuracy (fraction within DEPTH_TOLERANCE grey levels) and
  depth_score = 1 - mean absolute error / 255;
- referring -> mask_iou of white (grey > 127) pixels vs the named object's pixels.
Restorations (deblur, denoise, inpaint, colourise), against the clean render:
- psnr (dB, capped at base.MAX_PSNR) and psnr_score = min(1, psnr / 40);
- inpaint also masked_psnr / masked_score over the masked box alone;
- plus the scene's t2i scores (object ... exact_scene) of the restored image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from omnigen.data.shapes.maps import SEGMENTATION_COLOURS, depth_map, edge_pixels
from omnigen.data.shapes.world import SHAPE_KINDS, Scene, ShapeSpec, label_map, render
from omnigen.metrics.base import (
    background_name,
    boundary_f1,
    detect,
    grey,
    iou,
    nearest_class,
    psnr,
    psnr_score,
)
from omnigen.metrics.conditions import DEPTH_TOLERANCE, kind_classes, mean_iou
from omnigen.metrics.t2i import expected_kinds, scene_scores

_SEGMENTATION_PALETTE = np.array([SEGMENTATION_COLOURS[k] for k in ("background", *SHAPE_KINDS)], dtype=np.float64)
MAP_TASKS = ("edges", "segmentation", "depth", "referring")


def map_scores(task: str, spec: dict[str, Any], generated: np.ndarray) -> dict[str, float]:
    scene = Scene.from_dict(spec["scene"])
    truth = label_map(scene, generated.shape[0])
    if task == "edges":
        pred, edges = grey(generated) > 127, edge_pixels(truth)
        return {"edge_f1": boundary_f1(pred, edges), "edge_f1_exact": boundary_f1(pred, edges, tolerance=0)}
    if task == "segmentation":
        pred = nearest_class(generated, _SEGMENTATION_PALETTE)
        classes = kind_classes(truth, [s.kind for s in scene.shapes])
        return {
            "seg_miou": mean_iou(pred, classes, len(_SEGMENTATION_PALETTE)),
            "pixel_accuracy": float((pred == classes).mean()),
        }
    if task == "depth":
        error = np.abs(grey(generated) - depth_map(scene, truth)[..., 0])
        return {
            "depth_accuracy": float((error <= DEPTH_TOLERANCE).mean()),
            "depth_score": float(1 - error.mean() / 255),
        }
    index = scene.shapes.index(ShapeSpec.from_dict(spec["object"]))
    return {"mask_iou": iou(grey(generated) > 127, truth == index + 1)}


def restoration_scores(spec: dict[str, Any], generated: np.ndarray) -> dict[str, float]:
    clean = render(Scene.from_dict(spec["scene"]), generated.shape[0])
    value = psnr(generated, clean)
    scores = {"psnr": value, "psnr_score": psnr_score(value)}
    degradation = spec.get("degradation", {})
    if degradation.get("kind") == "mask":
        top, left, bottom, right = degradation["box"]
        box = np.zeros(generated.shape[:2], dtype=bool)
        box[top:bottom, left:right] = True
        masked = psnr(generated, clean, box)
        scores |= {"masked_psnr": masked, "masked_score": psnr_score(masked)}
    found = detect(generated, expected_kinds(spec["scene"]["shapes"]))
    return scores | scene_scores(spec["scene"], found, background_name(generated))


def score_cv(task: str, spec: dict[str, Any], generated: np.ndarray) -> dict[str, float]:
    return map_scores(task, spec, generated) if task in MAP_TASKS else restoration_scores(spec, generated)
