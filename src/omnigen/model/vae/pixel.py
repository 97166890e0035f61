"""Pixel space: the identity "VAE", for tiny models and tests."""

from typing import Any

import torch
from torch import Tensor

from omnigen.model.vae.base import VAE


class PixelVAE(VAE):
    latent_channels = 3
    downsample_factor = 1

    def __init__(self) -> None:
        super().__init__()
        self.freeze()

    def moments(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return images, torch.zeros_like(images)

    def decode(self, latents: Tensor) -> Tensor:
        return latents

    def architecture_config(self) -> dict[str, Any]:
        return {"_target_": f"{__name__}.PixelVAE"}
