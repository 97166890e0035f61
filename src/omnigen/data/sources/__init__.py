"""Data sources: every X2I data set as a `Source` read in disjoint parts (ranks × workers), yielding
validated `X2ISample`s or `Skipped` records."""

from omnigen.data.sources.base import IndexedSource, Source, check_part, checked, decode_image, epoch_order
from omnigen.data.sources.jsonl import JsonlSource
from omnigen.data.sources.shapes import ShapesSource
from omnigen.data.sources.webdataset import WebDatasetSource

__all__ = [
    "IndexedSource",
    "JsonlSource",
    "ShapesSource",
    "Source",
    "WebDatasetSource",
    "check_part",
    "checked",
    "decode_image",
    "epoch_order",
]
