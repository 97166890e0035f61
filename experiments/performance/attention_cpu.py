"""The quickstart's training step two ways, side by side in one process: sdpa against eager attention
(--compare attention, in --precision), or fp32 against bf16 autocast (--compare precision, with the fit
config's attention).

Two modules from the fit config (tiny, the quickstart's batch of 32) with the same random weights,
one per side; each runs the same batches (forward, backward, optimiser step) in turn, the order
reversed every repeat; medians of seconds per step. Writes JSON to --json.
    OMP_NUM_THREADS=2 python experiments/performance/attention_cpu.py --precision bf16 --json attention_bf16.json
    OMP_NUM_THREADS=1 python experiments/performance/attention_cpu.py --compare precision --json precision.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from hydra.utils import instantiate

from omnigen.bench.common import random_module
from omnigen.config import compose_fit

IMPLEMENTATIONS = ("sdpa", "eager")
PRECISIONS = ("fp32", "bf16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", choices=["attention", "precision"], default="attention")
    parser.add_argument("--precision", choices=PRECISIONS, default="bf16", help="both sides' (--compare attention)")
    parser.add_argument("--batches", type=int, default=5, help="batches per timed repeat")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    cfg = compose_fit([])
    data = instantiate(cfg.data, _convert_="all")
    names = IMPLEMENTATIONS if args.compare == "attention" else PRECISIONS
    sides = {}
    for name in names:
        torch.manual_seed(0)  # the same weights on both sides
        overrides = [f"model.backbone.attn_implementation={name}"] if args.compare == "attention" else []
        module = random_module(overrides).train()
        module.log = lambda *a, **k: None  # no trainer to log to
        optimizer = module.configure_optimizers()
        sides[name] = (module, optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer)
    if hasattr(data, "attach"):  # the X2I DataModules take the token grid and prompt limit from the model
        data.attach(sides[names[0]][0])
    loader = iter(data.train_dataloader())
    batches = [next(loader) for _ in range(args.batches)]

    def seconds_per_step(name: str) -> float:
        module, optimizer = sides[name]
        bf16 = (name if args.compare == "precision" else args.precision) == "bf16"
        start = time.perf_counter()
        for i, batch in enumerate(batches):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = module.training_step(batch, i)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - start) / len(batches)

    load_before = os.getloadavg()[0]  # the machine is shared: what else ran shows here
    for name in names:  # warm-up, not counted
        seconds_per_step(name)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            times[name].append(seconds_per_step(name))
    medians = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "precision": args.precision if args.compare == "attention" else "fp32 and bf16",
        "threads": torch.get_num_threads(),
        "batch": len(batches[0]["instruction"]),
        "seconds_per_step": medians,
        "runs": times,
        f"{names[0]} / {names[1]}": medians[names[0]] / medians[names[1]],
    }
    result["load average, 1 min: before / after"] = [load_before, os.getloadavg()[0]]
    if args.compare == "precision":
        result["attention"] = sides["bf16"][0].transformer.llm.config._attn_implementation
        result["cpu has avx512_bf16"] = "avx512_bf16" in open("/proc/cpuinfo").read()
    print(json.dumps(result))
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
