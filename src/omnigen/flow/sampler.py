"""Euler integration of the learned velocity field from noise (t = 0) to data (t = 1), and how to sample."""

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from omnigen.utils.cli import UserError

VelocityFn = Callable[[Tensor, Tensor], Tensor]  # (x_t (B, ...), t (B,)) -> velocity


def euler_timesteps(num_steps: int, shift: float = 1.0) -> Tensor:
    """num_steps + 1 times from 0 to 1: uniform, or time-shifted. With the noise level s = 1 − t, a shift k maps
    s to k·s / (1 + (k − 1)·s) (SD3's shifted schedule): k > 1 spends more of the steps near noise, where the
    layout is decided, k < 1 near data. k = 1 is the uniform grid exactly."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if shift <= 0:
        raise UserError(f"schedule_shift must be > 0 (1: uniform steps), got {shift}")
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


def check_step_cache(threshold: float, order: int) -> None:
    if threshold < 0 or order not in (0, 1):
        raise UserError(
            f"step_cache (the threshold) must be >= 0 and step_cache_order 0 or 1, got {threshold}, {order}"
        )


def checked_interval(interval: tuple[float, float] | list[float]) -> tuple[float, float]:
    """A guidance interval (low, high) with 0 <= low <= high <= 1, or a UserError saying what is wrong."""
    if len(interval) != 2 or not 0.0 <= interval[0] <= interval[1] <= 1.0:
        raise UserError(f"guidance_interval must be (low, high) with 0 <= low <= high <= 1, got {tuple(interval)}")
    return float(interval[0]), float(interval[1])


def windowed(guided: VelocityFn, conditional: VelocityFn, interval: tuple[float, float]) -> VelocityFn:
    """`guided` at the steps whose t lies in `interval` (`checked_interval`'s), `conditional` at the others; rows
    of one batch at different t each get theirs."""
    low, high = checked_interval(interval)

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        inside = (t >= low) & (t <= high)  # (B,)
        if bool(inside.all()):
            return guided(x, t)
        if not bool(inside.any()):
            return conditional(x, t)
        return torch.where(inside.view(-1, *[1] * (x.dim() - 1)), guided(x, t), conditional(x, t))

    return velocity


class StepCache:
    """A velocity that skips the model at steps whose input changed little since the last computed one.

    TeaCache's idea, measured on the input itself: the relative L1 change of x_t from one call to the next,
    summed over the steps since the last computed velocity, below `threshold` reuses it. `order` 0 returns the
    last velocity as it was; 1 extrapolates it linearly in t from the last two computed (TaylorSeer's first
    order; the first two steps are always computed). threshold 0 computes every step. The decision costs two
    means of |x| a step (and one host sync).
    """

    def __init__(self, velocity: VelocityFn, threshold: float, order: int = 1) -> None:
        check_step_cache(threshold, order)
        self.velocity, self.threshold, self.order = velocity, threshold, order
        self.computed: list[tuple[Tensor, Tensor]] = []  # (t, velocity) of the last two computed steps
        self.last_x: Tensor | None = None
        self.change = 0.0  # relative change of x_t since the last computed step
        self.calls = self.skipped = 0

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.calls += 1
        if self.last_x is not None:
            self.change += ((x - self.last_x).abs().mean() / self.last_x.abs().mean().clamp_min(1e-12)).item()
        self.last_x = x
        if len(self.computed) < 1 + self.order or self.change >= self.threshold:  # order 1 needs two points
            v = self.velocity(x, t)
            self.computed = [*self.computed[-1:], (t, v)]
            self.change = 0.0
            return v
        self.skipped += 1
        t1, v1 = self.computed[-1]
        if self.order == 0:
            return v1
        t0, v0 = self.computed[0]
        slope = (v1 - v0) / (t1 - t0).view(-1, *[1] * (v1.dim() - 1))  # (B, ...) per unit of t
        return v1 + slope * (t - t1).view(-1, *[1] * (v1.dim() - 1))


@dataclass(frozen=True)
class SamplerSettings:
    """How to sample, beyond the prompts: `OmniGenPipeline.generate`'s settings. The defaults are the plain sampler
    every evaluation in experiments/ used (20 uniform Euler steps, guidance 2.0 / 1.5 at every step). A checkpoint
    records the settings recommended for it in its run config's `sampling` (configs/sampling/), which generate,
    the app and the pipeline use where a setting is not given (`from_config`)."""

    num_inference_steps: int = 20
    guidance_scale: float = 2.0
    img_guidance_scale: float = 1.5
    guidance_interval: tuple[float, float] | None = None  # None: guidance at every step
    schedule_shift: float = 1.0
    shift_reference_size: int | None = (
        None  # a side in pixels: schedule_shift holds there (`shift_at`); None, 0: everywhere
    )
    step_cache: float = 0.0
    step_cache_order: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.num_inference_steps, bool) or not isinstance(self.num_inference_steps, int):
            raise UserError(f"num_inference_steps must be a whole number, got {self.num_inference_steps!r}")
        if self.num_inference_steps < 1:
            raise UserError(f"num_inference_steps must be >= 1, got {self.num_inference_steps}")
        if self.guidance_interval is not None:
            object.__setattr__(self, "guidance_interval", checked_interval(self.guidance_interval))
        euler_timesteps(1, self.schedule_shift)  # its own check of the shift
        if self.shift_reference_size is not None and (
            isinstance(self.shift_reference_size, bool) or not isinstance(self.shift_reference_size, int)
            or self.shift_reference_size < 0
        ):  # fmt: skip
            raise UserError(
                f"shift_reference_size must be a side in pixels (0: off), got {self.shift_reference_size!r}"
            )
        check_step_cache(self.step_cache, self.step_cache_order)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, where: str) -> "SamplerSettings":
        """Settings from a `sampling` config (unset keys keep the defaults); `where` names it in an error."""
        known = [f.name for f in dataclasses.fields(cls)]
        if unknown := sorted(set(config or {}) - set(known)):
            raise UserError(f"{where}: unknown sampling setting(s) {unknown}; known: {known}")
        try:
            return cls(**dict(config or {}))
        except UserError as error:
            raise UserError(f"{where}: {error}") from error

    def shift_at(self, height: int, width: int) -> float:
        """The schedule shift for a height × width image. With a reference side r, SD3's resolution-dependent shift:
        schedule_shift · √(height · width) / r, so that a larger image, whose noise hides less of it at the same t
        (its pixels average over more of the same content), gets more of its steps near noise."""
        if not self.shift_reference_size:
            return self.schedule_shift
        return self.schedule_shift * math.sqrt(height * width) / self.shift_reference_size

    def but(self, **given: Any) -> "SamplerSettings":
        """These settings with every given value that is not None in place."""
        return dataclasses.replace(self, **{key: value for key, value in given.items() if value is not None})
