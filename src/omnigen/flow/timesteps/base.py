"""Training-time distribution of t in (0, 1)."""

from abc import ABC, abstractmethod

import torch
from torch import Tensor


class TimestepSampler(ABC):
    @abstractmethod
    def sample(self, n: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> Tensor:
        """(n,) float32 times in (0, 1)."""
