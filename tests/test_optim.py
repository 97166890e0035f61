"""MuonAdamW: Muon on the decoder layers' matrices, AdamW on the rest, one schedule, exact resumes."""

import copy

import pytest
import torch
from hydra_utils import FAST, compose_fit

from omnigen.data.curriculum import Curriculum, Stage
from omnigen.fit import train
from omnigen.training.optim import MuonAdamW, warmup_cosine

MUON = ["logger=csv", "callbacks.sample_grid=null"]  # tiny's default optimiser
ADAMW = ["model.optimizer._target_=torch.optim.AdamW", "~model.optimizer.muon_lr"]


def test_muon_takes_the_decoder_matrices_and_adamw_the_rest(tmp_path):
    module = train(compose_fit(FAST + MUON + ["trainer.max_steps=1"], tmp_path))["module"]
    optimizer = module.trainer.optimizers[0]
    assert isinstance(optimizer, MuonAdamW)
    adamw, muon = (set(group["param_names"]) for group in optimizer.param_groups)
    assert muon and all(".layers." in name for name in muon)
    assert all(module.get_parameter(name).ndim == 2 for name in muon)
    named = dict(module.named_parameters())
    assert muon | adamw == set(named) and not muon & adamw  # every parameter trained, by one of the two
    for name in [
        "transformer.llm.embed_tokens.weight",
        "transformer.final_layer.linear.weight",
        "transformer.llm.layers.0.input_layernorm.weight",
        "transformer.x_embedder.proj.weight",
    ]:
        assert name in adamw, name


def test_one_schedule_scales_both_learning_rates():
    layer, head = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)  # a full-rank gradient for the layer
    optimizer = MuonAdamW([("body.layers.0.weight", layer.weight), ("head.weight", head.weight)], lr=1e-3, muon_lr=0.02)
    schedule = warmup_cosine(optimizer, warmup_steps=4)
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([2.5e-4, 0.005])  # 1/4 of each
    head(layer(torch.randn(8, 4))).pow(2).mean().backward()
    before = layer.weight.detach().clone()
    optimizer.step()
    schedule.step()
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([5e-4, 0.01])
    update = layer.weight.detach() - before  # Muon's step is a scaled orthogonal matrix: equal singular values
    singular = torch.linalg.svdvals(update)
    assert singular.min() / singular.max() > 0.5


def test_a_curriculum_stage_sets_adamws_lr_and_muons_in_proportion():
    layer, head = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    optimizer = MuonAdamW([("body.layers.0.weight", layer.weight), ("head.weight", head.weight)], lr=1e-3, muon_lr=0.02)
    curriculum = Curriculum(
        [Stage(steps=1, image_size=16, batch_size=8, lr=1e-3), Stage(steps=1, image_size=32, batch_size=4, lr=1e-4)]
    )
    schedule = warmup_cosine(optimizer, curriculum=curriculum)
    optimizer.step()
    schedule.step()
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([1e-4, 2e-3])


def test_bad_parameters_are_refused_with_a_reason():
    weight = torch.nn.Parameter(torch.randn(4, 4))
    with pytest.raises(TypeError, match="named_parameters"):
        MuonAdamW([weight])
    with pytest.raises(ValueError, match="Muon would train nothing"):
        MuonAdamW([("head.weight", weight)])
    with pytest.raises(ValueError, match="not MuonAdamW's.*optimiser it was trained with"):  # e.g. AdamW's
        MuonAdamW([("body.layers.0.weight", weight)]).load_state_dict(torch.optim.AdamW([weight]).state_dict())


def two_part_optimizer() -> tuple[MuonAdamW, list[torch.nn.Parameter]]:
    torch.manual_seed(0)
    params = [
        torch.nn.Parameter(torch.randn(4, 3)),
        torch.nn.Parameter(torch.randn(3)),
        torch.nn.Parameter(torch.randn(5, 4)),
    ]
    names = ["body.layers.0.weight", "head.bias", "body.layers.1.weight"]
    return MuonAdamW(list(zip(names, params, strict=True)), lr=1e-2, muon_lr=0.02), params


def steps(optimizer: MuonAdamW, params: list[torch.nn.Parameter], n: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(n):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()


@pytest.mark.parametrize("layout", ["torch", "before 2026-12-06"])
def test_the_state_in_torchs_layout_and_in_the_old_one_resumes_exactly(layout):
    """The state dict is torch's own layout (what torch.distributed.checkpoint reads and writes under FSDP2),
    with both parts' groups; checkpoints in the old {"muon", "adamw"} layout still load."""
    optimizer, params = two_part_optimizer()
    steps(optimizer, params, 3, seed=1)
    state = optimizer.state_dict()
    assert set(state) == {"state", "param_groups"} and len(state["param_groups"]) == 2
    assert sorted(state["state"]) == [0, 1, 2]  # every parameter, numbered across both parts
    if layout != "torch":
        state = {"muon": optimizer.muon.state_dict(), "adamw": optimizer.adamw.state_dict()}
    resumed, resumed_params = two_part_optimizer()
    with torch.no_grad():
        for p, q in zip(resumed_params, params, strict=True):
            p.copy_(q)
    resumed.load_state_dict(copy.deepcopy(state))  # as from a file: torch's loading may alias the tensors
    steps(optimizer, params, 2, seed=2)
    steps(resumed, resumed_params, 2, seed=2)
    for p, q in zip(resumed_params, params, strict=True):
        assert torch.equal(p, q)


def test_adamw_alone_is_one_override_away(tmp_path):
    module = train(compose_fit(FAST + MUON + ADAMW + ["trainer.max_steps=1"], tmp_path))["module"]
    assert type(module.trainer.optimizers[0]) is torch.optim.AdamW


def test_a_resumed_muon_run_repeats_the_uninterrupted_one_exactly(tmp_path):
    straight = train(compose_fit(FAST + MUON, tmp_path / "straight"))["module"]
    train(compose_fit(FAST + MUON + ["trainer.max_steps=2"], tmp_path / "a"))
    resumed = train(
        compose_fit(FAST + MUON + [f"ckpt_path={tmp_path / 'a' / 'checkpoints' / 'last.ckpt'}"], tmp_path / "b")
    )["module"]
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, atol=0, rtol=0, msg=name)
