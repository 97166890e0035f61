"""The reward fine-tuning algorithms (configs/model/rl/algorithm): each turns a scored rollout into a loss.

A `Policies` gives an algorithm the velocity of the rollout's prompts under three sets of weights: the
current policy (with gradients), the sampling policy that drew the rollout ("old") and the reference
("reference", what the penalty holds the policy to). The objectives themselves are tensor functions
(omnigen.rl.objectives).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from omnigen.flow.rectified import interpolate, velocity_target
from omnigen.flow.sampler import euler_timesteps
from omnigen.rl.objectives import gaussian_log_prob, group_advantages, grpo_loss, nft_loss, per_sample_mean, sde_step
from omnigen.rl.rollout import Rollout, Sampling


class Policies(Protocol):
    """Velocities of a rollout's prompts at (x_t (B, C, h, w), t (B,)): `conditional` without guidance, `sampled`
    guided as the rollout was drawn; weights None (the current policy), "old" or "reference"."""

    has_old: bool  # the sampling policy has weights of its own (a slow-moving average), not the current ones

    def conditional(self, x: Tensor, t: Tensor, weights: str | None = None) -> Tensor: ...

    def sampled(self, x: Tensor, t: Tensor, weights: str | None = None) -> Tensor: ...

    def timesteps(self, n: int, generator: torch.Generator) -> Tensor: ...


class Algorithm(Protocol):
    kl_weight: float
    noise_level: float  # the rollout's SDE (0: the Euler ODE)
    exact_replay: bool  # the rollout must be drawn by the same forward training recomputes (no kv-cache)

    def check(self, sampling: Sampling) -> None: ...

    def loss(
        self, policies: Policies, rollout: Rollout, sampling: Sampling, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]: ...


@dataclass
class NFT:
    """DiffusionNFT: the flow-matching loss on the rollout's clean samples, through the implicit positive and
    negative policies, weighted by each sample's optimality r = 1/2 + 1/2·clip(A / advantage_clip, −1, 1)
    (A: its reward's group-relative advantage). CFG-free: the conditional velocity trains.
    `adaptive`: each sample's error is divided by its own detached mean absolute error (the paper's
    adaptive loss normalisation), so samples far from their target do not dominate."""

    beta: float = 1.0
    advantage_clip: float = 2.0
    kl_weight: float = 0.0
    adaptive: bool = True
    noise_level: float = 0.0  # any sampler serves: the Euler ODE by default
    exact_replay: bool = False

    def check(self, sampling: Sampling) -> None:
        if self.beta <= 0 or self.advantage_clip <= 0 or self.kl_weight < 0 or self.noise_level < 0:
            raise ValueError(f"nft needs beta > 0, advantage_clip > 0, kl_weight >= 0, noise_level >= 0, got {self}")

    def optimality(self, rollout: Rollout) -> Tensor:
        advantages, _ = group_advantages(rollout.rewards, rollout.group_size)
        return 0.5 + 0.5 * torch.clamp(advantages / self.advantage_clip, -1, 1)  # (B,)

    def loss(
        self, policies: Policies, rollout: Rollout, sampling: Sampling, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        x1 = rollout.latents  # (B, C, h, w)
        t = policies.timesteps(x1.shape[0], generator)  # (B,)
        noise = torch.randn(x1.shape, generator=generator).to(x1)
        x_t, target = interpolate(x1, noise, t), velocity_target(x1, noise)
        v = policies.conditional(x_t, t).float()
        with torch.no_grad():  # the sampling policy's velocity; on policy it is the current one's
            v_old = policies.conditional(x_t, t, "old").float() if policies.has_old else v.detach()
        r = self.optimality(rollout)
        loss = nft_loss(v, v_old, target, r, self.beta, self.adaptive)
        logs = {"rl/optimality": float(r.mean()), "rl/policy_loss": float(loss.detach())}
        if self.kl_weight:
            with torch.no_grad():
                v_ref = policies.conditional(x_t, t, "reference").float()
            kl = per_sample_mean((v - v_ref) ** 2).mean()  # (velocity-space distance to the reference)
            loss = loss + self.kl_weight * kl
            logs["rl/kl"] = float(kl.detach())
        return loss, logs


@dataclass
class GRPO:
    """Flow-GRPO: the rollout is drawn with the SDE (noise_level > 0, Flow-GRPO's a ≈ 0.7); a random
    `timestep_fraction` of its steps is recomputed with the current policy (guided as sampled), and each
    step's Gaussian log-probability enters PPO's clipped ratio with group-relative advantages, plus
    `kl_weight` × the KL of the step's Gaussian to the reference's."""

    clip_range: float = 1e-4
    kl_weight: float = 0.04
    timestep_fraction: float = 0.5
    noise_level: float = 0.7
    exact_replay: bool = True  # the ratio is exactly 1 on policy only if sampling ran the training forward

    def check(self, sampling: Sampling) -> None:
        if self.noise_level <= 0:
            raise ValueError(
                f"grpo needs the SDE's log-probabilities: model.algorithm.noise_level must be > 0 (Flow-GRPO: 0.7), "
                f"got {self.noise_level}"
            )
        if not 0 < self.timestep_fraction <= 1 or self.clip_range <= 0 or self.kl_weight < 0:
            raise ValueError(f"grpo needs 0 < timestep_fraction <= 1, clip_range > 0, kl_weight >= 0, got {self}")

    def loss(
        self, policies: Policies, rollout: Rollout, sampling: Sampling, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        trajectory = rollout.trajectory
        advantages, _ = group_advantages(rollout.rewards, rollout.group_size)  # (B,)
        count = max(1, round(self.timestep_fraction * len(trajectory.states)))
        steps = torch.randperm(len(trajectory.states), generator=generator)[:count].sort().values.tolist()
        times = euler_timesteps(sampling.num_steps)
        max_sigma = 1 - float(times[1])
        total, ratios, kls = 0.0, [], []
        for k in steps:
            x, t, drawn = trajectory.states[k], trajectory.times[k], trajectory.next_states[k]
            dt = float(times[k + 1] - times[k])  # the sampler's own step, to the last bit (the grid is not exact)
            no_draw = torch.zeros_like(x)  # only the step's mean and std are needed
            _, mean, std = sde_step(x, policies.sampled(x, t), t, dt, self.noise_level, max_sigma, no_draw)
            log_prob = gaussian_log_prob(drawn, mean, std)  # (B,)
            loss, ratio = grpo_loss(log_prob, trajectory.log_probs[k], advantages, self.clip_range)
            ratios.append(ratio.detach())
            if self.kl_weight:
                with torch.no_grad():
                    v_ref = policies.sampled(x, t, "reference")
                    _, mean_ref, _ = sde_step(x, v_ref, t, dt, self.noise_level, max_sigma, no_draw)
                kl = per_sample_mean((mean - mean_ref) ** 2 / (2 * std**2)).mean()  # KL of equal-std Gaussians
                loss = loss + self.kl_weight * kl
                kls.append(float(kl))
            total = total + loss / len(steps)
        ratio = torch.cat(ratios)
        logs = {
            "rl/ratio_deviation": float((ratio - 1).abs().max()),
            "rl/clipped": float(((ratio - 1).abs() > self.clip_range).float().mean()),
        }
        if kls:
            logs["rl/kl"] = sum(kls) / len(kls)
        return total, logs
