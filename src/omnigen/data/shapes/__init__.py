"""Shapes-X2I: a seeded procedural world of flat shapes with exact ground truth, and task
families over it (text_to_image, mixed_modal, subject_driven, visual_condition, cv_tasks)."""

from typing import Any

from omnigen.data.shapes.conditions import CV_TASKS, VISUAL_CONDITIONS
from omnigen.data.shapes.holdout import HOLDOUTS, Holdout, holdout_named
from omnigen.data.shapes.maps import (
    DEPTH_BACKGROUND,
    DEPTH_ROWS,
    MASK_COLOUR,
    SEGMENTATION_COLOURS,
    depth_map,
    edge_map,
    edge_pixels,
    gaussian_blur,
    greyscale,
    segmentation_map,
)
from omnigen.data.shapes.sample import IMAGE_PREFIX, ShapesSample, image_tag
from omnigen.data.shapes.subject import (
    PATTERNS,
    Subject,
    render_reference,
    render_with_subject,
    subject_pixels,
)
from omnigen.data.shapes.tasks import (
    EDIT_KINDS,
    EDIT_TEMPLATES,
    FAMILIES,
    FAMILY_TASKS,
    family_probabilities,
    make_sample,
    sample_at,
)
from omnigen.data.shapes.world import (
    BACKGROUND_COLOURS,
    POSITIONS,
    SHAPE_COLOURS,
    SHAPE_KINDS,
    SIZES,
    Scene,
    ShapeSpec,
    cell_centre,
    cell_slices,
    describe,
    describe_layout,
    label_map,
    render,
    sample_scene,
    shape_mask,
)

# vocab pulls in transformers (seconds to import); load it only when asked for,
# so data workers that just render scenes stay light and `python -m
# omnigen.data.shapes.vocab` does not find the module pre-imported.
_VOCAB_NAMES = ("SPECIAL_TOKENS", "TOKENIZER_PATH", "build_tokenizer", "load_shapes_tokenizer", "vocabulary")


def __getattr__(name: str) -> Any:
    if name in _VOCAB_NAMES:
        from omnigen.data.shapes import vocab

        return getattr(vocab, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BACKGROUND_COLOURS",
    "CV_TASKS",
    "DEPTH_BACKGROUND",
    "DEPTH_ROWS",
    "EDIT_KINDS",
    "EDIT_TEMPLATES",
    "FAMILIES",
    "FAMILY_TASKS",
    "HOLDOUTS",
    "IMAGE_PREFIX",
    "MASK_COLOUR",
    "PATTERNS",
    "POSITIONS",
    "SEGMENTATION_COLOURS",
    "SHAPE_COLOURS",
    "SHAPE_KINDS",
    "SIZES",
    "SPECIAL_TOKENS",
    "TOKENIZER_PATH",
    "VISUAL_CONDITIONS",
    "Holdout",
    "Scene",
    "ShapeSpec",
    "ShapesSample",
    "Subject",
    "build_tokenizer",
    "cell_centre",
    "cell_slices",
    "depth_map",
    "describe",
    "describe_layout",
    "edge_map",
    "edge_pixels",
    "family_probabilities",
    "gaussian_blur",
    "greyscale",
    "holdout_named",
    "image_tag",
    "label_map",
    "load_shapes_tokenizer",
    "make_sample",
    "render",
    "render_reference",
    "render_with_subject",
    "sample_at",
    "sample_scene",
    "segmentation_map",
    "shape_mask",
    "subject_pixels",
    "vocabulary",
]
