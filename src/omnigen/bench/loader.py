"""loader: samples/s the DataModule delivers next to samples/s the model trains at."""

from __future__ import annotations

import statistics
import time

from hydra.utils import instantiate

from omnigen.bench.common import random_module
from omnigen.config import compose_fit


def run(overrides: list[str], batches: int, repeats: int, workers: int) -> list[dict[str, float]]:
    cfg = compose_fit(overrides + [f"data.num_workers={workers}"])
    module = random_module(overrides).train()
    data = instantiate(cfg.data, _convert_="all")
    if hasattr(data, "attach"):
        data.attach(module)
    loader_iter = iter(data.train_dataloader())
    next(loader_iter)  # start-up (workers, first batch) is not throughput
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    module.log = lambda *args, **kwargs: None  # no trainer to log to
    times: dict[str, list[float]] = {"loader": [], "training": []}
    samples = 0
    for _ in range(repeats):
        start = time.perf_counter()
        ready = [next(loader_iter) for _ in range(batches)]
        times["loader"].append(time.perf_counter() - start)
        samples = sum(len(b["instruction"]) for b in ready)
        start = time.perf_counter()
        for i, batch in enumerate(ready):
            loss = module.training_step(batch, i)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        times["training"].append(time.perf_counter() - start)
    loader_rate = samples / statistics.median(times["loader"])
    train_rate = samples / statistics.median(times["training"])
    return [
        {
            "data": type(data).__name__,
            "workers": workers,
            "batch": len(ready[0]["instruction"]),
            "loader samples/s": loader_rate,
            "training samples/s": train_rate,
            "loader / training": loader_rate / train_rate,
        }
    ]
