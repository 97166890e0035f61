"""Training two ways at once, for tests/test_fsdp.py (run in two CPU processes, gloo): the tiny model sharded
(FSDP2) or replicated (DDP), and beside it, in each process, an unsharded copy of the same model on one process.
Rank 0 saves what both did."""

import copy
import os
from pathlib import Path

import torch
import torch.distributed as dist
from hydra.utils import instantiate
from hydra_utils import compose_fit
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.nn.parallel import DistributedDataParallel

from omnigen.module import OmniGenLitModule, build_module
from omnigen.rl.module import like, weights_in_place
from omnigen.training.distributed import shard_by_layer

GLOBAL_BATCH = 4


class TrainingStep(nn.Module):
    """The module's training_step as forward, as Lightning's DDP wrapper calls it (DDP hooks the forward)."""

    def __init__(self, module: OmniGenLitModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, batch: dict) -> torch.Tensor:
        return self.module.training_step(batch, 0)


def half(batch: dict, rank: int, world_size: int) -> dict:
    """Rank `rank`'s share of a collated batch: every per-sample list or tensor cut the same way."""
    per_rank = GLOBAL_BATCH // world_size
    return {
        key: value[rank * per_rank : (rank + 1) * per_rank]
        if isinstance(value, list | torch.Tensor) and len(value) == GLOBAL_BATCH
        else value
        for key, value in batch.items()
    }


def optimizer_of(module: OmniGenLitModule) -> torch.optim.Optimizer:
    configured = module.configure_optimizers()
    return configured["optimizer"] if isinstance(configured, dict) else configured


def count_rows(module: OmniGenLitModule, rows: list[int]) -> None:
    """Record how many rows each training batch was packed into."""
    prepare = module.prepare_packed

    def recording(*args, **kwargs):
        batch, latents = prepare(*args, **kwargs)
        rows.append(batch.input_ids.shape[0])
        return batch, latents

    module.prepare_packed = recording


def start(rank: int, world_size: int, port: int, out: str, overrides: list[str]) -> tuple[DictConfig, OmniGenLitModule]:
    """Join the gloo group; the fit config and its model, with the same initial weights on every rank."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WANDB_MODE="offline")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    cfg = compose_fit([f"data.batch_size={GLOBAL_BATCH}", *overrides], Path(out) / f"rank_{rank}")
    torch.manual_seed(0)
    return cfg, build_module(OmegaConf.to_container(cfg.model, resolve=True))


def shard(module: OmniGenLitModule, world_size: int) -> None:
    """The transformer as trainer=fsdp shards it, computing in fp32: the comparisons are about sharding."""
    mesh = init_device_mesh("cpu", (world_size,), mesh_dim_names=("data_parallel",))
    shard_by_layer(module.transformer, mesh, MixedPrecisionPolicy())


def train_two_ways(
    rank: int, world_size: int, port: int, kind: str, out: str, overrides: list[str], steps: int = 3
) -> None:
    """`steps` training steps, each rank on its half of every global batch, against an unsharded copy training on
    the whole batch in one process."""
    cfg, module = start(rank, world_size, port, out, overrides)
    try:
        reference = copy.deepcopy(module)  # whole, trained on the global batch by one process
        initial = {name: value.clone() for name, value in module.state_dict().items()}
        rows: list[int] = []
        count_rows(module, rows)
        if kind == "fsdp2":
            shard(module, world_size)
            step = TrainingStep(module)
        else:
            step = DistributedDataParallel(TrainingStep(module), find_unused_parameters=True)
        optimizer, reference_optimizer = optimizer_of(module), optimizer_of(reference)
        datamodule = instantiate(cfg.data, _convert_="all")
        datamodule.setup("fit")
        losses, reference_losses = [], []
        for _, batch in zip(range(steps), datamodule.train_dataloader(), strict=False):
            loss = step(half(batch, rank, world_size))
            loss.backward()  # gradients averaged over the ranks (reduce-scatter, or all-reduce)
            optimizer.step()
            optimizer.zero_grad()
            global_loss = loss.detach().clone()
            dist.all_reduce(global_loss)
            losses.append(global_loss.item() / world_size)
            # one process, the whole batch: the mean of the halves' losses is the global batch's mean loss
            both = [reference.training_step(half(batch, r, world_size), 0) for r in range(world_size)]
            reference_loss = torch.stack(both).mean()
            reference_loss.backward()
            reference_optimizer.step()
            reference_optimizer.zero_grad()
            reference_losses.append(reference_loss.item())
        weights = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if rank == 0:
            torch.save(
                {
                    "losses": losses,
                    "reference_losses": reference_losses,
                    "rows": rows,
                    "weights": weights,
                    "reference_weights": reference.state_dict(),
                    "initial_weights": initial,
                },
                Path(out) / "result.pt",
            )
    finally:
        dist.destroy_process_group()


def optimizer_step_on_shards(rank: int, world_size: int, port: int, out: str) -> None:
    """One step of the configured optimizer (tiny's MuonAdamW) on the sharded module and on a whole copy, from the
    same gradients: Muon must orthogonalise each whole matrix, not each rank's rows."""
    _, module = start(rank, world_size, port, out, [])
    try:
        reference = copy.deepcopy(module)
        initial = {name: value.clone() for name, value in module.state_dict().items()}
        shard(module, world_size)
        torch.manual_seed(1)
        for p, q in zip(module.parameters(), reference.parameters(), strict=True):
            if p.requires_grad:
                q.grad = torch.randn_like(q) * 1e-3
                p.grad = distribute_tensor(q.grad, p.device_mesh, p.placements) if isinstance(p, DTensor) else q.grad
        optimizers = [optimizer_of(module), optimizer_of(reference)]  # held: a scheduler keeps weak references
        for optimizer in optimizers:
            optimizer.step()
        weights = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if rank == 0:
            torch.save(
                {"weights": weights, "reference_weights": reference.state_dict(), "initial_weights": initial},
                Path(out) / "result.pt",
            )
    finally:
        dist.destroy_process_group()


def weights_in_place_on_shards(rank: int, world_size: int, port: int, out: str) -> None:
    """Reward fine-tuning's weight swap (the sampling policy's, the reference's) on the sharded module against a
    whole copy: the loss of one fixed batch with other weights in place, and with its own back."""
    cfg, module = start(rank, world_size, port, out, [])
    try:
        reference = copy.deepcopy(module)
        torch.manual_seed(2)
        other = {n: p.detach() + 0.01 * torch.randn_like(p) for n, p in reference.transformer.named_parameters()}
        datamodule = instantiate(cfg.data, _convert_="all")
        datamodule.setup("fit")
        batch = next(iter(datamodule.train_dataloader()))
        shard(module, world_size)
        params = dict(module.transformer.named_parameters())
        sharded = {name: like(value, params[name]) for name, value in other.items()}
        with torch.no_grad():
            own = reference.training_step(batch, 0).item()
            with weights_in_place(reference.transformer, other):
                swapped = reference.training_step(batch, 0).item()
            with weights_in_place(module.transformer, sharded):
                sharded_swapped = module.training_step(batch, 0).item()
            sharded_own = module.training_step(batch, 0).item()
        if rank == 0:
            torch.save({"own": own, "swapped": swapped, "sharded_swapped": sharded_swapped, "sharded_own": sharded_own},
                       Path(out) / "result.pt")  # fmt: skip
    finally:
        dist.destroy_process_group()
