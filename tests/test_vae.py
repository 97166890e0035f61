"""VAE plugins: frozen, factors honoured, rebuildable from their own description."""

import pytest
import torch
from hydra.utils import instantiate

from omnigen.model.vae import AutoencoderKLVAE, PixelVAE

TINY_KL = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 2,
    up_block_types=["UpDecoderBlock2D"] * 2,
    block_out_channels=[8, 16],
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=4,
    sample_size=32,
    scaling_factor=0.5,
    shift_factor=0.1,
)


def test_pixel_vae_is_the_identity():
    vae = PixelVAE()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(vae.decode(vae.encode(x)), x) and vae.latent_channels == 3 and vae.downsample_factor == 1


def test_autoencoder_kl_honours_scaling_and_shift_and_is_frozen():
    torch.manual_seed(0)
    vae = AutoencoderKLVAE(config=TINY_KL, sample_posterior=False)
    assert vae.latent_channels == 4 and vae.downsample_factor == 2
    assert not any(p.requires_grad for p in vae.parameters())
    vae.train()
    assert not vae.training  # stays in eval mode inside a training parent
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    z = vae.encode(x)
    raw = vae.vae.encode(x).latent_dist.mode()
    torch.testing.assert_close(z, (raw - 0.1) * 0.5)
    assert z.shape == (1, 4, 8, 8)
    torch.testing.assert_close(vae.decode(z), vae.vae.decode(raw).sample)


def test_architecture_config_rebuilds_the_same_vae(tmp_path):
    vae = AutoencoderKLVAE(config=TINY_KL)
    rebuilt = instantiate(vae.architecture_config(), _convert_="all")
    rebuilt.load_state_dict(vae.state_dict())
    assert rebuilt.scaling_factor == 0.5 and rebuilt.shift_factor == 0.1
    # and from a local pretrained directory
    vae.vae.save_pretrained(tmp_path / "vae")
    loaded = AutoencoderKLVAE(pretrained_path=str(tmp_path / "vae"), sample_posterior=False)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(loaded.encode(x), (vae.vae.encode(x).latent_dist.mode() - 0.1) * 0.5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="exactly one"):
        AutoencoderKLVAE()
    with pytest.raises(FileNotFoundError, match="local paths only"):
        AutoencoderKLVAE(pretrained_path="/nonexistent/vae")
