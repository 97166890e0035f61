"""Where the Hydra configs live, and composing them outside a `python -m omnigen.fit` run."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")
if not Path(CONFIG_DIR).is_dir():
    raise ImportError(
        f"omnigen's configs are not at {CONFIG_DIR}: install the source checkout in editable mode "
        "(pip install -e .), as README.md does"
    )


def compose_fit(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    """The config `python -m omnigen.fit <overrides>` would run (its hydra node only if asked for)."""
    GlobalHydra.instance().clear()  # a config composed before (a test, a notebook) would refuse a second
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("fit", overrides=overrides, return_hydra_config=return_hydra_config)
