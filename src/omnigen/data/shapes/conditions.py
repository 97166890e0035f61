"""visual_condition (condition map -> scene) and cv_tasks (scene -> map; degraded -> clean).

Maps and degradations are defined in maps.py. Instructions (after "<img><|image_1|></img> "):
- visual_condition: "generate {layout caption} following this {map name}", e.g. "generate a red
  circle at the top left on a white background following this edge map". The layout caption
  leaves sizes out: the map shows them, the caption gives what the map cannot (colours, and
  which outline is which).
- cv_tasks: CV_TEMPLATES; colourise names the colours (greyscale alone cannot tell red from
  purple), inpaint's box never hides a whole shape, so every restoration is well posed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from omnigen.data.shapes.maps import (
    BLACK,
    LUMA_WEIGHTS,
    MASK_COLOUR,
    WHITE,
    add_noise,
    box_map,
    depth_map,
    edge_map,
    gaussian_blur,
    greyscale,
    map_encodings,
    mask_box,
    object_mask,
    segmentation_map,
)
from omnigen.data.shapes.sample import IMAGE_PREFIX, ShapesSample, pick
from omnigen.data.shapes.world import (
    Scene,
    cell_centre,
    describe_layout,
    label_map,
    render,
    sample_scene,
)

# task -> (map type of maps.map_encodings, its name in instructions)
VISUAL_CONDITIONS: dict[str, tuple[str, str]] = {
    "canny": ("edges", "edge map"),
    "segmentation": ("segmentation", "segmentation map"),
    "depth": ("depth", "depth map"),
    "bbox": ("boxes", "box map"),
}
VISUAL_CONDITION_TEMPLATE = "generate {caption} following this {map}"

CV_MAP_TASKS: dict[str, str] = {"edges": "edges", "segmentation": "segmentation", "depth": "depth", "referring": "mask"}
CV_RESTORATION_TASKS: tuple[str, ...] = ("deblur", "denoise", "inpaint", "colourise")
CV_TEMPLATES: dict[str, str] = {
    "edges": "draw the edge map of this image",
    "segmentation": "draw the segmentation map of this image",
    "depth": "draw the depth map of this image",
    "referring": "highlight the {object}",
    "deblur": "remove the blur from this image",
    "denoise": "remove the noise from this image",
    "inpaint": "fill in the masked region",
    "colourise": "colourise this image with {caption}",
}
CV_TASKS: tuple[str, ...] = (*CV_MAP_TASKS, *CV_RESTORATION_TASKS)
BLUR_SIGMAS: tuple[float, ...] = (0.75, 1.0, 1.5)  # pixels at 32x32; scaled with the image side
NOISE_STDS: tuple[float, ...] = (10.0, 20.0, 30.0)  # on the 0..255 scale
INPAINT_SIDES: tuple[float, float] = (0.2, 0.35)  # box side range, as fractions of the image side
_INPAINT_TRIES = 16


def _map(kind: str, scene: Scene, labels: np.ndarray) -> np.ndarray:
    if kind == "edges":
        return edge_map(labels)
    if kind == "segmentation":
        return segmentation_map(scene, labels)
    if kind == "depth":
        return depth_map(scene, labels)
    return box_map(labels, len(scene.shapes))


def make_visual_condition(rng: np.random.Generator, image_size: int) -> ShapesSample:
    task = pick(rng, list(VISUAL_CONDITIONS))
    kind, name = VISUAL_CONDITIONS[task]
    scene = sample_scene(rng)
    labels = label_map(scene, image_size)
    return ShapesSample(
        instruction=IMAGE_PREFIX + VISUAL_CONDITION_TEMPLATE.format(caption=describe_layout(scene), map=name),
        input_images=[_map(kind, scene, labels)],
        output_image=render(scene, image_size),
        task=task,
        family="visual_condition",
        spec={"scene": scene.to_dict(), "condition": {"type": kind, **map_encodings()[kind]}},
    )


def inpaint_box(rng: np.random.Generator, scene: Scene, labels: np.ndarray) -> list[int]:
    """[top, left, bottom, right] (exclusive) over one shape's centre, never covering a whole shape."""
    size = labels.shape[0]
    target = scene.shapes[int(rng.integers(len(scene.shapes)))]
    cy, cx = cell_centre(target.position, size)
    totals = np.bincount(labels.ravel(), minlength=len(scene.shapes) + 1)
    lo, hi = (round(f * size) for f in INPAINT_SIDES)
    for _ in range(_INPAINT_TRIES):
        h, w = (int(v) for v in rng.integers(lo, hi + 1, size=2))
        top = int(rng.integers(max(0, cy - h + 1), min(cy, size - h) + 1))
        left = int(rng.integers(max(0, cx - w + 1), min(cx, size - w) + 1))
        inside = np.bincount(labels[top : top + h, left : left + w].ravel(), minlength=len(totals))
        if not np.any((inside[1:] == totals[1:]) & (totals[1:] > 0)):
            return [top, left, top + h, left + w]
    # Down-right of the centre pixel: the shape extends above and left of it, so stays partly visible.
    side = max(1, size // 8)
    return [cy, cx, cy + side, cx + side]


def _restoration(
    task: str, rng: np.random.Generator, scene: Scene, clean: np.ndarray, size: int
) -> tuple[np.ndarray, str, dict[str, Any]]:
    if task == "deblur":
        sigma = float(pick(rng, BLUR_SIGMAS)) * size / 32
        return gaussian_blur(clean, sigma), CV_TEMPLATES[task], {"kind": "blur", "sigma_px": sigma}
    if task == "denoise":
        std = float(pick(rng, NOISE_STDS))
        return add_noise(clean, std, rng), CV_TEMPLATES[task], {"kind": "noise", "std": std}
    if task == "inpaint":
        box = inpaint_box(rng, scene, label_map(scene, size))
        return mask_box(clean, box), CV_TEMPLATES[task], {"kind": "mask", "box": box, "colour": list(MASK_COLOUR)}
    text = CV_TEMPLATES[task].format(caption=describe_layout(scene))
    return greyscale(clean), text, {"kind": "greyscale", "luma_weights": list(LUMA_WEIGHTS)}


def make_cv_task(rng: np.random.Generator, image_size: int) -> ShapesSample:
    task = pick(rng, CV_TASKS)
    scene = sample_scene(rng)
    clean = render(scene, image_size)
    spec: dict[str, Any] = {"scene": scene.to_dict(), "image_size": image_size}
    if task in CV_MAP_TASKS:
        labels = label_map(scene, image_size)
        if task == "referring":
            index = int(rng.integers(len(scene.shapes)))
            output = object_mask(labels, index)
            text = CV_TEMPLATES[task].format(object=scene.shapes[index].name)
            spec |= {
                "object": scene.shapes[index].to_dict(),
                "map": {"type": "mask", "foreground": WHITE, "background": BLACK},
            }
        else:
            kind = CV_MAP_TASKS[task]
            output, text = _map(kind, scene, labels), CV_TEMPLATES[task]
            spec["map"] = {"type": kind, **map_encodings()[kind]}
        return ShapesSample(IMAGE_PREFIX + text, [clean], output, task, "cv_tasks", spec)
    degraded, text, degradation = _restoration(task, rng, scene, clean, image_size)
    return ShapesSample(
        IMAGE_PREFIX + text, [degraded], clean, task, "cv_tasks", spec | {"degradation": degradation}, edit_source=0
    )


MAKERS: dict[str, Callable[[np.random.Generator, int], ShapesSample]] = {
    "visual_condition": make_visual_condition,
    "cv_tasks": make_cv_task,
}
