"""Ours next to diffusers, row by row: median times, outputs and peak memory of each side.

A benchmark module (train_step, sampling) gives `setup(module, sides, device)` -> what each side
runs with, and `row(module, loaded, n, args, device)` -> (row info, one zero-argument call per
side) for each key n of its `ROWS` (default: PROMPTS[n] for n input images). Peak memory: on
CUDA the allocator's peak above what was allocated before the call (measured in `alternate`);
on the CPU torch keeps no allocator statistics, so with memory=true each side runs in a fresh
interpreter (neither inherits the other's freed-but-kept heap) that, per row, warms up, trims
the heap, resets the kernel's resident-set high-water mark (/proc/self/clear_refs), runs the
call once and reads VmHWM − VmRSS before it.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from omnigen.bench.common import PROMPTS, BenchConfig, alternate, bench_module, memory_columns
from omnigen.module import OmniGenLitModule

SIDES = ("ours", "diffusers")
DEFAULT_SIDE = "ours default"  # sampling with a faster sampler's options: ours without them, timed beside


def compare(
    bench: ModuleType, module: OmniGenLitModule, args: BenchConfig, device: torch.device
) -> list[dict[str, float]]:
    """One row per `bench_rows(bench)`: info, both medians, speed-up = diffusers / ours, peak memory
    (CUDA, or the CPU with memory=true) and the largest difference between the outputs."""
    loaded = compiled(bench.setup(module, SIDES, device), module, args.compile)
    rss = cpu_peaks(args) if args.memory and device.type == "cpu" else None
    rows = []
    for i, n in enumerate(bench_rows(bench)):
        info, calls = bench.row(module, loaded, n, args, device)
        times, outputs, cuda_peaks = alternate(calls, args.repeats, device)
        default = {}
        if DEFAULT_SIDE in times:
            default = {
                f"{DEFAULT_SIDE} s": times[DEFAULT_SIDE],
                "options' speed-up": times[DEFAULT_SIDE] / times["ours"],
            }
        reference = outputs.get(DEFAULT_SIDE, outputs["ours"])  # diffusers' loop has no options to match
        rows.append(
            {
                "input images": n,
                **info,
                "ours s": times["ours"],
                "diffusers s": times["diffusers"],
                "speed-up": times["diffusers"] / times["ours"],
                **default,
                **memory_columns(
                    {side: peak for side, peak in cuda_peaks.items() if side in SIDES} or (rss[i] if rss else None)
                ),
                "max |diff|": (reference.float() - outputs["diffusers"].float()).abs().max().item(),
            }
        )
    return rows


def compiled(loaded: dict[str, object], module: OmniGenLitModule, which: str) -> dict[str, object]:
    """torch.compile the transformers of the sides `which` names (none, ours, both), in place: ours
    compiles its LLM (as model.compile_backbone does in training), diffusers' its whole transformer.
    The first calls compile (the uncounted warm-up repeat of each row)."""
    for side in loaded:
        if which == "both" or which == side:
            (module.transformer.llm if side == "ours" else loaded[side]).compile()
    return loaded


def bench_rows(bench: ModuleType) -> list[int | str]:
    return list(getattr(bench, "ROWS", PROMPTS))


# ---- CPU peak memory ---------------------------------------------------------------------------
def _status_mib(field: str) -> float:
    """VmRSS (resident now) or VmHWM (resident high-water mark) of this process, MiB."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M)[1]) / 1024


def _trim_heap() -> None:
    """Return freed heap memory to the kernel (glibc keeps it), so RSS counts live memory only."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim this way
        pass


def peak_rss_mib(call: Callable[[], Tensor]) -> float:
    """Resident memory `call` adds at its peak, MiB, after one unmeasured warm-up call."""
    call()  # one-time allocations (thread pools, kernel scratch) are not the step's
    _trim_heap()
    before = _status_mib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError as e:
        raise RuntimeError(
            f"cannot reset the resident-set high-water mark ({e}); CPU peak memory needs Linux's "
            "/proc/self/clear_refs: run without memory=true"
        ) from e
    call()
    return _status_mib("VmHWM") - before


def measure_side(settings: dict, side: str) -> list[float]:
    """Per row, the CPU peak MiB of one call of `side` (this process's heap is the one measured)."""
    args = BenchConfig(**settings)
    torch.set_num_threads(args.threads)
    bench = importlib.import_module(f"omnigen.bench.{args.benchmark}")
    device = torch.device("cpu")
    module = bench_module(args, device)
    loaded = compiled(bench.setup(module, (side,), device), module, args.compile)
    return [peak_rss_mib(bench.row(module, loaded, n, args, device)[1][side]) for n in bench_rows(bench)]


def cpu_peaks(args: BenchConfig) -> list[dict[str, float]]:
    """Per row, {side: CPU peak MiB}, each side measured in its own fresh interpreter. The two
    run at once: a process's resident peak does not depend on another's, and start-up takes seconds."""
    settings = asdict(args) | {"threads": torch.get_num_threads()}
    code = "import sys; from omnigen.bench.compare import child_main; child_main(sys.argv[1:])"
    print(f"measuring CPU peak memory: one fresh interpreter per side ({', '.join(SIDES)})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        outs = {side: Path(tmp) / f"{side}.json" for side in SIDES}
        children = {
            side: subprocess.Popen([sys.executable, "-c", code, side, str(out), json.dumps(settings)])
            for side, out in outs.items()
        }
        failed = {side: status for side, child in children.items() if (status := child.wait())}
        if failed:
            raise RuntimeError(f"CPU memory measurement failed (exit status per side: {failed}; the error is above)")
        peaks = {side: json.loads(out.read_text()) for side, out in outs.items()}
    return [{side: peaks[side][i] for side in SIDES} for i in range(len(peaks[SIDES[0]]))]


def child_main(argv: list[str]) -> None:
    """In the fresh interpreter: argv = [side, output JSON path, settings JSON]."""
    side, out, settings = argv
    Path(out).write_text(json.dumps(measure_side(json.loads(settings), side)))
