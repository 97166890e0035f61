"""Train OmniGen from a Hydra config: `python -m omnigen.fit [overrides]`.

With no arguments this is the quickstart: the tiny preset on Shapes-X2I, on the CPU, W&B offline.
"""

import logging
import os
import warnings
from typing import Any

import hydra
import lightning as L
import torch
import wandb
from hydra.utils import instantiate
from lightning.pytorch.callbacks import WeightAveraging
from omegaconf import DictConfig, OmegaConf

from omnigen.checkpoints.format import check_resume_checkpoint
from omnigen.config import CONFIG_DIR
from omnigen.module import build_module
from omnigen.training.distributed import check_resumable
from omnigen.training.resume import persist_wandb_run_id
from omnigen.utils.cli import run_main

log = logging.getLogger(__name__)
# The VAE is frozen in eval mode on purpose; Lightning's warning about it would only alarm users.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
# The Shapes-X2I DataModule restarts its sample stream at global_step × accumulation × batch size on
# resume (tests/test_fit.py::test_resume_repeats_an_uninterrupted_run_exactly), which Lightning
# cannot see; the other DataModules say themselves that they restart their epoch
# (omnigen.data.modules.base), so Lightning's generic warning adds nothing.
warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")


def instantiate_group(cfg: DictConfig, group: str) -> list[Any]:
    """Instantiate each entry of a {name: config} group; `name: null` switches an entry off."""
    objects = []
    for name, node in (cfg.get(group) or {}).items():
        if node is None:
            continue
        if "_target_" not in node:
            raise ValueError(
                f"{group}.{name} has no _target_: a config sets fields of an entry that is not selected "
                f"({OmegaConf.to_yaml(node).strip()})"
            )
        objects.append(instantiate(node, _convert_="all"))
    return objects


def warn_if_bf16_is_slow_here(trainer_cfg: DictConfig) -> None:
    """The CPU trainer autocasts to bf16 (1.45x per step where oneDNN has AVX-512 bf16 kernels:
    experiments/performance/precision_quickstart_1thread.json); a CPU without
    them runs bf16 through slow fallbacks, so say so and how to train in fp32 instead."""
    if (
        trainer_cfg.get("accelerator") == "cpu"
        and "bf16" in str(trainer_cfg.get("precision"))
        and not torch.ops.mkldnn._is_mkldnn_bf16_supported()
    ):
        log.warning(
            "trainer.precision=%s on a CPU without AVX-512 bf16 support is slower than fp32: "
            "add trainer.precision=32-true",
            trainer_cfg.precision,
        )


def build(cfg: DictConfig) -> dict[str, Any]:
    """Instantiate everything a run needs: datamodule, module, callbacks, loggers, trainer."""
    # Everything but the hydra node (present only when tests compose with return_hydra_config).
    run_config = {
        k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        for k, v in cfg.items()
        if k != "hydra"
    }
    module = build_module(run_config["model"], run_config)
    datamodule = instantiate(cfg.data, _convert_="all")
    callbacks = instantiate_group(cfg, "callbacks")
    # Weight averaging first: at the end of training it swaps the average into the module, so the callbacks after
    # it (the final sample grid) draw with the weights last.ckpt holds, not the raw ones. (sort is stable)
    callbacks.sort(key=lambda callback: not isinstance(callback, WeightAveraging))
    loggers = instantiate_group(cfg, "logger")
    warn_if_bf16_is_slow_here(cfg.trainer)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, _convert_="all")
    return {"module": module, "datamodule": datamodule, "callbacks": callbacks, "loggers": loggers, "trainer": trainer}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one fit; returns the built objects (the trainer holds the final state)."""
    check_resume_checkpoint(cfg.get("ckpt_path"))  # a wrong path is named before anything is built
    L.seed_everything(cfg.seed, workers=True)
    # A relaunch in the same run directory (`hydra.run.dir=<run dir> ckpt_path=last`) logs to the same W&B run.
    persist_wandb_run_id(cfg, cfg.paths.output_dir)
    objects = build(cfg)
    check_resumable(cfg.get("ckpt_path"), objects["trainer"].strategy)
    for logger in objects["loggers"]:
        logger.log_hyperparams(objects["module"].run_config)
    try:
        objects["trainer"].fit(objects["module"], datamodule=objects["datamodule"], ckpt_path=cfg.get("ckpt_path"))
    except BaseException:
        if wandb.run is not None:  # Lightning finalises loggers as failed but leaves the W&B run open
            wandb.finish(exit_code=1)  # a retry or the next run in this process must start its own
        raise
    for logger in objects["loggers"]:
        logger.finalize("success")
    if wandb.run is not None:
        wandb.finish()  # a sweep's next run (same process) must start its own W&B run
    return objects


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="fit")
def main(cfg: DictConfig) -> None:
    log.info("output directory: %s", cfg.paths.output_dir)
    # Inside Hydra's main: Hydra prints its own traceback for an exception but lets SystemExit through.
    run_main(lambda: train(cfg), "omnigen.fit")


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "offline")  # never reach for the network unless asked to
    main()
