"""Pixel space: the identity "VAE", for tiny models and tests."""

from typing import Any

from torch import Tensor

from omnigen.model.vae.base import VAE


class PixelVAE(VAE):
    latent_channels = 3
    downsample_factor = 1

    def __init__(self) -> None:
        super().__init__()
        self.freeze()

    def encode(self, images: Tensor) -> Tensor:
        return images

    def decode(self, latents: Tensor) -> Tensor:
        return latents

    def architecture_config(self) -> dict[str, Any]:
        return {"_target_": f"{__name__}.PixelVAE"}
