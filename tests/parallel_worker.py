"""What tests/test_fsdp.py checks in two CPU processes (gloo), run in one launch (`every_check`): the tiny model
sharded (FSDP2) or replicated (DDP), and beside it, in each process, an unsharded copy of the same model on one
process. Rank 0 saves what both did, one file per check."""

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


def model(out: str, rank: int, overrides: list[str]) -> tuple[DictConfig, OmniGenLitModule]:
    """The fit config and its model, with the same initial weights on every rank."""
    cfg = compose_fit([f"data.batch_size={GLOBAL_BATCH}", *overrides], Path(out) / f"rank_{rank}")
    torch.manual_seed(0)
    module = build_module(OmegaConf.to_container(cfg.model, resolve=True))
    # the output layer starts at zero (DiT's init), which leaves every weight below it without a gradient until it
    # moves: frozen under LoRA, it never would
    torch.nn.init.normal_(module.transformer.final_layer.linear.weight, std=0.02)
    return cfg, module


def first_batches(cfg: DictConfig, n: int) -> list[dict]:
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    return [batch for _, batch in zip(range(n), datamodule.train_dataloader(), strict=False)]


def shard(module: OmniGenLitModule, world_size: int) -> None:
    """The transformer as trainer=fsdp shards it, computing in fp32: the comparisons are about sharding."""
    mesh = init_device_mesh("cpu", (world_size,), mesh_dim_names=("data_parallel",))
    shard_by_layer(module.transformer, mesh, MixedPrecisionPolicy())


def whole_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def train_two_ways(rank: int, world_size: int, out: str, kind: str, overrides: list[str], steps: int = 3) -> dict:
    """`steps` training steps, each rank on its half of every global batch (sharded or replicated), against an
    unsharded copy training on the whole batch in one process."""
    cfg, module = model(out, rank, overrides)
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
    losses, reference_losses = [], []
    for batch in first_batches(cfg, steps):
        loss = step(half(batch, rank, world_size))
        loss.backward()  # gradients averaged over the ranks (reduce-scatter, or all-reduce)
        optimizer.step()
        optimizer.zero_grad()
        global_loss = loss.detach().clone()
        dist.all_reduce(global_loss)
        losses.append(global_loss.item() / world_size)
        # one process, the whole batch: the mean of the halves' losses is the global batch's mean loss
        reference_loss = torch.stack(
            [reference.training_step(half(batch, r, world_size), 0) for r in range(world_size)]
        )
        reference_loss.mean().backward()
        reference_optimizer.step()
        reference_optimizer.zero_grad()
        reference_losses.append(reference_loss.mean().item())
    return {
        "losses": losses,
        "reference_losses": reference_losses,
        "rows": rows,
        "weights": whole_weights(module),
        "reference_weights": reference.state_dict(),
        "initial_weights": initial,
    }


def optimizer_step_on_shards(rank: int, world_size: int, out: str) -> dict:
    """One step of the configured optimizer (tiny's MuonAdamW) on the sharded module and on a whole copy, from the
    same gradients: Muon must orthogonalise each whole matrix, not each rank's rows."""
    _, module = model(out, rank, [])
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
    return {"weights": whole_weights(module), "reference_weights": reference.state_dict(), "initial_weights": initial}


def weights_in_place_on_shards(rank: int, world_size: int, out: str) -> dict:
    """Reward fine-tuning's weight swap (the sampling policy's, the reference's) on the sharded module against a
    whole copy: the loss of one fixed batch with other weights in place, and with its own back."""
    cfg, module = model(out, rank, [])
    reference = copy.deepcopy(module)
    torch.manual_seed(2)
    other = {n: p.detach() + 0.01 * torch.randn_like(p) for n, p in reference.transformer.named_parameters()}
    (batch,) = first_batches(cfg, 1)
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
    return {"own": own, "swapped": swapped, "sharded_swapped": sharded_swapped, "sharded_own": sharded_own}


ADAMW = ["model.optimizer._target_=torch.optim.AdamW", "~model.optimizer.muon_lr"]  # as configs/model/tiny.yaml says
CHECKS = {  # name: (check, its arguments after (rank, world_size, out))
    "fsdp2": (train_two_ways, ("fsdp2", ADAMW)),
    "fsdp2-activation-checkpointing": (
        train_two_ways,
        ("fsdp2", [*ADAMW, "model.backbone.gradient_checkpointing=true"]),
    ),
    "ddp": (train_two_ways, ("ddp", ADAMW)),
    "fsdp2-lora": (train_two_ways, ("fsdp2", [*ADAMW, "model/finetune=lora"])),
    "muon": (optimizer_step_on_shards, ()),
    "weight_swap": (weights_in_place_on_shards, ()),
}


def every_check(rank: int, world_size: int, port: int, out: str) -> None:
    """Join the gloo group and run every check in CHECKS (one launch: a process start costs seconds); rank 0 saves
    each one's result as `<out>/<name>.pt`."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WANDB_MODE="offline")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        for name, (check, args) in CHECKS.items():
            result = check(rank, world_size, out, *args)
            if rank == 0:
                torch.save(result, Path(out) / f"{name}.pt")
    finally:
        dist.destroy_process_group()
