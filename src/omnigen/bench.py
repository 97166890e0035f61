"""Benchmarks that print ratios measured side by side in one run (never timed tests).

    python -m omnigen.bench kv_cache [--ckpt PATH | --override model/backbone=...] [--size 32] [--steps 20]
    python -m omnigen.bench loader [--override data=mixture] [--batches 20] [--workers 0]
    python -m omnigen.bench train_step [--override ...] [--batch 8] [--size 32]
    (any of them: --json PATH writes the settings and rows)

kv_cache: wall time of sampling with and without the prefix kv-cache for prompts with 0, 1 and
2 input images, guided (three branches with images, two without). The two variants alternate
within each repeat so machine noise hits both alike; medians and their ratio are printed, with
the largest pixel difference between the two outputs.

loader: samples/s the fit config's DataModule delivers (one loader, `--workers` processes) next
to samples/s the fit config's model trains at (forward, backward, AdamW step on ready batches),
alternated within each repeat; a loader/training ratio above 1 means the loader keeps up.

train_step: forward + backward of our transformer next to diffusers' OmniGenTransformer2DModel
holding the same weights (exported by omnigen.convert), on the same batch (prompts with 0, 1
and 2 input images), alternated within each repeat; medians, ours/theirs speed-up, each side's
achieved matmul FLOP/s as a share of this machine's measured fp32 matmul throughput, and the
largest velocity difference between the two are printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from omnigen.checkpoint import load_module
from omnigen.convert import diffusers_inputs, write_diffusers_transformer
from omnigen.fit import CONFIG_DIR
from omnigen.module import OmniGenLitModule
from omnigen.pipeline import OmniGenPipeline

PROMPTS = {
    0: "a large red circle at the center on a white background",
    1: "<img><|image_1|></img> make the red circle green",
    2: "<img><|image_1|></img> put the shape of <img><|image_2|></img> at the top left",
}


def fit_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("fit", overrides=overrides)


def random_module(overrides: list[str]) -> OmniGenLitModule:
    """The fit config's model (tiny preset unless overridden), with random weights."""
    cfg = fit_config(overrides)
    module = instantiate(cfg.model, _convert_="all")
    module.model_config = OmegaConf.to_container(cfg.model, resolve=True)
    torch.nn.init.normal_(module.transformer.final_layer.linear.weight, std=0.02)  # a non-zero velocity
    return module.eval()


def kv_cache(pipe: OmniGenPipeline, size: int, steps: int, repeats: int, batch: int) -> list[dict[str, float]]:
    g = torch.Generator().manual_seed(0)
    rows = []
    for n in PROMPTS:
        images = [[torch.rand(3, size, size, generator=g) * 2 - 1 for _ in range(n)] for _ in range(batch)]
        kwargs = dict(prompts=[PROMPTS[n]] * batch, input_images=images, height=size, width=size,
                      num_inference_steps=steps, guidance_scale=2.0, img_guidance_scale=1.5)
        times: dict[bool, list[float]] = {True: [], False: []}
        outputs: dict[bool, torch.Tensor] = {}
        for r in range(repeats + 1):  # repeat 0 warms up (allocator, thread pools) and is not counted
            for cached in (r % 2 == 0, r % 2 == 1):  # alternate which goes first
                start = time.perf_counter()
                outputs[cached] = pipe.generate(**kwargs, use_kv_cache=cached, generator=torch.Generator().manual_seed(0))
                if r:
                    times[cached].append(time.perf_counter() - start)
        module = pipe.module
        prompt, _ = module.prepare([PROMPTS[n]], [[module.moments(im[None])[0][0] for im in images[0]]],
                                   torch.zeros(1, module.vae.latent_channels, size // module.vae.downsample_factor,
                                               size // module.vae.downsample_factor))
        no_cache, cache = statistics.median(times[False]), statistics.median(times[True])
        rows.append({"input images": n, "prefix tokens": prompt.layout.prefix_length,
                     "output tokens": prompt.layout.num_output_tokens, "no cache s": no_cache, "kv-cache s": cache,
                     "speed-up": no_cache / cache, "max |diff|": (outputs[True] - outputs[False]).abs().max().item()})
    return rows


def loader(overrides: list[str], batches: int, repeats: int, workers: int) -> list[dict[str, float]]:
    cfg = fit_config(overrides + [f"data.num_workers={workers}"])
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
    return [{"data": type(data).__name__, "workers": workers, "batch": len(ready[0]["instruction"]),
             "loader samples/s": loader_rate, "training samples/s": train_rate, "loader / training": loader_rate / train_rate}]


def matmul_flops_per_s(repeats: int, n: int = 1024) -> float:
    """This machine's fp32 matmul throughput: the median of `repeats` (n x n) @ (n x n) products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def training_step_flops(module: OmniGenLitModule, batch: int, tokens: int) -> float:
    """Matmul FLOPs of one forward + backward (3x the forward) of the decoder layers over `batch`
    rows of `tokens`: every Linear weight once per token, plus QK^T and AV over the full square
    (a dense mask computes masked pairs too). Embedders and the final layer (<1% here) are left out."""
    layers = module.transformer.llm.layers
    linear = sum(m.weight.numel() for m in layers.modules() if isinstance(m, torch.nn.Linear))
    hidden = module.transformer.llm.config.hidden_size
    forward = 2 * batch * tokens * linear + len(layers) * 2 * 2 * batch * tokens**2 * hidden
    return 3.0 * forward


def train_step(module: OmniGenLitModule, size: int, batch: int, repeats: int) -> list[dict[str, float]]:
    from diffusers import OmniGenTransformer2DModel

    with tempfile.TemporaryDirectory() as tmp:
        theirs_model = OmniGenTransformer2DModel.from_pretrained(write_diffusers_transformer(module.transformer, tmp))
    ours_model = module.transformer.train()
    theirs_model.train()
    g = torch.Generator().manual_seed(0)
    side = size // module.vae.downsample_factor
    peak = matmul_flops_per_s(2 * repeats + 1)
    print(f"measured fp32 matmul throughput (1024³): {peak / 1e9:.1f} GFLOP/s")
    rows = []
    for n in PROMPTS:
        x = torch.randn(batch, module.vae.latent_channels, side, side, generator=g)  # (B, C, h, w)
        t = torch.rand(batch, generator=g)
        images = [[torch.randn(module.vae.latent_channels, side, side, generator=g) for _ in range(n)] for _ in range(batch)]
        prompt, latents = module.prepare([PROMPTS[n]] * batch, images, x)
        theirs_inputs = diffusers_inputs(module, prompt, latents, x, t)
        ours_inputs = (x, t, prompt.input_ids, prompt.image_token_mask, latents, prompt.layout)
        times: dict[str, list[float]] = {"ours": [], "diffusers": []}
        outputs: dict[str, torch.Tensor] = {}
        for r in range(repeats + 1):  # repeat 0 warms up and is not counted
            for name in (("ours", "diffusers") if r % 2 else ("diffusers", "ours")):  # alternate which goes first
                model = ours_model if name == "ours" else theirs_model
                model.zero_grad(set_to_none=True)
                start = time.perf_counter()
                velocity = ours_model(*ours_inputs) if name == "ours" else theirs_model(**theirs_inputs).sample
                velocity.float().square().mean().backward()
                if r:
                    times[name].append(time.perf_counter() - start)
                outputs[name] = velocity.detach()
        ours, theirs = statistics.median(times["ours"]), statistics.median(times["diffusers"])
        tokens = prompt.layout.position_ids().shape[-1]
        flops = training_step_flops(module, batch, tokens)
        rows.append({"input images": n, "tokens per row": tokens, "ours s": ours, "diffusers s": theirs,
                     "speed-up": theirs / ours, "ours % matmul peak": 100 * flops / ours / peak,
                     "diffusers % matmul peak": 100 * flops / theirs / peak,
                     "max |diff|": (outputs["ours"] - outputs["diffusers"]).abs().max().item()})
    return rows


def print_table(rows: list[dict[str, float]]) -> None:
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(f"{row[k]:.3g}" if isinstance(row[k], float) else str(row[k]) for k in keys))


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(prog="python -m omnigen.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=["kv_cache", "loader", "train_step"])
    parser.add_argument("--ckpt", help="a checkpoint or exported directory; default: the fit config's model, random")
    parser.add_argument("--override", action="append", default=[], help="a fit-config override, e.g. model=tiny")
    parser.add_argument("--size", type=int, default=32, help="output and input image side, pixels")
    parser.add_argument("--steps", type=int, default=20, help="Euler steps per sample")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each variant (median reported)")
    parser.add_argument("--batch", type=int, default=1, help="prompts per call")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--batches", type=int, default=20, help="loader: batches per timed repeat")
    parser.add_argument("--workers", type=int, default=0, help="loader: DataLoader worker processes")
    parser.add_argument("--json", type=Path, default=None, help="also write the settings and rows to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.benchmark == "loader":
        print(f"loader: {args.batches} batches per repeat, {args.repeats} repeats, {torch.get_num_threads()} threads")
        rows = loader(args.override, args.batches, args.repeats, args.workers)
    else:
        module = load_module(args.ckpt) if args.ckpt else random_module(args.override)
        print(f"{args.benchmark}: {args.size}x{args.size}, batch {args.batch}, {args.repeats} repeats, "
              f"{torch.get_num_threads()} threads, {sum(p.numel() for p in module.transformer.parameters()) / 1e6:.2f}M "
              "transformer parameters" + (f", {args.steps} steps" if args.benchmark == "kv_cache" else ""))
        if args.benchmark == "train_step":
            rows = train_step(module, args.size, args.batch, args.repeats)
        else:
            rows = kv_cache(OmniGenPipeline(module), args.size, args.steps, args.repeats, args.batch)
    print_table(rows)
    if args.json:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        args.json.write_text(json.dumps({"settings": settings | {"threads": torch.get_num_threads()}, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
