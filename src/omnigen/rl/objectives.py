"""The pieces of the two reward fine-tuning objectives, as plain tensor functions.

Conventions are the flow's (omnigen.flow): t = 0 is noise, t = 1 data, x_t = t·x1 + (1 − t)·ε, and the
model predicts v = x1 − ε; the noise level is σ = 1 − t.

Flow-GRPO (arXiv 2505.05470) samples with an SDE whose marginals are the ODE's, so every step is a
Gaussian with a closed-form log-probability. With ε̂ = x − (1 − σ)·v (the noise the velocity implies)
and g = a·√(σ / (1 − σ)):

    x' = x + Δt·(v − g²·ε̂ / (2σ)) + g·√Δt·z,   z ~ N(0, I)

(the drift adds the score term −g²/2 · ∇log p = g²·ε̂/(2σ) against the direction of time; a = 0 is the
Euler step). σ is capped at the first step's level below 1, where g would be infinite.

DiffusionNFT (arXiv 2509.16117) needs no likelihood: a reward r ∈ [0, 1] weights the ordinary
flow-matching loss of two implicit policies mixed from the sampling (old) velocity and the current one,
v⁺ = (1 − β)·v_old + β·v and v⁻ = (1 + β)·v_old − β·v:

    loss = r·‖v⁺ − (x1 − ε)‖² + (1 − r)·‖v⁻ − (x1 − ε)‖²
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from omnigen.flow.sampler import VelocityFn, euler_timesteps


def per_sample_mean(x: Tensor) -> Tensor:
    """(B, ...) -> (B,): the mean over every dimension but the batch."""
    return x.flatten(1).mean(dim=1)


def sde_step(
    x: Tensor, v: Tensor, t: Tensor, dt: float, noise_level: float, max_sigma: float, noise: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """One step of Flow-GRPO's SDE from time t (B,) to t + dt: (x', mean, std) with x' = mean + std·noise
    (noise drawn when None). `max_sigma` < 1 caps σ (the first step's level: σ = 1 would make std infinite)."""
    sigma = (1 - t).clamp(max=max_sigma).view(-1, *([1] * (x.dim() - 1)))  # (B, 1, ...)
    g = noise_level * torch.sqrt(sigma / (1 - sigma))
    implied_noise = x - (1 - sigma) * v  # ε̂
    mean = x + dt * (v - g**2 * implied_noise / (2 * sigma))
    std = g * math.sqrt(dt)
    if noise is None:
        noise = torch.randn_like(x)
    return mean + std * noise, mean, std.expand_as(x)


@dataclass
class Trajectory:
    """What sampling with the SDE recorded, per step k: the state it started from, its time and the state it
    drew (with the log-probability of that draw under the sampling policy). Training recomputes the mean
    at (states[k], times[k]) with the current policy and scores next_states[k] under it."""

    states: list[Tensor] = field(default_factory=list)  # (B, ...) x_t
    times: list[Tensor] = field(default_factory=list)  # (B,)
    next_states: list[Tensor] = field(default_factory=list)  # (B, ...) x_{t + dt}
    log_probs: list[Tensor] = field(default_factory=list)  # (B,)


def sde_sample(
    velocity: VelocityFn, noise: Tensor, num_steps: int, noise_level: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Trajectory]:
    """Integrate from x(0) = noise to t = 1 with `num_steps` SDE steps on the Euler grid (noise_level 0: the
    Euler sampler), recording the trajectory. σ is capped at the first step's level."""
    times = euler_timesteps(num_steps).to(noise.device)
    max_sigma = 1 - float(times[1])
    x, record = noise, Trajectory()
    for t0, t1 in zip(times[:-1], times[1:], strict=True):
        t = t0.expand(x.shape[0])  # (B,)
        z = torch.randn(x.shape, generator=generator).to(x)  # drawn on the CPU: a seed means the same on any device
        nxt, mean, std = sde_step(x, velocity(x, t), t, float(t1 - t0), noise_level, max_sigma, z)
        if noise_level > 0:
            record.states.append(x)
            record.times.append(t)
            record.next_states.append(nxt)
            record.log_probs.append(gaussian_log_prob(nxt, mean, std))
        x = nxt
    return x, record


def gaussian_log_prob(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """(B,): the log-density of x under N(mean, std²), averaged over the non-batch dimensions (per element,
    so its scale does not grow with the image's size; the ratio's clip range is set on this scale)."""
    return per_sample_mean(-((x - mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi))


def group_advantages(rewards: Tensor, group_size: int, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """(B,) rewards of B / group_size groups of samples of one prompt -> (advantages (B,), flat (groups,)):
    each reward minus its group's mean over the group's standard deviation. A group whose samples all
    scored the same teaches nothing: its advantages are 0, and `flat` marks it for logging."""
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(
            f"rewards must be (B,) with B a multiple of group_size {group_size}, got {tuple(rewards.shape)}"
        )
    groups = rewards.view(-1, group_size)  # (groups, G)
    spread = groups.std(dim=1, keepdim=True, unbiased=False)
    flat = spread.squeeze(1) < eps
    advantages = torch.where(spread < eps, torch.zeros_like(groups), (groups - groups.mean(1, keepdim=True)) / spread)
    return advantages.flatten(), flat


def grpo_loss(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, clip_range: float) -> tuple[Tensor, Tensor]:
    """PPO's clipped surrogate on (B,) per-sample log-probabilities: (loss, ratio). On policy the ratio is
    exactly 1 when the sampling and training forwards agree bit for bit."""
    ratio = torch.exp(log_prob - old_log_prob)
    clipped = torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    return torch.maximum(-advantages * ratio, -advantages * clipped).mean(), ratio


def nft_loss(v: Tensor, v_old: Tensor, target: Tensor, reward: Tensor, beta: float, adaptive: bool = False) -> Tensor:
    """DiffusionNFT's loss for (B, ...) velocities and the flow-matching target x1 − ε, with (B,) rewards
    in [0, 1]: the positive policy pulled to the target where the reward is high, the negative one
    where it is low. Mean over the batch of each sample's mean squared error; `adaptive` divides each
    sample's two errors by the detached mean absolute error of its positive policy (the paper's adaptive
    normalisation: every sample's step has a comparable size, whatever its noise level)."""
    positive = (1 - beta) * v_old + beta * v
    negative = (1 + beta) * v_old - beta * v
    scale = per_sample_mean((positive - target).abs()).detach().clamp(min=1e-5) if adaptive else 1.0  # (B,)
    return (
        (reward * per_sample_mean((positive - target) ** 2) + (1 - reward) * per_sample_mean((negative - target) ** 2))
        / scale
    ).mean()
