"""Fits through Hydra: checkpoints that load on their own, fast_dev_run, the W&B default and sweeps."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra_utils import FAST, compose_fit
from omegaconf import OmegaConf

from omnigen.checkpoints.native import load_module, read_checkpoint
from omnigen.fit import train
from omnigen.model.masks import CausalMask
from omnigen.pipeline import OmniGenPipeline


def test_short_fit_writes_a_checkpoint_that_rebuilds_the_model(tmp_path):
    cfg = compose_fit(FAST + ["logger=csv", "model/mask=causal"], tmp_path)
    objects = train(cfg)
    trained = objects["module"]
    assert objects["trainer"].global_step == 4
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and (tmp_path / "checkpoints" / "step_0000002.ckpt").is_file()
    meta = read_checkpoint(ckpt)["omnigen"]
    assert meta["global_step"] == 4 and "tokenizer.json" in meta["tokenizer_files"]
    assert meta["run_config"]["data"]["batch_size"] == 4 and meta["run_config"]["seed"] == cfg.seed
    assert meta["model_config"]["backbone"]["config"]["hidden_size"] == cfg.model.backbone.config.hidden_size

    loaded = load_module(ckpt)
    assert isinstance(loaded.transformer.mask, CausalMask)
    assert loaded.processor.tokenizer.get_vocab() == trained.processor.tokenizer.get_vocab()
    for name, value in trained.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    trained.eval()
    kwargs = dict(
        prompt="a large red circle at the center on a white background",
        num_inference_steps=2,
        seed=0,
        output_type="pt",
        progress=False,
    )
    from_ckpt = OmniGenPipeline.from_checkpoint(ckpt)
    image = from_ckpt(**kwargs)
    assert image.shape == (1, 3, cfg.data.image_size, cfg.data.image_size)  # the training size by default
    torch.testing.assert_close(
        image, OmniGenPipeline(trained)(**kwargs, height=cfg.data.image_size, width=cfg.data.image_size)
    )
    # the exported directory (safetensors + config + tokenizer) gives the same module and images
    exported = from_ckpt.save_pretrained(tmp_path / "export")
    assert sorted(p.name for p in exported.iterdir()) == ["model.safetensors", "omnigen_config.json", "tokenizer"]
    again = OmniGenPipeline.from_checkpoint(exported)
    assert again.module.steps_trained == 4 and again.module.run_config == meta["run_config"]
    assert torch.equal(again(**kwargs), image)
    with pytest.raises(FileExistsError, match="exists"):
        from_ckpt.save_pretrained(exported)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export")]  # no temporary left behind
    assert (tmp_path / "samples" / "step_0000004.png").is_file()
    metrics = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()
    assert "train/loss" in metrics and "train/loss/text_to_image/t2i" in metrics


def test_resume_repeats_an_uninterrupted_run_exactly(tmp_path):
    """Through a posterior-sampling VAE, with CFG dropout on: same step, same data, same weights."""
    latent = ["model/vae=tiny_kl", "model.patch_size=1", "logger=csv", "callbacks.sample_grid=null"]
    straight = train(compose_fit(FAST + latent, tmp_path / "straight"))["module"]
    first = train(compose_fit(FAST + latent + ["trainer.max_steps=2"], tmp_path / "a"))
    assert first["trainer"].global_step == 2
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    resumed = train(compose_fit(FAST + latent + [f"ckpt_path={ckpt}"], tmp_path / "b"))
    assert resumed["trainer"].global_step == 4
    with open(tmp_path / "b" / "csv" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {int(r["step"]) for r in rows if r["train/loss"]} == {2, 3}  # only the two missing steps ran
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed["module"].state_dict()[name], value, atol=0, rtol=0, msg=name)
    assert read_checkpoint(tmp_path / "b" / "checkpoints" / "last.ckpt")["omnigen"]["global_step"] == 4
    assert load_module(tmp_path / "b" / "checkpoints" / "last.ckpt").vae.latent_channels == 4


def test_sample_grid_runs_once_per_trigger_under_gradient_accumulation(tmp_path):
    objects = train(
        compose_fit(
            FAST + ["logger=csv", "trainer.accumulate_grad_batches=3", "callbacks.sample_grid.every_n_steps=2"],
            tmp_path,
        )
    )
    grid = next(c for c in objects["callbacks"] if type(c).__name__ == "SampleGridCallback")
    assert [p.name for p in grid.saved] == ["step_0000002.png", "step_0000004.png"]
    with pytest.raises(Exception, match="num_samples and num_steps >= 1.*sample_grid=null"):  # Hydra wraps it
        train(compose_fit(FAST + ["callbacks.sample_grid.num_samples=0"], tmp_path / "none"))


def test_fast_dev_run_debug_config(tmp_path):
    objects = train(compose_fit(["debug=fast", "data.batch_size=2"], tmp_path))
    assert objects["trainer"].fast_dev_run and objects["trainer"].global_step == 1
    assert not (tmp_path / "checkpoints").exists()


def test_default_logger_writes_an_offline_wandb_run(tmp_path):
    train(compose_fit(FAST + ["trainer.max_steps=1", "callbacks.checkpoint=null"], tmp_path))
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "expected one offline W&B run"
    assert list(runs[0].glob("files/media/images/samples_*.png")), "the sample grid did not reach W&B"
    assert (tmp_path / "csv" / "version_0" / "metrics.csv").is_file()


def test_command_line_sweep_over_masks(tmp_path):
    overrides = [o for o in FAST if not o.startswith("callbacks.sample_grid")] + [
        "trainer.max_steps=2",
        "logger=csv",
        "callbacks.sample_grid=null",
        f"paths.log_dir={tmp_path}",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "omnigen.fit", "-m", "model/mask=omnigen,causal,full", *overrides],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(Path(tmp_path, "fit", "multiruns").glob("*/[0-9]*"))
    assert len(runs) == 3
    masks = [OmegaConf.load(run / ".hydra" / "config.yaml").model.mask._target_.rsplit(".", 1)[1] for run in runs]
    assert masks == ["OmniGenMask", "CausalMask", "FullMask"]
    for run in runs:
        assert (run / "checkpoints" / "last.ckpt").is_file()
