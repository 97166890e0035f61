"""Compose the fit config in tests exactly as `python -m omnigen.fit` would."""

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from omnigen import config
from omnigen.config import CONFIG_DIR

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))
# Small enough for seconds of CPU: a handful of steps on tiny batches.
FAST = [
    "trainer.max_steps=4",
    "data.batch_size=4",
    "model.scheduler.warmup_steps=2",
    "callbacks.checkpoint.every_n_train_steps=2",
    "callbacks.sample_grid.num_samples=2",
    "callbacks.sample_grid.num_steps=2",
    "trainer.log_every_n_steps=1",
    "trainer.enable_model_summary=false",
]

# And for reward fine-tuning (experiment=rl_*): small groups, short rollouts, a guard of a few samples.
RL_FAST = [
    "model.group_size=3",
    "model.sampling.num_steps=3",
    "callbacks.reward_guard.samples_per_family=2",
    "callbacks.reward_guard.num_inference_steps=2",
    "callbacks.rollout_grid.groups=2",
]


def compose_fit(overrides: list[str], output_dir: Path) -> DictConfig:
    """omnigen.config.compose_fit with the hydra node, and the run writing into `output_dir`."""
    cfg = config.compose_fit(overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)  # so ${hydra:...} resolves as in a real run
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir)
    return cfg
