"""The GPU check's parts that run in one interpreter (experiments/gpu/check.py starts each as a subprocess).

    python experiments/gpu/parts.py env OUT.json
    python experiments/gpu/parts.py bench SETTINGS.json OUT.json

env: the device, its memory and the versions of what runs on it.

bench: one module of the fit config (model=paper in the full check; random weights, built directly on the device,
which takes seconds where a 3.8B-parameter random init on the CPU takes minutes) and diffusers'
OmniGenTransformer2DModel holding the same weights (exported once, as `omnigen.convert` does), then:

- train_step: `omnigen.bench train_step`'s rows (forward + backward of ours, packed, beside diffusers', padded;
  prompts with 0, 1, 2 input images and a mixed batch) through its own `row` and `compare`, with the already
  exported diffusers transformer instead of a second export;
- sampling: `omnigen.bench sampling`'s rows for prompts with 0 and 1 input image (guided, `steps` Euler steps,
  input and output at `size`), each timed three ways: our pipeline with the kv-cache, without it, and diffusers'
  transformer in its pipeline's loop. The uncounted warm-up call of each (`omnigen.bench.common.alternate`'s
  repeat 0) samples `warmup_steps` steps instead of all of them: at 1024² a full warm-up would double the part.

With `save_backbone` set, the backbone (the LLM) is saved there first with `save_pretrained`, so the fits of the
check load it (`model.backbone.pretrained_path`) instead of drawing 3.8B random numbers on the CPU.

A part that raises is recorded as failed (one line) and the next one still runs; the exit status is 1 if any
failed. OUT.json is rewritten after each part, so what finished survives a later crash.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import platform
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from omnigen.bench import kv_cache, sampling, train_step
from omnigen.bench.common import (
    BenchConfig,
    alternate,
    diffusers_transformer,
    input_images,
    matmul_flops_per_s,
    random_module,
    resolve_device,
)
from omnigen.bench.compare import compare
from omnigen.pipeline import OmniGenPipeline

MIB = 2**20
MARKER = "gpu_check_model_overrides.json"  # beside a saved backbone: the model overrides it was built with
SAMPLING_ROWS = (0, 1)  # input images: text to image, and one input image (an edit)


def one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())[:500]


def environment() -> dict[str, Any]:
    import diffusers
    import lightning
    import transformers

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "transformers": transformers.__version__,
        "diffusers": diffusers.__version__,
        "lightning": lightning.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
    }
    if env["cuda_devices"]:
        props = torch.cuda.get_device_properties(0)
        env |= {
            "device": props.name,
            "device_memory_mib": props.total_memory / MIB,
            "compute_capability": f"{props.major}.{props.minor}",
            "bf16_supported": torch.cuda.is_bf16_supported(),
        }
    else:
        env["device"] = "cpu"
    return env


def first_call_short(short: Callable[[], Any], full: Callable[[], Any]) -> Callable[[], Any]:
    """`short` on the first call (alternate's uncounted warm-up), `full` on every later one."""
    calls = 0

    def call() -> Any:
        nonlocal calls
        calls += 1
        return short() if calls == 1 else full()

    return call


def train_step_rows(module, diffusers, args: BenchConfig, device: torch.device) -> dict[str, Any]:
    """bench train_step's rows, both sides on the module's weights (diffusers' already exported)."""
    bench = SimpleNamespace(
        setup=lambda module, sides, device: {"ours": module.transformer.train(), "diffusers": diffusers.train()},
        row=train_step.row,
        ROWS=train_step.ROWS,
    )
    peak = matmul_flops_per_s(2 * args.repeats + 1, device, args.dtype)
    rows = compare(bench, module, args, device)
    for row in rows:
        flops = row.pop("useful flops")
        for side in ("ours", "diffusers"):
            row[f"{side} TFLOP/s"] = flops / row[f"{side} s"] / 1e12
            row[f"{side} % matmul peak"] = 100 * flops / row[f"{side} s"] / peak
    return {"matmul_tflops": peak / 1e12, "rows": rows}


def sampling_rows(module, diffusers, args: BenchConfig, warmup_steps: int, device: torch.device) -> dict[str, Any]:
    """Per prompt of SAMPLING_ROWS: ours with and without the kv-cache, and diffusers' loop, on the same noise."""
    for model in (module, diffusers):  # gradients a failed train_step may have left behind
        model.zero_grad(set_to_none=True)
    pipe = OmniGenPipeline(module.eval())
    loaded = {"ours": pipe, "diffusers": diffusers.eval()}
    short_args = dataclasses.replace(args, steps=min(warmup_steps, args.steps))
    rows = []
    for n in SAMPLING_ROWS:
        calls, infos = {}, {}
        for name, a in (("full", args), ("short", short_args)):
            infos[name], both = sampling.row(module, loaded, n, a, device)
            uncached = partial(kv_cache.sample, pipe, n, input_images(n, a.size, a.batch), a, device, False)
            calls[name] = {"kv-cache": both["ours"], "no cache": uncached, "diffusers": both["diffusers"]}
        variants = {v: first_call_short(calls["short"][v], calls["full"][v]) for v in calls["full"]}
        times, outputs, peaks = alternate(variants, args.repeats, device)
        row: dict[str, Any] = {"input images": n, **infos["full"]}
        row |= {f"{v} s": times[v] for v in variants}
        row["kv-cache speed-up"] = times["no cache"] / times["kv-cache"]
        row["diffusers / kv-cache"] = times["diffusers"] / times["kv-cache"]
        row |= {f"{v} peak MiB": peaks[v] for v in peaks}
        for v in ("no cache", "diffusers"):
            row[f"max |diff| kv-cache vs {v}"] = (outputs["kv-cache"].float() - outputs[v].float()).abs().max().item()
        rows.append(row)
        del outputs
        gc.collect()
    return {"rows": rows, "warmup_steps": short_args.steps}


def bench(settings: dict[str, Any], out: Path) -> int:
    """Build the module on the device, optionally save its backbone, then run the parts settings["parts"] names."""
    device = resolve_device(settings["device"])
    result: dict[str, Any] = {}

    def write() -> None:
        out.write_text(json.dumps(result, indent=2))

    def run(part: str, fn: Callable[[], dict[str, Any]]) -> None:
        start = time.perf_counter()
        try:
            result[part] = {"status": "ok", **fn()}
        except Exception as error:  # recorded, and the next part still runs
            traceback.print_exc()
            result[part] = {"status": "failed", "error": one_line(error)}
        result[part]["seconds"] = time.perf_counter() - start
        if device.type == "cuda":
            torch.cuda.empty_cache()
        write()

    loaded: dict[str, Any] = {}

    def setup() -> dict[str, Any]:
        torch.manual_seed(0)
        # bench_module's 1-D positions: the only scheme diffusers' transformer expresses
        overrides = ["model/positions=sequential", *settings["model_overrides"]]
        start = time.perf_counter()
        info: dict[str, Any] = {"overrides": overrides, "built_on": str(device)}
        try:
            with torch.device(device):  # random init on the device: seconds, not minutes, for 3.8B parameters
                module = random_module(overrides).to(device)
        except Exception as error:  # not expected; the CPU build is slower but is what every other command does
            traceback.print_exc()
            print(f"building on {device} failed ({one_line(error)}); building on the CPU", file=sys.stderr)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            module = random_module(overrides).to(device)
            info["built_on"] = f"cpu ({device}: {one_line(error)})"
        info["build_s"] = time.perf_counter() - start
        info["transformer_parameters"] = sum(p.numel() for p in module.transformer.parameters())
        if settings.get("save_backbone"):
            start = time.perf_counter()
            module.transformer.llm.save_pretrained(settings["save_backbone"])
            # what it was built from, so a later check reuses it only for the same model (check.py)
            (Path(settings["save_backbone"]) / MARKER).write_text(json.dumps(settings["model_overrides"]))
            info["save_backbone_s"] = time.perf_counter() - start
        start = time.perf_counter()
        loaded["module"], loaded["diffusers"] = module, diffusers_transformer(module, device)
        info["diffusers_export_s"] = time.perf_counter() - start
        return info

    run("setup", setup)
    for part in settings["parts"]:
        if result["setup"]["status"] != "ok":
            result[part] = {"status": "failed", "error": "not run: the setup failed"}
            continue
        args = BenchConfig(benchmark=part, device=settings["device"], dtype=settings["dtype"], **settings[part])
        if part == "train_step":
            run(part, lambda args=args: train_step_rows(loaded["module"], loaded["diffusers"], args, device))
        else:
            warmup = settings["sampling_warmup_steps"]
            run(part, lambda a=args, w=warmup: sampling_rows(loaded["module"], loaded["diffusers"], a, w, device))
        result[part]["settings"] = dataclasses.asdict(args)
    write()
    return int(any(r["status"] != "ok" for r in result.values()))


def main(argv: list[str]) -> int:
    if argv[:1] == ["env"] and len(argv) == 2:
        Path(argv[1]).write_text(json.dumps(environment(), indent=2))
        return 0
    if argv[:1] == ["bench"] and len(argv) == 3:
        return bench(json.loads(Path(argv[1]).read_text()), Path(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
