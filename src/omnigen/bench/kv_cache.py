"""kv_cache: our sampling with and without the prefix kv-cache."""

from __future__ import annotations

from functools import partial

import torch

from omnigen.bench.common import PROMPTS, BenchConfig, alternate, autocast, input_images, prompt_tokens
from omnigen.pipeline import OmniGenPipeline


def sample(
    pipe: OmniGenPipeline, n: int, images: list, args: BenchConfig, device: torch.device, cached: bool
) -> torch.Tensor:
    """Our pipeline on the prompt with `n` input images (`images`: input_images'), with or without the kv-cache."""
    with autocast(device, args.dtype):
        return pipe.generate(
            [PROMPTS[n]] * args.batch,
            images,
            args.size,
            args.size,
            args.steps,
            args.guidance,
            args.img_guidance,
            generator=torch.Generator().manual_seed(0),
            use_kv_cache=cached,
        )


def run(pipe: OmniGenPipeline, args: BenchConfig, device: torch.device) -> list[dict[str, float]]:
    rows = []
    for n in PROMPTS:
        images = input_images(n, args.size, args.batch)
        times, outputs, _ = alternate(
            {"kv-cache": partial(sample, pipe, n, images, args, device, True),
             "no cache": partial(sample, pipe, n, images, args, device, False)},
            args.repeats,
            device,
        )  # fmt: skip
        prefix, output = prompt_tokens(pipe.module, n, args.size)
        rows.append(
            {
                "input images": n,
                "prefix tokens": prefix,
                "output tokens": output,
                "no cache s": times["no cache"],
                "kv-cache s": times["kv-cache"],
                "speed-up": times["no cache"] / times["kv-cache"],
                "max |diff|": (outputs["kv-cache"] - outputs["no cache"]).abs().max().item(),
            }
        )
    return rows
