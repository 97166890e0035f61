"""Test-only callbacks, added to a run from the command line (`+callbacks.<name>._target_=probes.<Class>`;
subprocesses get `tests/` on PYTHONPATH)."""

from pathlib import Path

import torch
from lightning import Callback


class RankProbe(Callback):
    """Each rank writes `<run dir>/rank_<r>.pt`: the sample keys it trained on and its final weights."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.keys += list(batch["key"])

    def on_train_end(self, trainer, pl_module) -> None:
        state = {name: value.detach().cpu().clone() for name, value in pl_module.state_dict().items()}
        torch.save(
            {
                "rank": trainer.global_rank,
                "world_size": trainer.world_size,
                "global_step": trainer.global_step,
                "keys": self.keys,
                "state_dict": state,
            },
            Path(trainer.default_root_dir) / f"rank_{trainer.global_rank}.pt",
        )


class PoisonWeights(Callback):
    """Fill the final layer's weights with NaN before the batch of `at_step`, so its loss is not finite."""

    def __init__(self, at_step: int = 2) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:
            with torch.no_grad():
                pl_module.transformer.final_layer.linear.weight.fill_(float("nan"))


class ShardProbe(Callback):
    """Each rank writes `<run dir>/shards_<r>.pt` at the end of training: for every parameter of the module, its
    full size and the size this rank holds (a DTensor's local shard under FSDP2)."""

    def on_train_end(self, trainer, pl_module) -> None:
        sizes = {
            name: (p.numel(), p.to_local().numel() if hasattr(p, "to_local") else p.numel())
            for name, p in pl_module.named_parameters()
        }
        torch.save(sizes, Path(trainer.default_root_dir) / f"shards_{trainer.global_rank}.pt")
