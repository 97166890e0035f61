"""The quickstart's training step with sdpa against eager attention, side by side in one process.

Two modules from the fit config (tiny, the quickstart's batch of 32) with the same random weights,
one per attention implementation; each runs the same batches (forward, backward, optimiser step)
in turn, the order reversed every repeat; medians of seconds per step. Writes JSON to --json.
    OMP_NUM_THREADS=2 python experiments/performance/attention_cpu.py --precision bf16 --json attention_bf16.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from hydra.utils import instantiate

from omnigen.bench.common import fit_config, random_module

IMPLEMENTATIONS = ("sdpa", "eager")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--batches", type=int, default=5, help="batches per timed repeat")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    cfg = fit_config([])
    data = instantiate(cfg.data, _convert_="all")
    sides = {}
    for name in IMPLEMENTATIONS:
        torch.manual_seed(0)  # the same weights on both sides
        module = random_module([f"model.backbone.attn_implementation={name}"]).train()
        module.log = lambda *a, **k: None  # no trainer to log to
        optimizer = module.configure_optimizers()
        sides[name] = (module, optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer)
    if hasattr(data, "attach"):  # the X2I DataModules take the token grid and prompt limit from the model
        data.attach(sides["sdpa"][0])
    loader = iter(data.train_dataloader())
    batches = [next(loader) for _ in range(args.batches)]

    def seconds_per_step(name: str) -> float:
        module, optimizer = sides[name]
        start = time.perf_counter()
        for i, batch in enumerate(batches):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                loss = module.training_step(batch, i)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - start) / len(batches)

    for name in IMPLEMENTATIONS:  # warm-up, not counted
        seconds_per_step(name)
    times: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    for repeat in range(args.repeats):
        for name in IMPLEMENTATIONS if repeat % 2 == 0 else IMPLEMENTATIONS[::-1]:
            times[name].append(seconds_per_step(name))
    medians = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "batch": len(batches[0]["instruction"]),
        "seconds_per_step": medians,
        "runs": times,
        "sdpa / eager": medians["sdpa"] / medians["eager"],
    }
    print(json.dumps(result))
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
