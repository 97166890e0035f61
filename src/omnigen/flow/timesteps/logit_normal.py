"""t = sigmoid(N(mean, std)): concentrates training on mid-path times (the paper's default)."""

import torch
from torch import Tensor

from omnigen.flow.timesteps.base import TimestepSampler


class LogitNormalTimesteps(TimestepSampler):
    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        if std <= 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.mean, self.std = mean, std

    def sample(self, n: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(n, generator=generator, device=device)
        return torch.sigmoid(self.mean + self.std * z)

    def __repr__(self) -> str:
        return f"LogitNormalTimesteps(mean={self.mean}, std={self.std})"
