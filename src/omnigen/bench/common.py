"""What the benchmarks share: the model, inputs, device and precision, clocks, and the alternating timer."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch
from omegaconf import OmegaConf
from torch import Tensor

from omnigen.checkpoints.diffusers import DTYPES, write_diffusers_transformer
from omnigen.checkpoints.native import load_module
from omnigen.config import compose_fit
from omnigen.flow.sampler import SamplerSettings
from omnigen.module import OmniGenLitModule, build_module

PROMPTS = {
    0: "a large red circle at the center on a white background",
    1: "<img><|image_1|></img> make the red circle green",
    2: "<img><|image_1|></img> put the shape of <img><|image_2|></img> at the top left",
}
MIB = 2**20


@dataclass
class BenchConfig:
    benchmark: str = "???"  # kv_cache, loader, packing, train_step, sampling or memory: the first argument
    ckpt: str | None = None  # a checkpoint or exported directory; default: the fit config's model, random
    override: list[str] = field(default_factory=list)  # fit-config overrides, e.g. [data=mixture,data.batch_size=8]
    size: int = 32  # output and input image side, pixels
    steps: int | None = None  # Euler steps per sample (default: kv_cache 20, sampling 50)
    guidance: float = 2.0  # text guidance scale (kv_cache, sampling)
    img_guidance: float = 1.5  # image guidance scale (kv_cache, sampling)
    guidance_interval: list[float] | None = None  # sampling: ours guides only at t in [low, high] (0 noise, 1 data)
    schedule_shift: float = 1.0  # sampling: ours on the time-shifted schedule (omnigen.flow.sampler.euler_timesteps)
    step_cache: float = 0.0  # sampling: ours skips steps whose input changed less than this (StepCache)
    step_cache_order: int = 1  # sampling: a skipped step reuses the velocity (0) or extrapolates it (1)
    repeats: int = 5  # timed repeats of each variant (median reported)
    batch: int = 1  # prompts per call
    threads: int | None = None  # torch CPU threads (default: torch's choice)
    device: str = "cpu"  # cpu or cuda[:index] (kv_cache, train_step, sampling)
    dtype: str = "float32"  # float32, or autocast to bfloat16 / float16 with fp32 weights (not loader, packing)
    compile: str = "none"  # train_step, sampling: none, ours (our LLM) or both (both transformers), in the warm-up
    memory: bool = False  # train_step, sampling: each side's CPU peak resident memory too (always on CUDA)
    pack_tokens: int = 1024  # train_step, packing: our sequence-packing budget per row (model.pack_tokens)
    batches: int = 20  # loader: batches per timed repeat; packing: batches read
    workers: int = 0  # loader: DataLoader worker processes
    json: str | None = None  # also write the settings and rows to this JSON file
    model: str | None = None  # memory: the model preset (fit's model=), e.g. paper; default: the fit config's
    trainer: str | None = None  # memory: one trainer preset (fit's trainer=), e.g. fsdp; default: ddp and fsdp
    devices: int = 8  # memory: GPUs the strategy spreads over (FSDP2 shards over them, DDP replicates)
    condition_tokens: int = 128  # memory: condition tokens per sample (text and input images) before the image
    sizes: list[int] = field(default_factory=lambda: [256, 512, 1024])  # memory: output sides, pixels


def sampler_options(args: BenchConfig) -> dict[str, object]:
    """The faster sampler's options set away from the plain sampler's, as OmniGenPipeline.generate takes them."""
    options = {
        "guidance_interval": args.guidance_interval,
        "schedule_shift": args.schedule_shift,
        "step_cache": args.step_cache,
        "step_cache_order": args.step_cache_order,
    }
    plain = SamplerSettings()
    return {key: value for key, value in options.items() if value != getattr(plain, key)}


def random_module(overrides: list[str]) -> OmniGenLitModule:
    """The fit config's model (tiny preset unless overridden), with random weights."""
    cfg = compose_fit(overrides)
    module = build_module(OmegaConf.to_container(cfg.model, resolve=True))
    torch.nn.init.normal_(module.transformer.final_layer.linear.weight, std=0.02)  # a non-zero velocity
    return module.eval()


def bench_module(args: BenchConfig, device: torch.device) -> OmniGenLitModule:
    """ckpt's module, else the fit config's with random weights, on `device`. The benchmarks that run diffusers'
    side beside ours (train_step, sampling) take 1-D positions, the only scheme its transformer expresses
    (tiny: omni)."""
    overrides = (
        ["model/positions=sequential", *args.override]
        if args.benchmark in ("train_step", "sampling")
        else args.override
    )
    module = load_module(args.ckpt) if args.ckpt else random_module(overrides)
    return module.to(device)


def resolve_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda[:index], got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise ValueError(f"device={name}: CUDA is not available ({why}; torch {torch.__version__})")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device={name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


def autocast(device: torch.device, dtype: str) -> AbstractContextManager:
    """float32: plain fp32; bfloat16/float16: autocast, weights kept in fp32 (as bf16-mixed training)."""
    return torch.autocast(device.type, dtype=DTYPES[dtype], enabled=dtype != "float32")


def clock(device: torch.device) -> float:
    """perf_counter once the device has finished what was queued (CUDA kernels run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def alternate(
    calls: dict[str, Callable[[], Tensor]], repeats: int, device: torch.device
) -> tuple[dict[str, float], dict[str, Tensor], dict[str, float]]:
    """Each call once per repeat, the order reversed every repeat so machine noise hits all alike;
    repeat 0 warms up (allocator, thread pools, kernels) and is not counted. Returns the median
    seconds and the last output of each call and, on CUDA, its peak allocated MiB above what was
    allocated before it (empty on the CPU: see omnigen.bench.compare)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    outputs: dict[str, Tensor] = {}
    peaks: dict[str, float] = {}
    for r in range(repeats + 1):
        for name in list(calls)[:: 1 if r % 2 else -1]:
            if device.type == "cuda":
                before = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
            start = clock(device)
            outputs[name] = calls[name]()
            seconds = clock(device) - start
            if r:
                times[name].append(seconds)
            if r and device.type == "cuda":
                peaks[name] = max(peaks.get(name, 0.0), (torch.cuda.max_memory_allocated(device) - before) / MIB)
    return {name: statistics.median(t) for name, t in times.items()}, outputs, peaks


def memory_columns(peaks: dict[str, float] | None) -> dict[str, float]:
    """The peak-memory columns of a row (none when memory was not measured)."""
    if not peaks:
        return {}
    return {
        "ours peak MiB": peaks["ours"],
        "diffusers peak MiB": peaks["diffusers"],
        "diffusers / ours memory": peaks["diffusers"] / peaks["ours"],
    }


def matmul_flops_per_s(repeats: int, device: torch.device, dtype: str) -> float:
    """This device's matmul throughput in `dtype`: the median of `repeats` (n x n) @ (n x n) products
    (n = 1024 on the CPU, 8192 on CUDA, where a smaller product is too short to time)."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = (torch.randn(n, n, device=device, dtype=DTYPES[dtype]) for _ in range(2))
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = clock(device)
        a @ b
        times.append(clock(device) - start)
    return 2 * n**3 / statistics.median(times)


def diffusers_transformer(module: OmniGenLitModule, device: torch.device) -> torch.nn.Module:
    """diffusers' OmniGenTransformer2DModel holding the module's transformer weights (exported by omnigen.convert)."""
    from diffusers import OmniGenTransformer2DModel

    with tempfile.TemporaryDirectory() as tmp:
        return OmniGenTransformer2DModel.from_pretrained(write_diffusers_transformer(module.transformer, tmp)).to(
            device
        )


def input_images(n: int, size: int, batch: int, seed: int = 0) -> list[list[Tensor]]:
    """`batch` lists of `n` random (3, size, size) images in [-1, 1], on the CPU (pipelines move them)."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.rand(3, size, size, generator=g) * 2 - 1 for _ in range(n)] for _ in range(batch)]


def prompt_tokens(module: OmniGenLitModule, n: int, size: int) -> tuple[int, int]:
    """(condition prefix, output) tokens of PROMPTS[n] with n size x size input images."""
    f = module.vae.downsample_factor
    latent = torch.zeros(module.vae.latent_channels, size // f, size // f)  # only its shape matters
    prompt, _ = module.prepare([PROMPTS[n]], [[latent] * n], latent[None])
    return prompt.layout.prefix_length, prompt.layout.num_output_tokens
