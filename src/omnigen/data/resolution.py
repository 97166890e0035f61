"""Image sizes for training: what size each image gets, and which output sizes may share a batch.

Input images keep their aspect ratio: scaled down to at most `max_input_size` on the longer side
and centre-cropped to a multiple of the pixels per token (VAE factor × patch). The output image
follows `mode`:

- "square": resize the shorter side to `size`, centre-crop `size × size` (every batch one size);
- "raw": keep the raw resolution, scaled down to at most `size` on the longer side and cropped to
  the token grid; batches group samples of the same size;
- "buckets": snap to the aspect-ratio bucket nearest the image's, each bucket about `size²` pixels
  on the token grid; batches group samples of the same bucket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from omnigen.data.schema import BadSample, X2ISample

MODES = ("square", "raw", "buckets")
# height / width of the buckets: square, 4:3, 3:2, 16:9, 2:1, each way.
DEFAULT_ASPECTS = (1.0, 3 / 4, 4 / 3, 2 / 3, 3 / 2, 9 / 16, 16 / 9, 1 / 2, 2.0)


@dataclass
class Resolution:
    mode: str = "square"
    size: int = 256  # square side; raw: the longer side's maximum; buckets: sqrt of the pixel budget
    max_input_size: int = 1024
    multiple: int | None = None  # pixels per token; None: taken from the model when the DataModule is set up
    aspects: tuple[float, ...] = DEFAULT_ASPECTS

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"resolution mode must be one of {MODES}, got {self.mode!r}")
        if self.size <= 0 or self.max_input_size <= 0:
            raise ValueError(f"sizes must be positive, got size={self.size}, max_input_size={self.max_input_size}")

    @property
    def grid(self) -> int:
        if self.multiple is None:
            raise RuntimeError(
                "Resolution.multiple (pixels per token) is not set: the DataModule sets it from the "
                "model at setup, or pass data.resolution.multiple"
            )
        return self.multiple

    def buckets(self) -> list[tuple[int, int]]:
        """(height, width) per aspect: on the token grid, at most size² pixels, as close to the aspect as it allows."""
        return sorted(
            {(self._floor(self.size * math.sqrt(a)), self._floor(self.size / math.sqrt(a))) for a in self.aspects}
        )

    def _floor(self, pixels: float) -> int:
        return max(self.grid, int(pixels) // self.grid * self.grid)

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """The (height, width) the output image of a width × height source gets."""
        if self.mode == "square":
            side = self._floor(self.size)
            return side, side
        if self.mode == "raw":
            scale = min(1.0, self.size / max(width, height))
            return self._floor(height * scale), self._floor(width * scale)
        aspect = height / width
        return min(self.buckets(), key=lambda hw: abs(math.log(hw[0] / hw[1]) - math.log(aspect)))

    def apply(self, sample: X2ISample) -> X2ISample:
        """Resize and crop the sample's images in place; returns it."""
        out = sample.output_image
        sample.output_image = cover_crop(out, *self.output_size(out.width, out.height))
        inputs = []
        for i, image in enumerate(sample.input_images):
            scale = min(1.0, self.max_input_size / max(image.width, image.height))
            h, w = int(image.height * scale) // self.grid * self.grid, int(image.width * scale) // self.grid * self.grid
            if h == 0 or w == 0:
                raise BadSample(
                    "empty_image",
                    sample.key,
                    f"input image {i + 1} ({image.width}×{image.height}) is smaller "
                    f"than one token ({self.grid}×{self.grid} pixels)",
                )
            inputs.append(cover_crop(image, h, w))
        sample.input_images = inputs
        return sample


def cover_crop(image: Image.Image, height: int, width: int) -> Image.Image:
    """Scale to cover height × width (aspect kept), then centre-crop to exactly that size."""
    if (image.height, image.width) == (height, width):
        return image
    scale = max(height / image.height, width / image.width)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    if size != image.size:
        image = image.resize(size, Image.BICUBIC, reducing_gap=None)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))
