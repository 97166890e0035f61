"""kv_cache: our sampling with and without the prefix kv-cache."""

from __future__ import annotations

import torch

from omnigen.bench.common import PROMPTS, BenchConfig, alternate, autocast, input_images, prompt_tokens
from omnigen.pipeline import OmniGenPipeline


def run(pipe: OmniGenPipeline, args: BenchConfig, device: torch.device) -> list[dict[str, float]]:
    rows = []
    for n in PROMPTS:
        images = input_images(n, args.size, args.batch)

        def sample(cached: bool, images=images, n=n) -> torch.Tensor:
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

        times, outputs, _ = alternate(
            {"kv-cache": lambda: sample(True), "no cache": lambda: sample(False)}, args.repeats, device
        )
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
