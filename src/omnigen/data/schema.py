"""One sample schema for every X2I source, the task registry, and the bad-input vocabulary.

A source (JSONL, webdataset shards, Shapes-X2I) yields `X2ISample`s, or a `Skipped` record where
an input is bad and the pipeline must keep going; `validate` holds the checks all sources share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from omnigen.processor import PromptError, placeholder_ids

# Family -> the task names it knows. A task is `name` or `name/detail` (e.g. "edit/recolour").
TASKS: dict[str, tuple[str, ...]] = {
    "text_to_image": ("t2i",),
    "mixed_modal": ("edit", "try_on", "style", "motion", "mixed"),
    "subject_driven": ("subject",),
    "visual_condition": ("canny", "hed", "depth", "skeleton", "bbox", "segmentation"),
    "cv_tasks": (
        "deblur",
        "derain",
        "denoise",
        "inpaint",
        "outpaint",
        "colourise",
        "low_light",
        "edges",
        "depth",
        "pose",
        "segmentation",
        "referring",
    ),
    # Episodes of k example pairs + a query: the task is the query's, of any family above.
    "few_shot": (),
}
FAMILIES: tuple[str, ...] = tuple(TASKS)

# family -> (fewest, most) input images its samples take; None: no upper bound. A valid record whose
# count is outside its family's range belongs to another family (`wrong_family`).
INPUT_COUNTS: dict[str, tuple[int, int | None]] = {
    "text_to_image": (0, 0),
    "mixed_modal": (1, None),
    "subject_driven": (1, None),
    "visual_condition": (1, 1),
    "cv_tasks": (1, 1),
    "few_shot": (0, None),
}

# Why a sample was skipped; each is logged as data/skipped_<reason>.
SKIP_REASONS: tuple[str, ...] = (
    "missing_image",  # an image file that does not exist or cannot be read
    "path_outside_root",  # an image path that resolves (symlinks followed) outside its data set's image root
    "not_a_file",  # an image path naming a directory, FIFO, device or socket (never opened)
    "corrupt_image",  # a file PIL cannot decode, or in a format it is not allowed to decode
    "empty_image",  # an empty file, or zero width or height
    "image_too_large",  # more pixels (read from the header) than max_image_pixels, or a decompression bomb
    "bad_json",  # a JSON line or record that does not parse, repeats a key, or lacks or mistypes a field
    "empty_instruction",  # an instruction that is empty or whitespace
    "image_count",  # placeholders and images disagree
    "wrong_family",  # a valid record whose number of input images its family does not take
    "unknown_task",  # a family or task outside TASKS
    "too_many_tokens",  # over the processor's condition-token limit
    "read_error",  # any other error while reading or preparing one record (its type and text are logged)
)
MAX_IMAGE_PIXELS = 4096 * 4096  # the default image size limit, checked from the header before decoding


@dataclass
class X2ISample:
    instruction: str  # with <img><|image_i|></img> placeholders, ids 1..n
    input_images: list[Image.Image]  # RGB, image i + 1 of the placeholders
    output_image: Image.Image  # RGB
    family: str
    task: str
    key: str  # where it came from, for messages: "train.jsonl:12", "shard-000003.tar:000123 (from train.jsonl:12)"
    spec: dict[str, Any] | None = None  # ground truth, where known (Shapes-X2I)
    edit_source: int | None = None  # the input image the output edits (edit-region weighting)
    notes: list[str] = field(default_factory=list)  # conversions applied (counted as data/converted_<note>)


@dataclass(frozen=True)
class Skipped:
    reason: str  # one of SKIP_REASONS
    key: str
    message: str


class BadSample(ValueError):
    """A sample that cannot be used; `reason` is one of SKIP_REASONS, the message names where."""

    def __init__(self, reason: str, key: str, message: str) -> None:
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}")
        super().__init__(message if message.startswith(f"{key}: ") else f"{key}: {message}")
        self.reason, self.key = reason, key

    def skipped(self) -> Skipped:
        return Skipped(self.reason, self.key, str(self))


def format_mix(ratios: dict[str, float]) -> str:
    """Ratios as the shares they realise: {"a": 1, "b": 3} -> "a 0.25, b 0.75"."""
    total = sum(ratios.values())
    return ", ".join(f"{name} {ratio / total:.3g}" for name, ratio in ratios.items())


def check_task(family: str, task: str, key: str) -> None:
    if family not in TASKS:
        raise BadSample("unknown_task", key, f"unknown task family {family!r}; known: {', '.join(FAMILIES)}")
    known = {t for tasks in TASKS.values() for t in tasks} if family == "few_shot" else set(TASKS[family])
    if task.split("/")[0] not in known:
        raise BadSample(
            "unknown_task", key, f"unknown task {task!r} for family {family!r}; known: {', '.join(sorted(known))}"
        )


def check_family_inputs(sample: X2ISample, family: str | None = None) -> None:
    """A record whose input-image count its family (by default its own) does not take: the record may be
    fine, but it belongs to another family."""
    family = family or sample.family
    low, high = INPUT_COUNTS[family]
    n = len(sample.input_images)
    if low <= n and (high is None or n <= high):
        return
    needs = f"exactly {low}" if low == high else f"≥{low}" if high is None else f"{low}..{high}"
    fits = [f for f, (a, b) in INPUT_COUNTS.items() if f != "few_shot" and a <= n and (b is None or n <= b)]
    raise BadSample(
        "wrong_family",
        sample.key,
        f"a valid record, but it needs {needs} input image(s) for {family} "
        f"and has {n}; it fits {' or '.join(fits) or 'no family'}: give it "
        f'to that family\'s DataModule or set its "family"',
    )


def as_rgb(image: Image.Image, name: str, sample: X2ISample) -> Image.Image:
    """Zero-size images are bad input; other modes (L, RGBA, P, CMYK, ...) become RGB, noted."""
    if image.width == 0 or image.height == 0:
        raise BadSample("empty_image", sample.key, f"{name} is {image.width}×{image.height}")
    if image.mode != "RGB":
        sample.notes.append(f"mode_{image.mode.replace(';', '_')}")
        image = image.convert("RGB")
    return image


def validate(sample: X2ISample) -> X2ISample:
    """The checks every source shares: known task, a non-empty instruction, placeholders matching the
    images, usable images."""
    check_task(sample.family, sample.task, sample.key)
    if not sample.instruction.strip():
        raise BadSample("empty_instruction", sample.key, "instruction is empty")
    try:
        ids = placeholder_ids(sample.instruction)
    except PromptError as error:
        raise BadSample("image_count", sample.key, f"instruction: {error}") from None
    if sorted(set(ids)) != list(range(1, len(sample.input_images) + 1)):
        raise BadSample(
            "image_count",
            sample.key,
            f"instruction references images {sorted(set(ids))} but "
            f"{len(sample.input_images)} input image(s) were given",
        )
    if sample.edit_source is not None and not 0 <= sample.edit_source < len(sample.input_images):
        raise BadSample(
            "image_count",
            sample.key,
            f"edit_source={sample.edit_source} but there are {len(sample.input_images)} input image(s)",
        )
    sample.input_images = [as_rgb(im, f"input image {i + 1}", sample) for i, im in enumerate(sample.input_images)]
    sample.output_image = as_rgb(sample.output_image, "output image", sample)
    return sample
