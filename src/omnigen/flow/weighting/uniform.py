"""Every latent element counts the same."""

import torch
from torch import Tensor

from omnigen.flow.weighting.base import LossWeighting


class UniformWeighting(LossWeighting):
    def weights(self, target: Tensor, references: list[Tensor | None]) -> Tensor:
        return torch.ones_like(target)

    def __repr__(self) -> str:
        return "UniformWeighting()"
