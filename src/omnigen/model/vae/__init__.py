from omnigen.model.vae.autoencoder_kl import AutoencoderKLVAE
from omnigen.model.vae.base import VAE
from omnigen.model.vae.pixel import PixelVAE

__all__ = ["VAE", "AutoencoderKLVAE", "PixelVAE"]
