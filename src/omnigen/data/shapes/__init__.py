"""Shapes-X2I: a seeded procedural world of flat shapes with exact ground truth."""

from typing import Any

from omnigen.data.shapes.tasks import (
    EDIT_KINDS,
    EDIT_TEMPLATES,
    FAMILIES,
    IMAGE_PREFIX,
    ShapesSample,
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
    "EDIT_KINDS",
    "EDIT_TEMPLATES",
    "FAMILIES",
    "IMAGE_PREFIX",
    "POSITIONS",
    "SHAPE_COLOURS",
    "SHAPE_KINDS",
    "SIZES",
    "SPECIAL_TOKENS",
    "TOKENIZER_PATH",
    "Scene",
    "ShapeSpec",
    "ShapesSample",
    "build_tokenizer",
    "cell_centre",
    "cell_slices",
    "describe",
    "load_shapes_tokenizer",
    "make_sample",
    "render",
    "sample_at",
    "sample_scene",
    "shape_mask",
    "vocabulary",
]
