"""A frozen image autoencoder: pixels in [-1, 1] <-> latents the transformer works on."""

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor, nn


class VAE(nn.Module, ABC):
    """Frozen: never trained, kept in eval mode whatever the parent module's mode."""

    latent_channels: int
    downsample_factor: int  # pixels per latent cell along each side
    sample_posterior: bool = False  # encode() draws from the posterior instead of taking its mean

    def freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VAE":
        return super().train(False)  # frozen: dropout/norm statistics never switch to training

    @abstractmethod
    def moments(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) in [-1, 1] -> normalised posterior mean and std, each (B, latent_channels, H / f, W / f)."""

    def draw(self, mean: Tensor, std: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A latent from the posterior: its mean, or mean + std·ε when `sample_posterior`."""
        if not self.sample_posterior:
            return mean
        return mean + std * torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)

    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.draw(*self.moments(images), generator)

    @abstractmethod
    def decode(self, latents: Tensor) -> Tensor:
        """Inverse of `encode`: latents -> (B, 3, H, W), roughly in [-1, 1]."""

    @abstractmethod
    def architecture_config(self) -> dict[str, Any]:
        """A `_target_` config that rebuilds this VAE's architecture without any local files
        (weights come from the checkpoint), for self-describing checkpoints."""
