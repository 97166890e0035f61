"""Per-element loss weights for the velocity MSE."""

from abc import ABC, abstractmethod

from torch import Tensor


class LossWeighting(ABC):
    @abstractmethod
    def weights(self, target: Tensor, references: list[Tensor | None]) -> Tensor:
        """target: (B, C, H, W) clean output latents; references[b]: the input-image latent of the
        same shape that sample b edits (None where there is none). Returns (B, C, H, W) weights."""
