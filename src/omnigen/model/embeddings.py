"""The small modules around the LLM: patch embedders, timestep MLPs, 2D sin-cos table, final layer.

Attribute names follow the released OmniGen-v1 checkpoint (`proj`, `mlp.0`, `mlp.2`,
`adaLN_modulation.1`, `linear`) so its weights load as they are.
"""

import math

import torch
from torch import Tensor, nn


class PatchEmbed(nn.Module):
    """Non-overlapping p×p patches of a latent -> tokens."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, latent: Tensor) -> Tensor:
        x = self.proj(latent)  # (B, D, H/p, W/p)
        return x.flatten(2).transpose(1, 2)  # (B, H/p * W/p, D), row-major over patches


def timestep_sinusoid(t: Tensor, dim: int = 256, max_period: float = 10000.0) -> Tensor:
    """(B,) t in [0, 1], unscaled as in the release -> (B, dim), ordered [cos, sin]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, dim)


class TimestepEmbedder(nn.Module):
    """sinusoid(256) -> Linear -> SiLU -> Linear."""

    def __init__(self, hidden_size: int, frequency_dim: int = 256) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: Tensor) -> Tensor:
        freq = timestep_sinusoid(t, self.frequency_dim).to(self.mlp[0].weight.dtype)
        return self.mlp(freq)  # (B, D)


def sincos_1d(dim: int, coords: Tensor) -> Tensor:
    """(N,) coordinates -> (N, dim), [sin, cos] halves."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = coords.double()[:, None] * omega[None]  # (N, dim/2)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d_table(dim: int, grid_size: int, base_size: int = 64) -> Tensor:
    """(grid_size², dim) table over a grid_size × grid_size patch grid, row-major.

    Coordinates are i · base_size / grid_size (as the release computes them); the first half
    of each vector encodes the column, the second the row.
    """
    if dim % 4:
        raise ValueError(f"2D sin-cos embedding needs hidden size divisible by 4, got {dim}")
    coords = torch.arange(grid_size, dtype=torch.float64) * base_size / grid_size
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")  # (G, G) each
    emb_col = sincos_1d(dim // 2, cols.reshape(-1))
    emb_row = sincos_1d(dim // 2, rows.reshape(-1))
    return torch.cat([emb_col, emb_row], dim=1).float()  # (G², dim)


def crop_pos_embed(table: Tensor, grid_size: int, height: int, width: int) -> Tensor:
    """Centre crop of the (1, G², D) table for an height × width patch grid -> (1, h·w, D)."""
    if height > grid_size or width > grid_size:
        raise ValueError(
            f"a {height}×{width} patch grid exceeds the position grid {grid_size}×{grid_size}; "
            "raise pos_embed_max_size or use smaller images"
        )
    top, left = (grid_size - height) // 2, (grid_size - width) // 2
    spatial = table.reshape(1, grid_size, grid_size, -1)[:, top : top + height, left : left + width]  # (1, h, w, D)
    return spatial.reshape(1, height * width, -1)


class FinalLayer(nn.Module):
    """adaLN(time) on a non-affine LayerNorm, then a linear map to p·p·C values per token.

    Zero-initialised so the untrained model predicts zero velocity (a stable start).
    """

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))
        for layer in (self.linear, self.adaLN_modulation[1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, time_emb: Tensor, tokens_per_sample: list[int] | None = None) -> Tensor:
        """x (B, N, D) with time_emb (B, D); or packed samples' tokens x (ΣN, D), sample after
        sample, with time_emb (S, D) and each sample's token count."""
        shift, scale = self.adaLN_modulation(time_emb).chunk(2, dim=-1)  # (B, D) each
        if tokens_per_sample is None:
            shift, scale = shift[:, None], scale[:, None]  # (B, 1, D): one sample's t for all its tokens
        else:
            repeats = torch.tensor(tokens_per_sample, device=x.device)
            shift, scale = (
                m.repeat_interleave(repeats, dim=0, output_size=x.shape[0]) for m in (shift, scale)
            )  # (ΣN, D)
        x = self.norm_final(x) * (1 + scale) + shift  # (B, N, D) or (ΣN, D)
        return self.linear(x)  # (B, N, p*p*C) or (ΣN, p*p*C)


def unpatchify(tokens: Tensor, patch_size: int, channels: int, height: int, width: int) -> Tensor:
    """(B, h·w, p·p·C) tokens, row-major over an h × w patch grid -> (B, C, h·p, w·p)."""
    b, p = tokens.shape[0], patch_size
    x = tokens.reshape(b, height, width, p, p, channels)  # (B, h, w, p, p, C)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, h, p, w, p)
    return x.reshape(b, channels, height * p, width * p)
