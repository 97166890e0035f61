"""Euler integration of the learned velocity field from noise (t = 0) to data (t = 1)."""

from collections.abc import Callable

import torch
from torch import Tensor

VelocityFn = Callable[[Tensor, Tensor], Tensor]  # (x_t (B, ...), t (B,)) -> velocity


def euler_timesteps(num_steps: int, shift: float = 1.0) -> Tensor:
    """num_steps + 1 times from 0 to 1: uniform, or time-shifted. With the noise level s = 1 − t, a shift k maps
    s to k·s / (1 + (k − 1)·s) (SD3's shifted schedule): k > 1 spends more of the steps near noise, where the
    layout is decided, k < 1 near data. k = 1 is the uniform grid exactly."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if shift <= 0:
        raise ValueError(f"the schedule shift must be > 0, got {shift}")
    times = torch.linspace(0.0, 1.0, num_steps + 1)
    if shift == 1.0:
        return times
    noise_level = 1.0 - times.double()
    return (1.0 - shift * noise_level / (1.0 + (shift - 1.0) * noise_level)).float()


def euler_sample(velocity: VelocityFn, noise: Tensor, num_steps: int, shift: float = 1.0) -> Tensor:
    """Integrate dx/dt = velocity(x, t) from x(0) = noise to t = 1 on `euler_timesteps(num_steps, shift)`."""
    times = euler_timesteps(num_steps, shift).to(noise.device)
    x = noise
    for t0, t1 in zip(times[:-1], times[1:], strict=True):
        t = t0.expand(x.shape[0])  # (B,)
        x = x + (t1 - t0) * velocity(x, t)
    return x


def guided_velocity(
    cond: Tensor, uncond: Tensor, text_scale: float, image_cond: Tensor | None = None, image_scale: float = 1.0
) -> Tensor:
    """Classifier-free guidance.

    Text only: u + s·(c − u). With input images (three branches):
    u + s_img·(c_img − u) + s_txt·(c − c_img), where c_img sees the images without the text.
    """
    if image_cond is None:
        return uncond + text_scale * (cond - uncond)
    return uncond + image_scale * (image_cond - uncond) + text_scale * (cond - image_cond)
