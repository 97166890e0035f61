"""Rectified-flow endpoints, the Euler sampler, CFG algebra and the timestep samplers."""

import pytest
import torch

from omnigen.flow.rectified import interpolate, velocity_target
from omnigen.flow.sampler import StepCache, euler_sample, euler_timesteps, guided_velocity
from omnigen.flow.timesteps import LogitNormalTimesteps, UniformTimesteps


def test_interpolation_endpoints_and_velocity():
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    assert torch.equal(interpolate(x, eps, torch.zeros(3)), eps)  # t = 0 is noise
    assert torch.equal(interpolate(x, eps, torch.ones(3)), x)  # t = 1 is data
    t = torch.tensor([0.1, 0.5, 0.9])
    v = velocity_target(x, eps)
    # moving along the target velocity for the remaining time lands exactly on the data
    torch.testing.assert_close(interpolate(x, eps, t) + (1 - t).view(-1, 1, 1, 1) * v, x)
    # and the path is straight: d/dt x_t equals v
    h = 1e-3
    torch.testing.assert_close((interpolate(x, eps, t + h) - interpolate(x, eps, t)) / h, v, atol=1e-3, rtol=1e-3)


def test_euler_with_the_true_velocity_reaches_the_data():
    g = torch.Generator().manual_seed(1)
    x, eps = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    seen = []

    def velocity(x_t, t):
        seen.append(t.clone())
        return x - eps  # a straight flow's velocity is constant

    out = euler_sample(velocity, eps, num_steps=5)
    torch.testing.assert_close(out, x)
    assert len(seen) == 5 and seen[0].tolist() == [0.0, 0.0] and seen[-1][0].item() == pytest.approx(0.8)


def test_euler_timesteps_validate():
    assert euler_timesteps(4).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="num_steps"):
        euler_timesteps(0)


@pytest.mark.parametrize("shift", [0.5, 3.0])
def test_a_shifted_schedule_keeps_its_ends_orders_its_steps_and_undoes_with_the_inverse_shift(shift):
    """k > 1 puts more steps near noise (t = 0), k < 1 near data; shifting by k then by 1/k gives the uniform grid
    back; k = 1 is the uniform grid exactly."""
    times = euler_timesteps(8, shift)
    assert times[0] == 0.0 and times[-1] == 1.0 and bool((times.diff() > 0).all())
    assert (times[1] < 1 / 8) == (shift > 1)
    noise_level = 1.0 - times.double()
    back = 1.0 - (noise_level / shift) / (1.0 + (1.0 / shift - 1.0) * noise_level)
    torch.testing.assert_close(back.float(), euler_timesteps(8))
    assert torch.equal(euler_timesteps(8, 1.0), torch.linspace(0.0, 1.0, 9))
    with pytest.raises(ValueError, match="shift"):
        euler_timesteps(8, 0.0)


def test_guidance_algebra():
    c, ci, u = torch.full((2,), 5.0), torch.full((2,), 2.0), torch.full((2,), 1.0)
    assert torch.equal(guided_velocity(c, u, 1.0), c)  # scale 1 is the conditional branch
    assert torch.equal(guided_velocity(c, u, 1.0, ci, 1.0), c)
    assert guided_velocity(c, u, 2.0).tolist() == [9.0, 9.0]  # u + 2(c - u)
    # u + s_img(ci - u) + s_txt(c - ci) = 1 + 2·1 + 3·3 (swapping the scales would give 1 + 3·1 + 2·3)
    assert guided_velocity(c, u, 3.0, ci, 2.0).tolist() == [12.0, 12.0]


def test_timestep_samplers():
    g = torch.Generator().manual_seed(0)
    t = LogitNormalTimesteps().sample(20000, generator=g)
    assert t.shape == (20000,) and 0 < t.min() and t.max() < 1
    assert t.median().item() == pytest.approx(0.5, abs=0.02)  # sigmoid(N(0, 1)) is symmetric about 1/2
    assert ((t > 0.25) & (t < 0.75)).float().mean() > 0.7  # concentrated mid-path (a uniform gives 0.5)
    shifted = LogitNormalTimesteps(mean=1.0).sample(20000, generator=g)
    assert shifted.median().item() == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item(), abs=0.02)
    u = UniformTimesteps(0.2, 0.6).sample(20000, generator=g)
    assert 0.2 <= u.min() and u.max() <= 0.6 and u.mean().item() == pytest.approx(0.4, abs=0.01)
    with pytest.raises(ValueError):
        UniformTimesteps(0.5, 0.5)
    with pytest.raises(ValueError):
        LogitNormalTimesteps(std=0)


def test_warmup_cosine_schedule():
    import torch.nn as nn

    from omnigen.training.optim import warmup_cosine

    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
    sched = warmup_cosine(opt, warmup_steps=4, total_steps=12, min_lr_ratio=0.1)
    lrs = []
    for _ in range(14):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[8] == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the decay
    assert lrs[12] == pytest.approx(0.1) and lrs[13] == pytest.approx(0.1)
    constant = warmup_cosine(torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0), warmup_steps=0)
    assert constant.get_last_lr() == [1.0]
    with pytest.raises(ValueError, match="total_steps"):
        warmup_cosine(opt, warmup_steps=10, total_steps=-1, min_lr_ratio=0.5)


def test_a_step_cache_computes_every_step_at_threshold_0_and_extrapolates_a_linear_velocity_exactly():
    """threshold 0: every step computed, the plain result. A velocity linear in t (a + b·t, whatever x): at a large
    threshold order 1 computes the first two steps and extrapolates the rest exactly; order 0 computes the first
    and reuses it."""
    a, b = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)).unbind(0)

    def velocity(x, t):
        return (a + b * t.view(-1, 1, 1, 1)[:1, 0]).expand_as(x)

    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    plain = euler_sample(velocity, noise, 8)
    every = StepCache(velocity, 0.0)
    assert torch.equal(euler_sample(every, noise, 8), plain) and (every.calls, every.skipped) == (8, 0)
    first_order = StepCache(velocity, 1e9, order=1)
    torch.testing.assert_close(euler_sample(first_order, noise, 8), plain)  # skipping cost nothing here
    assert first_order.skipped == 6  # the first two steps computed, the other six extrapolated
    reused = StepCache(velocity, 1e9, order=0)
    assert not torch.allclose(euler_sample(reused, noise, 8), plain) and reused.skipped == 7
    with pytest.raises(ValueError, match="threshold"):
        StepCache(velocity, -1.0)
