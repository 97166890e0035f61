"""Rollouts: G samples of each prompt of a DataModule batch, drawn by the sampling policy and scored.

Only a batch's prompts are read (instruction, input images, family, task, spec), never its target image,
so every Shapes-X2I family and every mixture serves prompts. A rollout's samples are in groups: sample
i belongs to prompt i // G.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from omnigen.pipeline import OmniGenPipeline
from omnigen.rl.objectives import Trajectory, group_advantages, sde_sample
from omnigen.rl.rewards import RolloutSample
from omnigen.utils.images import to_pil


@dataclass
class Sampling:
    """How a rollout samples: steps on the Euler grid and classifier-free guidance (1.0: off, the
    conditional velocity alone). The SDE's noise level is the algorithm's (grpo needs one)."""

    num_steps: int = 10
    guidance_scale: float = 1.0
    img_guidance_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.num_steps < 1 or self.guidance_scale <= 0 or self.img_guidance_scale <= 0:
            raise ValueError(f"sampling needs num_steps >= 1 and guidance scales > 0, got {self}")


@dataclass
class Rollout:
    samples: list[RolloutSample]  # (B,) each prompt G times in a row
    inputs: list[list[Tensor]]  # (B,) each sample's input latents, (C, h, w) each
    group_size: int
    latents: Tensor  # (B, C, h, w) the sampled clean latents x1
    images: Tensor  # (B, 3, H, W) in [-1, 1]
    rewards: Tensor  # (B,) in [0, 1]
    metrics: list[dict[str, float]]  # (B,) every metric the reward read
    trajectory: Trajectory = field(default_factory=Trajectory)  # the SDE's steps (noise_level > 0)
    seconds: dict[str, float] = field(default_factory=dict)  # where drawing it went: sampling (and decoding), reward

    @property
    def instructions(self) -> list[str]:
        return [s.instruction for s in self.samples]

    def groups(self) -> list[str]:
        """(B,) each sample's `family/task`."""
        return [f"{s.family}/{s.task}" for s in self.samples]

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of it, so a resumed run trains on the same rollout (tensors, lists)."""
        return {
            "samples": [vars(s) for s in self.samples],
            "inputs": self.inputs,
            "group_size": self.group_size,
            "latents": self.latents,
            "images": self.images,
            "rewards": self.rewards,
            "metrics": self.metrics,
            "trajectory": vars(self.trajectory),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Rollout:
        return cls(
            [RolloutSample(**s) for s in state["samples"]],
            state["inputs"],
            state["group_size"],
            state["latents"],
            state["images"],
            state["rewards"],
            state["metrics"],
            Trajectory(**state["trajectory"]),
        )


def repeat_groups(values: list[Any], group_size: int) -> list[Any]:
    """[a, b] -> [a, a, ..., b, b, ...]: each prompt's entry G times in a row."""
    return [v for v in values for _ in range(group_size)]


@torch.no_grad()
def roll_out(
    pipe: OmniGenPipeline,
    batch: dict[str, Any],
    group_size: int,
    sampling: Sampling,
    reward: Any,
    generator: torch.Generator,
    noise_level: float = 0.0,
    use_kv_cache: bool = True,
) -> Rollout:
    """G samples of each of the batch's prompts, decoded and scored by `reward` (a plugin with
    `score_batch(samples, images)`), with the SDE at `noise_level` (0: the Euler ODE). All noise comes
    from `generator`, drawn on the CPU."""
    module, started = pipe.module, time.perf_counter()
    samples = [
        RolloutSample(family, task, spec, instruction)
        for family, task, spec, instruction in zip(
            batch["family"], batch["task"], batch["spec"], batch["instruction"], strict=True
        )
    ]
    samples = repeat_groups(samples, group_size)
    inputs = repeat_groups(module.encode_inputs(batch["input_images"]), group_size)
    height, width = output_size(batch)
    f = module.vae.downsample_factor
    noise = torch.randn(len(samples), module.vae.latent_channels, height // f, width // f, generator=generator)
    noise = noise.to(module.device)  # (B, C, h, w)
    velocity = pipe.conditioned(
        [s.instruction for s in samples],
        inputs,
        noise,
        sampling.guidance_scale,
        sampling.img_guidance_scale,
        use_kv_cache=use_kv_cache,
    )
    latents, trajectory = sde_sample(velocity, noise, sampling.num_steps, noise_level, generator)
    images = module.vae.decode(latents).clamp(-1, 1).float()  # (B, 3, H, W)
    scored = time.perf_counter()
    values, metrics = reward.score_batch(samples, [np.array(to_pil(image)) for image in images])
    seconds = {"sampling": scored - started, "reward": time.perf_counter() - scored}
    rewards = torch.tensor(values, dtype=torch.float32, device=module.device)
    if not torch.all((rewards >= 0) & (rewards <= 1)):
        raise ValueError(f"a reward must lie in [0, 1]; {type(reward).__name__} returned {values}")
    return Rollout(samples, inputs, group_size, latents, images, rewards, metrics, trajectory, seconds)


def output_size(batch: dict[str, Any]) -> tuple[int, int]:
    """The batch's one output size (H, W): its targets' (only their shape is read)."""
    outputs = batch["output_image"]
    sizes = {tuple(o.shape[-2:]) for o in outputs}
    if len(sizes) != 1:
        raise ValueError(f"reward fine-tuning samples one output size per batch, got {sorted(sizes)}")
    return sizes.pop()


def reward_summary(rollout: Rollout) -> dict[str, float]:
    """rl/reward (mean), rl/reward_spread (the mean within-group standard deviation) and rl/flat_groups (the
    share of groups whose samples all scored alike: they teach nothing), overall and per family/task."""
    _, flat = group_advantages(rollout.rewards, rollout.group_size)  # (prompts,): the rule training uses
    grouped = rollout.rewards.view(-1, rollout.group_size)  # (prompts, G)
    by_label: dict[str, list[int]] = defaultdict(list)  # label -> its groups
    for group, label in enumerate(rollout.groups()[:: rollout.group_size]):
        by_label[""].append(group)
        by_label[f"/{label}"].append(group)
    out = {}
    for label, groups in by_label.items():
        out[f"rl/reward{label}"] = float(grouped[groups].mean())
        out[f"rl/reward_spread{label}"] = float(grouped[groups].std(dim=1, unbiased=False).mean())
        out[f"rl/flat_groups{label}"] = float(flat[groups].float().mean())
    return out
