"""The reward fine-tuning objectives: Flow-GRPO's SDE keeps the ODE's marginals and has the Gaussian
log-density, its ratio is exactly 1 on policy; group advantages; DiffusionNFT's loss by hand."""

import math

import pytest
import torch

from omnigen.flow.sampler import euler_sample, euler_timesteps
from omnigen.rl.objectives import (
    gaussian_log_prob,
    group_advantages,
    grpo_loss,
    nft_loss,
    sde_sample,
    sde_step,
)

MU, S = 1.5, 0.5  # 1-D data x1 ~ N(MU, S²): the exact velocity field is known in closed form


def exact_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """E[x1 − ε | x_t = x] for x_t = t·x1 + (1 − t)·ε, x1 ~ N(MU, S²), ε ~ N(0, 1)."""
    t = t.view(-1, 1)
    return MU + (t * S**2 - (1 - t)) / (t**2 * S**2 + (1 - t) ** 2) * (x - t * MU)


def sample(noise_level: float, steps: int = 100, n: int = 200_000) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, generator=generator, dtype=torch.float64)
    times = euler_timesteps(steps).double()
    for t0, t1 in zip(times[:-1], times[1:], strict=True):
        t = t0.expand(n)
        noise = torch.randn(n, 1, generator=generator, dtype=torch.float64)
        x, _, _ = sde_step(x, exact_velocity(x, t), t, float(t1 - t0), noise_level, 1 - float(times[1]), noise)
    return x


@pytest.mark.parametrize("noise_level", [0.0, 0.7])
def test_the_sde_ends_at_the_data_distribution_as_the_ode_does(noise_level):
    x = sample(noise_level)
    assert x.mean().item() == pytest.approx(MU, abs=0.02) and x.std().item() == pytest.approx(S, abs=0.02)


def test_a_zero_noise_level_is_the_euler_step():
    x, v, t = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8), torch.tensor([0.1, 0.4, 0.6, 0.9])
    stepped, mean, std = sde_step(x, v, t, 0.05, 0.0, 0.95)
    torch.testing.assert_close(stepped, x + 0.05 * v)
    torch.testing.assert_close(mean, stepped)
    assert torch.all(std == 0)


def test_the_log_probability_is_the_gaussian_density_and_the_ratio_is_one_on_policy():
    x, v, t = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4), torch.tensor([0.2, 0.5, 0.8])
    stepped, mean, std = sde_step(x, v, t, 0.1, 0.7, 0.9)
    expected = torch.distributions.Normal(mean, std).log_prob(stepped).flatten(1).mean(1)
    torch.testing.assert_close(gaussian_log_prob(stepped, mean, std), expected)
    # recomputing the step's mean from the same velocity (the training forward) gives the same density
    _, again, _ = sde_step(x, v.clone(), t, 0.1, 0.7, 0.9, noise=torch.zeros_like(x))
    new, old = gaussian_log_prob(stepped, again, std), gaussian_log_prob(stepped, mean, std)
    loss, ratio = grpo_loss(new, old, torch.tensor([1.0, -0.5, 0.0]), clip_range=1e-4)
    assert torch.equal(ratio, torch.ones(3))
    assert loss.item() == pytest.approx(-(1.0 - 0.5 + 0.0) / 3)


def test_the_clipped_ratio_stops_paying_past_the_clip_range():
    advantages = torch.tensor([1.0, 1.0, -1.0])
    log_ratio = torch.tensor([0.5, -0.5, -0.5])  # ratio e^0.5 (clipped for a positive advantage), e^-0.5
    loss, _ = grpo_loss(log_ratio, torch.zeros(3), advantages, clip_range=0.2)
    # per sample max(-A·r, -A·clip(r)): -1.2 (clipped), -e^-0.5, and for A = -1: max(e^-0.5, 0.8) = 0.8
    expected = (-min(math.exp(0.5), 1.2) - min(math.exp(-0.5), 0.8) + max(math.exp(-0.5), 0.8)) / 3
    assert loss.item() == pytest.approx(expected)


def test_group_advantages_are_normalised_within_groups_and_flat_groups_teach_nothing():
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.5, 0.5])
    advantages, flat = group_advantages(rewards, 4)
    torch.testing.assert_close(advantages, torch.tensor([1.0, -1.0, 1.0, -1.0, 0.0, 0.0, 0.0, 0.0]))
    assert flat.tolist() == [False, True]
    with pytest.raises(ValueError, match="multiple of group_size 3"):
        group_advantages(rewards, 3)


def test_the_nft_loss_matches_a_hand_computed_case():
    v, v_old, target = torch.tensor([[2.0]]), torch.tensor([[1.0]]), torch.tensor([[0.0]])
    # beta 0.5: v+ = 0.5·1 + 0.5·2 = 1.5, v- = 1.5·1 - 0.5·2 = 0.5; r = 0.25: 0.25·1.5² + 0.75·0.5² = 0.75
    assert nft_loss(v, v_old, target, torch.tensor([0.25]), beta=0.5).item() == pytest.approx(0.75)
    # a reward of 1 trains the positive policy alone: the gradient is that of its squared error
    v = torch.tensor([[2.0]], requires_grad=True)
    nft_loss(v, v_old, target, torch.tensor([1.0]), beta=0.5).backward()
    assert v.grad.item() == pytest.approx(2 * 1.5 * 0.5)  # d/dv (0.5·1 + 0.5·v)² at v = 2


def test_sde_sampling_records_a_trajectory_whose_log_probabilities_recompute_exactly():
    velocity = torch.nn.Linear(4, 4).double()  # a stand-in policy: v(x, t) = W x + b + t
    policy = lambda x, t: velocity(x) + t.view(-1, 1)  # noqa: E731
    noise = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        euler = euler_sample(policy, noise, 5)
        same, empty = sde_sample(policy, noise, 5, 0.0)
        x, record = sde_sample(policy, noise, 5, 0.7, torch.Generator().manual_seed(2))
    torch.testing.assert_close(same, euler)
    assert empty.states == [] and len(record.states) == len(record.log_probs) == 5
    assert not torch.allclose(x, euler) and torch.equal(record.next_states[-1], x)
    times = euler_timesteps(5)  # the grid the sampler stepped on (its float32 steps, not exactly 0.2)
    max_sigma = 1 - float(times[1])
    for k, (state, t, drawn, old) in enumerate(
        zip(record.states, record.times, record.next_states, record.log_probs, strict=True)
    ):
        dt = float(times[k + 1] - times[k])
        _, mean, std = sde_step(state, policy(state, t), t, dt, 0.7, max_sigma, torch.zeros_like(state))
        assert torch.equal(gaussian_log_prob(drawn, mean, std), old), k  # the ratio is exactly 1 on policy
