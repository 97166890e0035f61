"""t ~ U(low, high)."""

import torch
from torch import Tensor

from omnigen.flow.timesteps.base import TimestepSampler


class UniformTimesteps(TimestepSampler):
    def __init__(self, low: float = 0.0, high: float = 1.0) -> None:
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"need 0 <= low < high <= 1, got low={low}, high={high}")
        self.low, self.high = low, high

    def sample(self, n: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand(n, generator=generator, device=device)
        return self.low + (self.high - self.low) * u

    def __repr__(self) -> str:
        return f"UniformTimesteps(low={self.low}, high={self.high})"
