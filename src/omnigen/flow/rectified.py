"""Rectified flow with OmniGen's convention: t = 0 is pure noise, t = 1 is data.

x_t = t·x + (1 − t)·ε moves in a straight line, so its velocity dx_t/dt = x − ε is constant
along the path: the network regresses that velocity with MSE.
"""

from torch import Tensor


def _broadcast(t: Tensor, like: Tensor) -> Tensor:
    return t.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)  # (B, 1, 1, 1)


def interpolate(data: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """x_t for a batch: data, noise (B, C, H, W); t (B,) in [0, 1]."""
    t = _broadcast(t, data)
    return t * data + (1 - t) * noise


def velocity_target(data: Tensor, noise: Tensor) -> Tensor:
    """The constant velocity of the straight path from noise to data."""
    return data - noise
