"""Rectified flow with OmniGen's convention: t = 0 is pure noise, t = 1 is data.

x_t = t·x + (1 − t)·ε moves in a straight line, so its velocity dx_t/dt = x − ε is constant
along the path: the network regresses that velocity with MSE, either directly or by predicting
the clean image x̂ and reading the velocity off it, (x̂ − x_t) / (1 − t).
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


# Image prediction's velocity divides by 1 − t; this floor keeps it finite at t = 1 (an Euler
# step of 1/20 ends there) and bounds the loss weight (1 − t)⁻² that the velocity loss puts on x̂.
MIN_VELOCITY_GAP = 0.05


def velocity_from_image(image: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
    """The velocity that moves x_t (B, C, H, W) at times t (B,) straight onto the predicted image."""
    gap = (1 - _broadcast(t, x_t)).clamp_min(MIN_VELOCITY_GAP)
    return (image - x_t) / gap
