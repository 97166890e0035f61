"""EMA weights that checkpoints carry and the pipeline samples with; bf16-mixed, gradient checkpointing; what a run
logs."""

import logging
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TINY_PHI3, make_module
from hydra_utils import FAST, compose_fit
from omegaconf import OmegaConf
from PIL import Image
from torch.optim.swa_utils import AveragedModel

from omnigen.callbacks.ema import PowerEMAWeightAveraging, power_ema
from omnigen.callbacks.sample_grid import SampleGridCallback
from omnigen.checkpoints.native import load_module, read_checkpoint
from omnigen.fit import train, warn_if_bf16_is_slow_here
from omnigen.pipeline import OmniGenPipeline


def test_ema_weights_differ_from_raw_and_load_into_the_pipeline(tmp_path):
    objects = train(
        compose_fit(
            [*FAST, "callbacks=ema", "callbacks.ema.decay=0.5", "logger=csv", "callbacks.sample_grid=null"], tmp_path
        )
    )
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    raw, ema = read_checkpoint(ckpt)["current_model_state"], read_checkpoint(ckpt)["state_dict"]
    name = "transformer.final_layer.linear.weight"
    assert not torch.equal(raw[name], ema[name])  # the average lags the raw weights
    averaged, trained = load_module(ckpt), load_module(ckpt, weights="raw")
    assert torch.equal(averaged.state_dict()[name], ema[name]) and torch.equal(trained.state_dict()[name], raw[name])
    # after fit, Lightning leaves the averaged weights in the module, and the pipeline samples with them
    assert torch.equal(objects["module"].state_dict()[name], ema[name])
    kwargs = dict(prompt="a red circle", num_inference_steps=2, seed=0, output_type="pt", progress=False)
    from_ema = OmniGenPipeline.from_checkpoint(ckpt)(**kwargs)
    assert not torch.equal(from_ema, OmniGenPipeline.from_checkpoint(ckpt, weights="raw")(**kwargs))


def test_the_final_sample_grid_draws_with_the_weights_last_ckpt_holds(tmp_path):
    # the averaging callback swaps its average in at the end of training; the grid drawn then must show it
    objects = train(compose_fit([*FAST, "callbacks.ema.gamma=0.5", "logger=csv"], tmp_path))
    grid = next(c for c in objects["callbacks"] if isinstance(c, SampleGridCallback))
    drawn = np.asarray(Image.open(grid.saved[-1]))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"

    def redraw(weights: str) -> np.ndarray:  # the same grid from last.ckpt: its state dict (the average) or raw
        trainer = SimpleNamespace(
            datamodule=objects["datamodule"],
            default_root_dir=tmp_path / weights,
            global_step=objects["trainer"].global_step,
            loggers=[],
            is_global_zero=True,
        )
        grid.run(trainer, load_module(ckpt, weights=weights))
        return np.asarray(Image.open(grid.saved[-1]))

    assert np.array_equal(drawn, redraw("default")) and not np.array_equal(drawn, redraw("raw"))


def test_power_ema_averages_the_last_fraction_of_the_run_at_any_length():
    # weights 1, 2, ..., n averaged with decay (1 - 1/k)^(gamma + 1) weigh step k as k^gamma, so the average
    # lands at n (gamma + 1) / (gamma + 2): the last 1/(gamma + 2) of the run, whatever n is
    for n, gamma in [(100, 7.0), (1000, 7.0), (1000, 2.0)]:
        layer = torch.nn.Linear(1, 1, bias=False)
        average = AveragedModel(layer, avg_fn=partial(power_ema, gamma=gamma))
        for k in range(1, n + 1):
            layer.weight.data.fill_(float(k))
            average.update_parameters(layer)
        assert abs(average.module.weight.item() - n * (gamma + 1) / (gamma + 2)) < 0.01 * n


def test_power_ema_trains_checkpoints_and_resumes(tmp_path):
    overrides = [*FAST, "callbacks=power_ema", "logger=csv", "callbacks.sample_grid=null"]
    train(compose_fit(overrides, tmp_path))
    ckpt = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    name = "transformer.final_layer.linear.weight"
    assert not torch.equal(ckpt["current_model_state"][name], ckpt["state_dict"][name])
    assert int(ckpt["averaging_state"]["n_averaged"]) == 4  # one update per optimiser step
    train(compose_fit([*overrides, "trainer.max_steps=6", "ckpt_path=last"], tmp_path))
    resumed = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == 6 and int(resumed["averaging_state"]["n_averaged"]) == 6
    with pytest.raises(ValueError, match="gamma must be > 0"):
        PowerEMAWeightAveraging(gamma=0.0)


def test_a_run_logs_loss_per_task_and_timestep_bin_lr_and_throughput(tmp_path):
    train(compose_fit([*FAST, "logger=csv", "callbacks.sample_grid=null"], tmp_path))
    header = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/loss/text_to_image/t2i" in header and any(
        h.startswith("train/loss/mixed_modal/edit/") for h in header
    )
    assert any(h.startswith("train/loss_t/") for h in header)
    assert {"train/samples_per_s", "train/tokens_per_s", "lr-MuonAdamW/pg1", "lr-MuonAdamW/pg2"} <= set(header)


def test_gradient_checkpointing_gives_the_same_gradients(tokenizer):
    from test_module import shapes_batch

    batch, grads = shapes_batch(4), []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        module = make_module(tokenizer, backbone_config=dict(TINY_PHI3))
        if checkpointing:  # as build_hf_backbone(gradient_checkpointing=True) does
            module.transformer.llm.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False}
            )
            assert module.transformer.llm.is_activation_checkpointing
        module.log = lambda *args, **kwargs: None
        module.train()
        module.training_step(batch, 0).backward()
        grads.append({n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_the_cpu_trainer_trains_in_bf16_and_fit_warns_where_bf16_is_slow(tmp_path, monkeypatch, caplog):
    objects = train(compose_fit([*FAST, "logger=csv", "callbacks.sample_grid=null"], tmp_path))  # trainer=cpu's default
    assert objects["trainer"].global_step == 4 and objects["trainer"].precision == "bf16-mixed"
    rows = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("train/loss")
    losses = [float(r.split(",")[column]) for r in rows[1:] if r.split(",")[column]]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)  # a CPU without AVX-512
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="omnigen.fit"):
        for precision in ["bf16-mixed", "32-true"]:
            warn_if_bf16_is_slow_here(OmegaConf.create({"accelerator": "cpu", "precision": precision}))
        warn_if_bf16_is_slow_here(OmegaConf.create({"accelerator": "gpu", "precision": "bf16-mixed"}))
    assert [r.getMessage() for r in caplog.records] == [
        "trainer.precision=bf16-mixed on a CPU without AVX-512 bf16 support is slower than fp32: "
        "add trainer.precision=32-true"
    ]


def test_compiled_backbone_trains_and_keeps_its_parameter_names(tmp_path):
    """model.compile_backbone: the LLM is torch.compiled when the fit starts (not at load), and
    checkpoints keep the released names (no `_orig_mod.`), loading into an uncompiled module."""
    cfg = compose_fit(
        FAST + ["model.compile_backbone=true", "trainer.max_steps=1", "callbacks.sample_grid=null"], tmp_path
    )
    objects = train(cfg)
    module = objects["module"]
    assert objects["trainer"].global_step == 1 and module.transformer.llm._compiled_call_impl is not None
    keys = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["state_dict"]
    assert keys and not any("_orig_mod" in k for k in keys)
    loaded = load_module(tmp_path / "checkpoints" / "last.ckpt")
    assert loaded.compile_backbone and loaded.transformer.llm._compiled_call_impl is None  # sampling stays eager
    for name, value in module.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
