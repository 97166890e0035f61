"""Training throughput as the run sees it: samples/s and tokens/s between consecutive steps,
data loading included (logged as train/samples_per_s, train/tokens_per_s)."""

import time
from typing import Any

from lightning import Callback, LightningModule, Trainer


class ThroughputCallback(Callback):
    def __init__(self, window: int = 10) -> None:
        """Rates over the last `window` batches, so one slow batch (a checkpoint, a grid) does not dominate."""
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self.marks: list[tuple[float, int, int]] = []  # (time, samples, tokens) at each batch end

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.marks = [(time.perf_counter(), 0, 0)]

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        _, samples, tokens = self.marks[-1]
        size = len(batch["instruction"])
        self.marks.append((time.perf_counter(), samples + size, tokens + getattr(pl_module, "last_batch_tokens", 0)))
        self.marks = self.marks[-(self.window + 1) :]
        (t0, s0, k0), (t1, s1, k1) = self.marks[0], self.marks[-1]
        if t1 > t0:
            pl_module.log_dict(
                {"train/samples_per_s": (s1 - s0) / (t1 - t0), "train/tokens_per_s": (k1 - k0) / (t1 - t0)},
                batch_size=size,
            )
