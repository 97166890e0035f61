"""A Lightning callback for the GPU check's fits: the wall time and peak memory of every training step.

    python -m omnigen.fit ... +callbacks.step_stats._target_=step_stats.StepStats +callbacks.step_stats.out=PATH
    (with experiments/gpu on PYTHONPATH, as experiments/gpu/check.py runs it)

A step is on_train_batch_start to on_train_batch_end: forward, backward, gradient clipping and the optimizer
step (Lightning runs the optimizer inside that window), data loading excluded; on CUDA the clock reads after a
synchronize, so queued kernels count in the step that queued them. Memory on CUDA, per step: the allocator's
peak (`torch.cuda.max_memory_allocated`, reset at the step's start), what was allocated when the step started
(weights and optimizer states; the peak above it is activations and gradients) and the reserved peak (what the
allocator held from the device, fragmentation included); the summary takes the largest of each. On the CPU torch
keeps no allocator statistics: the process's resident high-water mark (ru_maxrss) instead. Written as JSON at the
end of training; the first `warmup` steps (lazy optimizer state, kernel selection) are left out of the medians.
"""

from __future__ import annotations

import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer

MIB = 2**20


def is_plain(value: Any) -> bool:
    """A JSON scalar or a tuple of them (an optimizer's lr, betas, fused, foreach...)."""
    if isinstance(value, tuple):
        return all(map(is_plain, value))
    return value is None or isinstance(value, bool | int | float | str)


def checkpointing(llm: torch.nn.Module) -> bool:
    """Whether the HF backbone checkpoints its layers' activations (the attribute's name changed in transformers 5)."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if hasattr(type(llm), name):
            return bool(getattr(llm, name))
    return False


class StepStats(Callback):
    def __init__(self, out: str, warmup: int = 2) -> None:
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        self.out, self.warmup = Path(out), warmup
        self.steps: list[dict[str, Any]] = []
        self.start = 0.0

    def cuda(self, pl_module: LightningModule) -> torch.device | None:
        device = pl_module.device
        return device if device.type == "cuda" else None

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if (device := self.cuda(pl_module)) is not None:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            self.held = torch.cuda.memory_allocated(device)
        self.start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if (device := self.cuda(pl_module)) is not None:
            torch.cuda.synchronize(device)
        step = {
            "seconds": time.perf_counter() - self.start,
            "samples": len(batch["instruction"]),
            "image_size": list(batch["output_image"][0].shape[-2:]),
            "tokens": int(pl_module.last_batch_tokens),  # sequence tokens, padding excluded
            "padding_waste": float(trainer.callback_metrics.get("train/padding_waste", float("nan"))),
        }
        if device is not None:
            step["held_at_start_mib"] = self.held / MIB
            step["peak_allocated_mib"] = torch.cuda.max_memory_allocated(device) / MIB
            step["peak_reserved_mib"] = torch.cuda.max_memory_reserved(device) / MIB
        self.steps.append(step)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        timed = self.steps[self.warmup :] or self.steps
        seconds = [s["seconds"] for s in timed]
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        summary: dict[str, Any] = {
            "device": str(pl_module.device),
            "strategy": type(trainer.strategy).__name__,
            "world_size": trainer.world_size,
            "precision": str(trainer.precision),
            "transformer_parameters": sum(p.numel() for p in pl_module.transformer.parameters()),
            "optimizer": type(optimizer).__name__,
            "optimizer_settings": {k: v for k, v in getattr(optimizer, "defaults", {}).items() if is_plain(v)},
            "gradient_checkpointing": checkpointing(pl_module.transformer.llm),
            "steps": len(self.steps),
            "warmup_steps_excluded": len(self.steps) - len(timed),
            "step_s_median": statistics.median(seconds),
            "step_s_min": min(seconds),
            "samples_per_s": statistics.median(s["samples"] / s["seconds"] for s in timed),
            "tokens_per_s": statistics.median(s["tokens"] / s["seconds"] for s in timed),
            "per_step": self.steps,
        }
        if (device := self.cuda(pl_module)) is not None:
            summary["peak_allocated_mib"] = max(s["peak_allocated_mib"] for s in self.steps)
            summary["held_at_step_start_mib"] = max(s["held_at_start_mib"] for s in self.steps)
            summary["peak_reserved_mib"] = max(s["peak_reserved_mib"] for s in self.steps)
            summary["device_total_mib"] = torch.cuda.get_device_properties(device).total_memory / MIB
        else:
            summary["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        if trainer.is_global_zero:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.out.write_text(json.dumps(summary, indent=2))
