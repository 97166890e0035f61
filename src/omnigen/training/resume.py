"""One run directory = one run, however often it is relaunched.

Relaunch a run (after a crash, a kill, a preemption) in its own directory and let it resume:

    python -m omnigen.fit <the same overrides> hydra.run.dir=<run dir> ckpt_path=last

- `ckpt_path=last` is Lightning's: the newest `last*.ckpt` in the checkpoint callback's directory
  (`<run dir>/checkpoints`), or, if there is none yet, a fresh start with a warning, so a job
  script can pass it on every (re)launch. Training continues at the checkpoint's global step,
  optimiser and scheduler state, and data position (exactly, for Shapes-X2I on one process).
- The W&B run continues too: the first launch writes the W&B run id to `<run dir>/wandb_run_id`;
  a relaunch in that directory reads it back and passes it as `WandbLogger(id=...)` (Lightning
  initialises W&B with `resume="allow"`). Offline, each launch writes its own
  `wandb/offline-run-*-<id>` folder; `wandb sync` merges them into one run.
"""

import os
import secrets
import string
from pathlib import Path

from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, open_dict

WANDB_ID_FILE = "wandb_run_id"
_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_wandb_run_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def wandb_logger_node(cfg: DictConfig) -> DictConfig | None:
    """The config of the run's WandbLogger, if it has one."""
    for node in (cfg.get("logger") or {}).values():
        if node is not None and str(node.get("_target_", "")).endswith("WandbLogger"):
            return node
    return None


def persist_wandb_run_id(cfg: DictConfig, run_dir: str | Path) -> str | None:
    """Give the W&B logger the run directory's W&B id (creating and recording one on first launch).

    An id set in the config (`logger.wandb.id=...`) wins and is recorded. Only global rank 0
    writes the file; every process computes the same id when the file exists (it is written before
    Lightning starts the other ranks, or, under torchrun/SLURM, only rank 0 logs anyway)."""
    node = wandb_logger_node(cfg)
    if node is None:
        return None
    id_file = Path(run_dir) / WANDB_ID_FILE
    recorded = id_file.read_text().strip() if id_file.is_file() else None
    run_id = node.get("id") or recorded or new_wandb_run_id()
    with open_dict(node):
        node.id = run_id
    if run_id != recorded and rank_zero_only.rank == 0:
        id_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = id_file.with_name(f".{id_file.name}.{os.getpid()}")
        tmp.write_text(run_id + "\n")
        os.replace(tmp, id_file)
    return run_id
