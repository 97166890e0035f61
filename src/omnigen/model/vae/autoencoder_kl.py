"""diffusers `AutoencoderKL` of any config (SD, SDXL, FLUX-style shift), frozen.

Latents are normalised as the diffusion models expect: (z - shift_factor) * scaling_factor.
"""

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL
from torch import Tensor

from omnigen.model.vae.base import VAE


class AutoencoderKLVAE(VAE):
    def __init__(
        self,
        config: dict[str, Any] | None = None,
        pretrained_path: str | None = None,
        subfolder: str | None = None,
        sample_posterior: bool = True,
    ) -> None:
        """Exactly one of `config` (an AutoencoderKL config dict, random weights) or
        `pretrained_path` (a local diffusers directory) must be given."""
        super().__init__()
        if (config is None) == (pretrained_path is None):
            raise ValueError("AutoencoderKLVAE needs exactly one of `config` or `pretrained_path`")
        if pretrained_path is not None:
            path = Path(pretrained_path)
            if not path.is_dir():
                raise FileNotFoundError(
                    f"AutoencoderKL directory not found: {path} (weights load from local paths only)"
                )
            # fp32 whatever the saved dtype: precision is the trainer's choice (autocast), not the file's.
            self.vae = AutoencoderKL.from_pretrained(
                str(path), subfolder=subfolder, local_files_only=True, torch_dtype=torch.float32
            )
        else:
            self.vae = AutoencoderKL.from_config(dict(config))
        cfg = self.vae.config
        self.latent_channels = int(cfg.latent_channels)
        self.downsample_factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.scaling_factor = float(cfg.scaling_factor)
        self.shift_factor = float(cfg.shift_factor) if getattr(cfg, "shift_factor", None) is not None else 0.0
        self.sample_posterior = sample_posterior
        self.freeze()

    @torch.no_grad()
    def moments(self, images: Tensor) -> tuple[Tensor, Tensor]:
        dist = self.vae.encode(images.to(self.vae.dtype)).latent_dist
        return (dist.mean - self.shift_factor) * self.scaling_factor, dist.std * self.scaling_factor

    def decode(self, latents: Tensor) -> Tensor:
        z = latents.to(self.vae.dtype) / self.scaling_factor + self.shift_factor
        return self.vae.decode(z).sample

    def architecture_config(self) -> dict[str, Any]:
        # diffusers' bookkeeping keys (_class_name, _diffusers_version, ...) are not architecture.
        config = {k: v for k, v in self.vae.config.items() if not k.startswith("_")}
        return {"_target_": f"{__name__}.AutoencoderKLVAE", "config": config, "sample_posterior": self.sample_posterior}
