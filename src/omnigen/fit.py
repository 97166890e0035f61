"""Train OmniGen from a Hydra config: `python -m omnigen.fit [overrides]`.

With no arguments this is the quickstart: the tiny preset on Shapes-X2I, on the CPU, W&B offline.
"""

import logging
import os
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")


def build(cfg: DictConfig) -> dict[str, Any]:
    """Instantiate everything a run needs: datamodule, module, callbacks, loggers, trainer."""
    module = instantiate(cfg.model, _convert_="all")
    module.model_config = OmegaConf.to_container(cfg.model, resolve=True)
    datamodule = instantiate(cfg.data, _convert_="all")
    callbacks = [instantiate(c, _convert_="all") for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c, _convert_="all") for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, _convert_="all")
    return {"module": module, "datamodule": datamodule, "callbacks": callbacks, "loggers": loggers, "trainer": trainer}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one fit; returns the built objects (the trainer holds the final state)."""
    L.seed_everything(cfg.seed, workers=True)
    objects = build(cfg)
    for logger in objects["loggers"]:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    objects["trainer"].fit(objects["module"], datamodule=objects["datamodule"], ckpt_path=cfg.get("ckpt_path"))
    for logger in objects["loggers"]:
        logger.finalize("success")
    return objects


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="fit")
def main(cfg: DictConfig) -> None:
    log.info("output directory: %s", cfg.paths.output_dir)
    train(cfg)


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "offline")  # never reach for the network unless asked to
    main()
