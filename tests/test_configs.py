"""Every config composes and instantiates, and overrides really take."""

from dataclasses import fields
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from hydra_utils import EXPERIMENTS, FAST, RL_FAST, compose_fit
from omegaconf import OmegaConf

from omnigen.callbacks.ema import PowerEMAWeightAveraging
from omnigen.config import CONFIG_DIR
from omnigen.fit import build, train
from omnigen.flow.sampler import SamplerSettings
from omnigen.model.masks import CausalMask, FullMask, OmniGenMask
from omnigen.model.omnigen import OmniGen
from omnigen.processor import RELEASE_TEMPLATE


def test_default_config_is_the_quickstart(tmp_path):
    cfg = compose_fit([], tmp_path)
    assert cfg.model.backbone.config.model_type == "phi3" and cfg.model.vae._target_.endswith("PixelVAE")
    assert cfg.trainer.accelerator == "cpu" and cfg.logger.wandb.offline is True
    assert cfg.data._target_.endswith("ShapesX2IDataModule")
    objects = build(cfg)
    assert isinstance(objects["module"].transformer.mask, OmniGenMask)
    assert objects["module"].model_config["patch_size"] == 4
    assert len(objects["module"].processor.tokenizer) <= cfg.model.backbone.config.vocab_size
    # speedrun row 5: an EMA whose horizon grows with the run
    assert any(isinstance(c, PowerEMAWeightAveraging) for c in objects["trainer"].callbacks)
    # speedrun rows 6 and 7 and the quickstart: omni positions, 1000 steps in bf16 autocast
    assert cfg.model.positions._target_.endswith("OmniPositions")
    assert (cfg.trainer.precision, cfg.trainer.max_steps) == ("bf16-mixed", 1000)
    # eager attention: the faster one in bf16 on the CPU; the speedrun keeps the sdpa its rows ran with
    assert cfg.model.backbone.attn_implementation == "eager"
    assert objects["module"].transformer.attention_implementation == "eager"
    # the recommended sampling its checkpoints record: 8 steps shifted towards data (experiments/fast_sampling)
    assert (cfg.sampling.num_inference_steps, cfg.sampling.schedule_shift) == (8, 0.5)
    assert compose_fit(["model=paper"], tmp_path).sampling.num_inference_steps == 20  # not measured: the plain one
    speedrun = compose_fit(["experiment=speedrun"], tmp_path)
    assert (speedrun.trainer.precision, speedrun.model.backbone.attn_implementation) == ("bf16-mixed", "sdpa")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_instantiates_and_trains(experiment, tmp_path):
    cfg = compose_fit([f"experiment={experiment}"], tmp_path)
    assert build(cfg)["trainer"].max_steps == cfg.trainer.max_steps
    assert cfg.task_name == experiment
    # and a few steps of it run end to end
    rl = RL_FAST if cfg.model._target_ == "omnigen.rl.module.RewardFineTuneModule" else []
    objects = train(compose_fit([f"experiment={experiment}", *FAST, *rl, "logger=csv"], tmp_path))
    assert objects["trainer"].global_step == 4 and (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_the_curriculum_ablations_staged_arm_trains_low_resolution_first(tmp_path):
    import csv

    cfg = compose_fit(
        [
            "experiment=ablate_curriculum",
            "curriculum=speedrun",
            *FAST,
            "logger=csv",
            "curriculum.stages.0.steps=2",
            "callbacks.wall_clock=null",
        ],
        tmp_path,
    )
    assert [s.image_size for s in instantiate(cfg.curriculum).stages] == [16, 32]
    train(cfg)
    rows = list(csv.DictReader(next(tmp_path.rglob("metrics.csv")).open()))
    sizes = {int(r["step"]): float(r["curriculum/image_size"]) for r in rows if r.get("curriculum/image_size")}
    assert sizes == {0: 16.0, 1: 16.0, 2: 32.0, 3: 32.0}


def test_experiment_overrides_beat_the_defaults_and_the_command_line_beats_both(tmp_path):
    cfg = compose_fit(["experiment=ablate_mask"], tmp_path)
    assert list(cfg.tags) == ["ablation", "mask"]  # fit.yaml says [quickstart]
    assert cfg.logger.wandb.group == "ablate_mask" and cfg.task_name == "ablate_mask"
    assert build(cfg)["loggers"][0]._wandb_init["group"] == "ablate_mask"
    assert OmegaConf.to_container(cfg.hydra.sweeper.params) == {"model/mask": "omnigen,causal,full"}
    cfg = compose_fit(["experiment=ablate_mask", "model/mask=full", "trainer.max_steps=7"], tmp_path)
    objects = build(cfg)
    assert isinstance(objects["module"].transformer.mask, FullMask) and objects["trainer"].max_steps == 7


def test_a_field_set_on_an_unselected_logger_is_named(tmp_path):
    cfg = compose_fit(["logger=csv", "+logger.wandb.group=x"], tmp_path)
    with pytest.raises(ValueError, match="logger.wandb has no _target_"):
        build(cfg)


@pytest.mark.parametrize(
    "group, option, check",
    [
        ("model/mask", "causal", lambda m: isinstance(m.transformer.mask, CausalMask)),
        ("model/weighting", "edit_region", lambda m: type(m.weighting).__name__ == "EditRegionWeighting"),
        (
            "model/weighting",
            "foreground",
            lambda m: (
                type(m.weighting).__name__ == "ForegroundWeighting"
                and (m.weighting.clip_min, m.weighting.clip_max, m.weighting.threshold) == (5.0, 64.0, 0.05)
            ),
        ),
        ("model/weighting", "uniform", lambda m: type(m.weighting).__name__ == "UniformWeighting"),
        (
            "model/weighting",
            "foreground_t2i",
            lambda m: (
                type(m.weighting).__name__ == "ForegroundWeighting"
                and m.weighting.edits is False
                and m.weighting.clip_max == 16.0
                and m.weighting.margin == 1
            ),
        ),
        ("model/mask", "prefix_lm", lambda m: type(m.transformer.mask).__name__ == "PrefixLMMask"),
        ("model/timesteps", "uniform", lambda m: type(m.timesteps).__name__ == "UniformTimesteps"),
        ("model/vae", "tiny_kl", lambda m: m.vae.latent_channels == 4 and m.pixels_per_token == 32),
    ],
)
def test_plugin_group_overrides_take(group, option, check, tmp_path):
    assert check(build(compose_fit([f"{group}={option}"], tmp_path))["module"])


def test_paper_preset_builds_on_meta_with_3_8b_parameters(tmp_path):
    cfg = compose_fit(["model=paper"], tmp_path)
    assert cfg.model.backbone.config.hidden_size == 3072 and cfg.model.vae.config.scaling_factor == 0.13025
    with torch.device("meta"):
        llm = instantiate(cfg.model.backbone, _convert_="all")
        vae = instantiate(cfg.model.vae, _convert_="all")
        model = OmniGen(
            llm, instantiate(cfg.model.mask), vae.latent_channels, cfg.model.patch_size, cfg.model.pos_embed_max_size
        )
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 3.8e9) / 3.8e9 < 0.05, n
    assert llm.config.rope_parameters["rope_type"] == "longrope" and model.pos_embed.shape == (1, 192 * 192, 3072)
    assert vae.downsample_factor == 8 and vae.latent_channels == 4
    assert cfg.model.prompt_template == RELEASE_TEMPLATE
    assert cfg.model.positions._target_.endswith("SequentialPositions")  # OmniGen v1's 1-D RoPE
    with pytest.raises(Exception, match="tokenizer.path"):  # real runs must name a local tokenizer
        OmegaConf.to_container(cfg.model, resolve=True, throw_on_missing=True)


DATA_CONFIGS = sorted(p.stem for p in (Path(CONFIG_DIR) / "data").glob("*.yaml"))


@pytest.mark.parametrize("data", DATA_CONFIGS)
def test_every_data_config_trains_and_logs_its_data_figures(data, tmp_path):
    overrides = [f"data={data}", *FAST, "trainer.max_steps=2", "logger=csv", "callbacks.checkpoint=null"]
    objects = train(compose_fit(overrides, tmp_path))
    assert objects["trainer"].global_step == 2 and (tmp_path / "samples" / "step_0000002.png").is_file()
    header = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    if data != "shapes":  # the file-backed stream reports skips and the realised mix
        assert "data/skipped_fraction" in header and "data/skipped_corrupt_image" in header
        assert "data/mix/" in header


@pytest.mark.parametrize("preset", sorted(p.stem for p in (Path(CONFIG_DIR) / "sampling").glob("*.yaml")))
def test_every_sampling_preset_is_a_recommendation_the_pipeline_takes(preset, tmp_path):
    """configs/sampling/: what a run's checkpoints record as their recommended sampling (SamplerSettings)."""
    sampling = OmegaConf.to_container(compose_fit([f"sampling={preset}"], tmp_path).sampling)
    assert set(sampling) == {f.name for f in fields(SamplerSettings)}  # every setting spelled out
    SamplerSettings.from_config(sampling, f"sampling={preset}")  # raises on a bad one
