"""The GPU check: the paper preset on one CUDA device, every part in its own process, one JSON.

    experiments/gpu/run.sh [tiny] [key=value ...]      (runs this file; see experiments/gpu/README.md)

Parts, in this order (`parts` picks among train_step, sampling, fit):
- bench_setup: the fit config's model with random weights (model=paper: Phi-3-mini, 3.8B, over the SDXL VAE),
  built on the device, and diffusers' OmniGenTransformer2DModel holding the same weights (experiments/gpu/parts.py);
  the backbone is saved to the work directory for the fits;
- train_step: `omnigen.bench train_step`'s rows in `dtype` autocast, ours beside diffusers' transformer;
- sampling: guided sampling at `sample_size`, text only and with one input image, `sample_steps` steps: our
  pipeline with and without the kv-cache, and diffusers' transformer in its pipeline's loop;
- fit_<size>, one per `fit_sizes`: `python -m omnigen.fit` with trainer=fsdp trainer.devices=1 (FSDP2 on one
  device: fp32 shards, bf16 compute, fp32 reduction), Shapes-X2I edits at that size, `fit_steps` steps; the
  callback experiments/gpu/step_stats.py records each step's time and peak memory.

Each part's numbers go into `out` as soon as it ends. A part that fails is recorded with the last error line of
its output and the others still run; at the end a failure prints one line naming the failed parts and exits 1.
`tiny` is the CPU smoke test of all of it (tests/test_gpu_check.py): the tiny preset, 32-48 px, 2 sampling steps.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omnigen.utils.cli import UsageError, parse_cli, run_main

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROG = "experiments/gpu/run.sh"
PARTS = ("train_step", "sampling", "fit")
MARKER = "gpu_check_model_overrides.json"  # parts.MARKER
# The paper preset. Its tokenizer (model/tokenizer=local) needs a Phi-3 tokenizer directory, which nothing here
# downloads: the shipped Shapes-X2I word-level one stands in (a prompt is ~40 text tokens either way, beside
# 256-4096 tokens per image). To use a real one: override=[model/tokenizer=local,model.tokenizer.path=DIR].
PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "device": "cuda",
        "dtype": "bfloat16",
        "model": ["model=paper", "model/tokenizer=shapes"],
        # fused AdamW: the paper's optimizer without the foreach implementation's full-size temporaries (one more
        # fp32 copy of the weights, 15 GB, at the optimizer step); see README.md, "Memory"
        "fit_optimizer": ["+model.optimizer.fused=true"],
        "fit_sizes": [256, 512],
        "fit_batches": [8, 2],
        "fit_steps": 8,
        "fit_warmup": 3,
        "train_step_size": 256,
        "train_step_batch": 2,
        "train_step_repeats": 3,
        "sample_size": 1024,
        "sample_steps": 50,
        "sample_repeats": 1,
    },
    "tiny": {
        "device": "cpu",
        "dtype": "bfloat16",
        "model": [],  # the fit config's default: the tiny preset
        # the full check's optimizer (tiny's own is MuonAdamW)
        "fit_optimizer": [
            "model.optimizer._target_=torch.optim.AdamW",
            "~model.optimizer.muon_lr",
            "+model.optimizer.fused=true",
        ],
        "fit_sizes": [32, 48],
        "fit_batches": [4, 2],
        "fit_steps": 4,
        "fit_warmup": 2,
        "train_step_size": 32,
        "train_step_batch": 2,
        "train_step_repeats": 1,
        "sample_size": 48,
        "sample_steps": 2,
        "sample_repeats": 1,
    },
}
SAMPLING_WARMUP_STEPS = 2  # the uncounted warm-up sampling call's steps (parts.py)
ERROR_LINE = re.compile(r"^(omnigen\.\w+: |(?=\S).*(Error|Exception|error:|Could not|[Cc]annot|not found|[Ff]ailed))")


@dataclass
class CheckConfig:
    tiny: bool = False  # the CPU smoke test: the tiny preset, 32-48 px, 2 sampling steps (run.sh tiny)
    out: str | None = None  # the JSON (default: experiments/gpu/results.json; tiny: in the temp directory)
    work: str | None = None  # fit runs and the saved backbone (default: a temporary directory, removed at the end)
    parts: list[str] = field(default_factory=lambda: list(PARTS))  # any of train_step, sampling, fit
    override: list[str] = field(default_factory=list)  # fit-config overrides for every part (README.md)
    device: str | None = None  # default cuda (tiny: cpu)
    dtype: str | None = None  # train_step and sampling autocast dtype (default bfloat16; the fits: trainer=fsdp's bf16)
    fit_sizes: list[int] | None = None  # default [256, 512] (tiny [32, 48])
    fit_batches: list[int] | None = None  # per process, one per fit size: default [8, 2] (tiny [4, 2])
    fit_steps: int | None = None  # optimizer steps per fit: default 8 (tiny 4)
    fit_warmup: int | None = None  # first steps left out of the fits' medians: default 3 (tiny 2)
    train_step_size: int | None = None  # default 256 (tiny 32)
    train_step_batch: int | None = None  # default 2
    train_step_repeats: int | None = None  # timed repeats per side after one warm-up: default 3 (tiny 1)
    sample_size: int | None = None  # output and input image side: default 1024 (tiny 48)
    sample_steps: int | None = None  # default 50 (tiny 2)
    sample_repeats: int | None = None  # timed calls per variant after one short warm-up: default 1


def resolve(cfg: CheckConfig) -> dict[str, Any]:
    """The settings every part runs with: the preset's, then what was given."""
    if bad := sorted(set(cfg.parts) - set(PARTS)):
        raise UsageError(f"{PROG}: unknown part(s) {', '.join(bad)}; parts are {', '.join(PARTS)}")
    preset = "tiny" if cfg.tiny else "full"
    settings = dict(PRESETS[preset], preset=preset, parts=list(cfg.parts), override=list(cfg.override))
    settings |= {k: v for k, v in asdict(cfg).items() if k in settings and v is not None and k not in ("parts",)}
    if len(settings["fit_batches"]) != len(settings["fit_sizes"]):
        raise UsageError(f"{PROG}: fit_batches needs one batch size per fit size {settings['fit_sizes']}")
    if settings["fit_warmup"] >= settings["fit_steps"]:
        raise UsageError(f"{PROG}: fit_warmup must be below fit_steps, got {settings['fit_warmup']}")
    settings["model_overrides"] = [*settings["model"], *settings["override"]]
    settings["cuda_alloc_conf"] = child_env()["PYTORCH_CUDA_ALLOC_CONF"]
    return settings


def child_env() -> dict[str, str]:
    """The parts' environment: W&B offline, step_stats importable, the CUDA allocator growing segments in place
    (less fragmentation near the memory limit) unless set otherwise."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return env | {
        "WANDB_MODE": env.get("WANDB_MODE", "offline"),
        "WANDB_SILENT": "true",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")])),
        "PYTORCH_CUDA_ALLOC_CONF": env.get("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True"),
    }


def run_part(name: str, command: list[str], log: Path) -> tuple[int, list[str]]:
    """`command` from the repository root, its output shown as it comes and written to `log`: (exit status,
    the last lines of its output)."""
    print(f"== {name}: {' '.join(command)}", flush=True)
    tail: deque[str] = deque(maxlen=40)
    log.parent.mkdir(parents=True, exist_ok=True)
    with (
        log.open("w") as f,
        subprocess.Popen(
            command, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as child,
    ):
        for line in child.stdout:
            sys.stdout.write(line)
            f.write(line)
            tail.append(line.rstrip())
    sys.stdout.flush()
    return child.returncode, list(tail)


def error_line(tail: list[str], status: int) -> str:
    """The line of a failed part's output that says what went wrong (a traceback's last line, a command's
    one-line error, Hydra's message), else its last line."""
    lines = [line.strip() for line in tail if line.strip() and not line.startswith("Set the environment variable")]
    matches = [line for line in tail if ERROR_LINE.match(line)]
    return f"exit status {status}: " + (matches[-1] if matches else lines[-1] if lines else "no output").strip()


def fit_command(settings: dict[str, Any], size: int, batch: int, run_dir: Path, backbone: Path | None) -> list[str]:
    accelerator = "gpu" if settings["device"].startswith("cuda") else "cpu"
    overrides = [
        *settings["model"],
        "trainer=fsdp",
        f"trainer.accelerator={accelerator}",
        "trainer.devices=1",
        f"trainer.max_steps={settings['fit_steps']}",
        "trainer.log_every_n_steps=1",
        "trainer.enable_model_summary=false",
        # every sample an edit (one input image and the output, both at `size`): Shapes-X2I's longest sample,
        # so each step has the same length and the peak is the default mix's worst case
        "data=shapes",
        "data.families.text_to_image=0",
        f"data.image_size={size}",
        f"data.batch_size={batch}",
        # no EMA copy, no checkpoint (a 3.8B model's is 61 GB with its optimizer), no sample grid; CSV metrics
        "callbacks=no_ema",
        "callbacks.checkpoint=null",
        "callbacks.sample_grid=null",
        "logger=csv",
        *settings["fit_optimizer"],
        f"hydra.run.dir={run_dir}",
        "+callbacks.step_stats._target_=step_stats.StepStats",
        f"+callbacks.step_stats.out={run_dir / 'step_stats.json'}",
        f"+callbacks.step_stats.warmup={settings['fit_warmup']}",
        *settings["override"],
    ]
    if backbone is not None:  # after the overrides, which may have shaped it (a backbone config) when it was built
        overrides += ["model.backbone.config=null", f"model.backbone.pretrained_path={backbone}"]
    return [sys.executable, "-m", "omnigen.fit", *overrides]


def saved_backbone(work: Path, settings: dict[str, Any]) -> Path | None:
    """The backbone bench_setup saved in `work` for these model overrides, if it did."""
    path = work / "backbone"
    marker = path / MARKER
    return path if marker.is_file() and json.loads(marker.read_text()) == settings["model_overrides"] else None


def git_state() -> dict[str, Any] | None:
    """The repository's commit and whether the tree differs from it (None outside a git checkout)."""
    try:
        git = ["git", "-C", str(ROOT)]
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
        changed = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit.strip(), "uncommitted_changes": bool(changed.strip())}


def summary(results: dict[str, Any]) -> list[str]:
    """A few lines of the headline numbers."""
    lines = []
    for name, part in results["parts"].items():
        if part["status"] != "ok":
            lines.append(f"{name}: FAILED ({part['error']})")
        elif name.startswith("fit_"):
            peak = part.get("peak_allocated_mib", part.get("peak_rss_mib"))
            lines.append(
                f"{name}: {part['step_s_median']:.3f} s/step, {part['tokens_per_s']:.0f} tokens/s, "
                f"peak {peak:.0f} MiB ({part['seconds']:.0f} s)"
            )
        elif name == "sampling":
            for row in part["rows"]:
                lines.append(
                    f"sampling, {row['input images']} input image(s): kv-cache {row['kv-cache s']:.2f} s, "
                    f"no cache {row['no cache s']:.2f} s, diffusers {row['diffusers s']:.2f} s"
                )
        elif name == "train_step":
            speed = ", ".join(f"{row['input images']}: {row['speed-up']:.2f}" for row in part["rows"])
            lines.append(f"train_step, diffusers s / ours s per row: {speed}")
    return lines


def check(cfg: CheckConfig) -> int:
    settings = resolve(cfg)
    default_out = Path(tempfile.gettempdir()) / "omnigen_gpu_check_tiny.json" if cfg.tiny else HERE / "results.json"
    out = Path(cfg.out) if cfg.out else default_out
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(cfg.work) if cfg.work else Path(tempfile.mkdtemp(prefix="omnigen_gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results: dict[str, Any] = {"ok": False, "settings": settings, "environment": None, "git": git_state(), "parts": {}}

    def write() -> None:
        results["seconds"] = time.perf_counter() - start
        out.write_text(json.dumps(results, indent=2))

    def failed(name: str, status: int, tail: list[str], seconds: float, **extra: Any) -> None:
        results["parts"][name] = {"status": "failed", "error": error_line(tail, status), "seconds": seconds, **extra}
        results["parts"][name]["output_tail"] = tail[-15:]

    try:
        t0 = time.perf_counter()
        status, tail = run_part(
            "environment",
            [sys.executable, str(HERE / "parts.py"), "env", str(work / "env.json")],
            work / "logs" / "environment.log",
        )
        if status == 0:
            results["environment"] = json.loads((work / "env.json").read_text())
        else:
            failed("environment", status, tail, time.perf_counter() - t0)
        write()

        bench_parts = [p for p in ("train_step", "sampling") if p in settings["parts"]]
        if bench_parts:
            t0 = time.perf_counter()
            bench_settings = {
                "device": settings["device"],
                "dtype": settings["dtype"],
                "model_overrides": settings["model_overrides"],
                "parts": bench_parts,
                "save_backbone": str(work / "backbone") if "fit" in settings["parts"] else None,
                "sampling_warmup_steps": SAMPLING_WARMUP_STEPS,
                "train_step": {
                    "size": settings["train_step_size"],
                    "batch": settings["train_step_batch"],
                    "repeats": settings["train_step_repeats"],
                },
                "sampling": {
                    "size": settings["sample_size"],
                    "batch": 1,
                    "steps": settings["sample_steps"],
                    "repeats": settings["sample_repeats"],
                },
            }
            (work / "bench_settings.json").write_text(json.dumps(bench_settings, indent=2))
            bench_out = work / "bench.json"
            bench_out.unlink(missing_ok=True)
            command = [
                sys.executable,
                str(HERE / "parts.py"),
                "bench",
                str(work / "bench_settings.json"),
                str(bench_out),
            ]
            status, tail = run_part("bench", command, work / "logs" / "bench.log")
            reported = json.loads(bench_out.read_text()) if bench_out.is_file() else {}
            for name in ("setup", *bench_parts):
                part = reported.get(name)
                if part is None:  # the process died before it recorded this part
                    failed(f"bench_{name}" if name == "setup" else name, status or 1, tail, time.perf_counter() - t0)
                else:
                    results["parts"][f"bench_{name}" if name == "setup" else name] = part
            write()

        if "fit" in settings["parts"]:
            backbone = saved_backbone(work, settings)
            results["settings"]["fit_backbone"] = (
                "random, saved by bench_setup and loaded (model.backbone.pretrained_path)"
                if backbone
                else "random, built from the config on the CPU"
            )
            for size, batch in zip(settings["fit_sizes"], settings["fit_batches"], strict=True):
                name, run_dir = f"fit_{size}", work / f"fit_{size}"
                (run_dir / "step_stats.json").unlink(missing_ok=True)
                command = fit_command(settings, size, batch, run_dir, backbone)
                t0 = time.perf_counter()
                status, tail = run_part(name, command, work / "logs" / f"{name}.log")
                seconds = time.perf_counter() - t0
                stats = run_dir / "step_stats.json"
                if status == 0 and stats.is_file():
                    results["parts"][name] = {
                        "status": "ok",
                        "seconds": seconds,
                        "image_size": size,
                        "batch_size": batch,
                        **json.loads(stats.read_text()),
                        "command": command[1:],
                    }
                else:
                    tail = tail if status else [*tail, "the fit ended without writing its step statistics"]
                    failed(name, status or 1, tail, seconds, command=command[1:])
                write()
    finally:
        bad = [name for name, part in results["parts"].items() if part["status"] != "ok"]
        results["ok"] = not bad and bool(results["parts"])
        write()
        if not cfg.work:
            shutil.rmtree(work, ignore_errors=True)
    print("\n".join(["== gpu check", *summary(results), f"wrote {out} ({results['seconds']:.0f} s)"]), flush=True)
    if bad:
        reasons = "; ".join(f"{name}: {results['parts'][name]['error']}" for name in bad)
        print(f"gpu check FAILED, part(s) {', '.join(bad)} ({reasons}); details in {out}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return check(parse_cli(CheckConfig, argv, PROG, "tiny=true out=/tmp/gpu_check.json", __doc__))


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
