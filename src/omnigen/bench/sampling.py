"""sampling: full guided sampling, our pipeline (kv-cache) next to diffusers' loop on the same weights.

diffusers: its transformer + scheduler in its pipeline's loop; its OmniGenPipeline needs
torchvision, which is not installed. `diffusers_generate` is OmniGenPipeline.__call__ from its
processed inputs on, as pipelines/omnigen/pipeline_omnigen.py (0.42) writes it: its scheduler
(FlowMatchEulerDiscreteScheduler as OmniGen-v1-diffusers configures it: one train timestep,
inverted sigmas, so t = 0 is noise as ours) on sigmas linspace(1, 0, N + 1)[:N], which it
inverts to t_i = i/N -- our uniform schedule -- and passes as `timestep` unchanged, as
omnigen.checkpoints.diffusers.diffusers_inputs passes our t (its OmniGen embeds t in [0, 1], 0 = noise); rows stacked
[cond | uncond | image-cond] (no image-cond row for text-only prompts), its CFG formula, the whole sequence
recomputed every step (no kv-cache), and the attention mask and positions built by its OmniGenCollator. The prompts are
tokenised by our processor (the same prepared prompts on both sides) and both sides draw the
same initial noise, so the final images should agree to float rounding.

Both sides start from prompts, (3, H, W) pixel input images and a seeded generator (input VAE
encoding and tokenisation are timed on both) and end at the final latents decoded by
`module.vae.decode`, clamped to [-1, 1] as our pipeline returns them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import Tensor

from omnigen.bench.common import (
    PROMPTS,
    BenchConfig,
    autocast,
    diffusers_transformer,
    input_images,
    prompt_tokens,
    sampler_options,
)
from omnigen.bench.compare import DEFAULT_SIDE, compare
from omnigen.checkpoints.diffusers import diffusers_inputs
from omnigen.module import OmniGenLitModule
from omnigen.pipeline import OmniGenPipeline
from omnigen.processor import drop_text


@torch.no_grad()
def diffusers_generate(
    module: OmniGenLitModule,
    transformer: torch.nn.Module,
    prompts: list[str],
    images: list[list[Tensor]],
    size: int,
    steps: int,
    guidance_scale: float,
    img_guidance_scale: float,
    generator: torch.Generator,
) -> Tensor:
    """diffusers' OmniGen sampling loop -> (B, 3, size, size) images in [-1, 1] (see the module docstring)."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.omnigen.pipeline_omnigen import retrieve_timesteps
    from diffusers.pipelines.omnigen.processor_omnigen import OmniGenCollator
    from diffusers.utils.torch_utils import randn_tensor

    device, n = module.device, len(prompts)
    inputs = module.encode_inputs(images)
    use_img_cfg = any(inputs)  # its pipeline: input_images given
    # Its processor's rows: [cond | uncond | image-cond], n each; the image-cond prompt is the
    # placeholders alone (drop_text of a prompt without images is the empty negative prompt).
    texts = prompts + [""] * n + ([drop_text(p) for p in prompts] if use_img_cfg else [])
    latents_in = inputs + [[] for _ in range(n)] + (inputs if use_img_cfg else [])
    f = module.vae.downsample_factor
    latents = randn_tensor(
        (n, transformer.config.in_channels, size // f, size // f),
        generator=generator,
        device=device,
        dtype=torch.float32,
    )  # drawn on the generator's device, as ours

    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, invert_sigmas=True)
    timesteps, _ = retrieve_timesteps(scheduler, steps, device, sigmas=np.linspace(1, 0, steps + 1)[:steps])

    batch, ordered = module.prepare(texts, latents_in, latents)
    fixed = diffusers_inputs(module, batch, ordered, latents, timesteps[0])  # its ids, input latents and spans
    # Set every step, and built by its collator from the 0/1 left padding as its processor does:
    # the mask differs from ours only on padding queries, whose outputs nothing reads.
    for key in ("hidden_states", "timestep", "attention_mask", "position_ids"):
        del fixed[key]
    collator = OmniGenCollator()
    padding = batch.layout.valid[:, : batch.layout.prefix_length].long().cpu()  # (rows, Lc)
    outputs = [batch.layout.num_output_tokens] * len(texts)
    mask, _ = collator.create_mask(padding, outputs)  # (rows, L, L)
    mask = collator.adjust_attention_for_input_images(mask, fixed["input_image_sizes"])
    fixed |= {"attention_mask": mask.to(device), "position_ids": collator.create_position(padding, outputs).to(device)}

    branches = 3 if use_img_cfg else 2
    for t in timesteps:
        model_input = torch.cat([latents] * branches).to(transformer.dtype)  # (branches·B, C, h, w)
        velocity = transformer(
            hidden_states=model_input, timestep=t.expand(model_input.shape[0]), return_dict=False, **fixed
        )[0]
        if use_img_cfg:
            cond, uncond, img_cond = torch.split(velocity, len(velocity) // 3, dim=0)
            velocity = uncond + img_guidance_scale * (img_cond - uncond) + guidance_scale * (cond - img_cond)
        else:
            cond, uncond = torch.split(velocity, len(velocity) // 2, dim=0)
            velocity = uncond + guidance_scale * (cond - uncond)
        latents = scheduler.step(velocity, t, latents, return_dict=False)[0]
    return module.vae.decode(latents).clamp(-1, 1)


def setup(module: OmniGenLitModule, sides: Iterable[str], device: torch.device) -> dict[str, object]:
    """Our pipeline and/or diffusers' transformer on the same weights."""
    return {
        side: OmniGenPipeline(module) if side == "ours" else diffusers_transformer(module, device).eval()
        for side in sides
    }


def row(
    module: OmniGenLitModule, loaded: dict[str, object], n: int, args: BenchConfig, device: torch.device
) -> tuple[dict[str, int], dict[str, Callable[[], Tensor]]]:
    """PROMPTS[n] (batch copies) with n random input images: (token counts, one sampling call per side)."""
    prompts, images = [PROMPTS[n]] * args.batch, input_images(n, args.size, args.batch)
    settings, options = (args.steps, args.guidance, args.img_guidance), sampler_options(args)

    def ours(**options: object) -> Tensor:
        with autocast(device, args.dtype):
            return loaded["ours"].generate(
                prompts,
                images,
                args.size,
                args.size,
                *settings,
                generator=torch.Generator().manual_seed(0),
                use_kv_cache=True,
                **options,
            )

    def diffusers() -> Tensor:
        with autocast(device, args.dtype):
            return diffusers_generate(
                module, loaded["diffusers"], prompts, images, args.size, *settings, torch.Generator().manual_seed(0)
            )

    prefix, output = prompt_tokens(module, n, args.size)
    calls = {"ours": lambda: ours(**options), "diffusers": diffusers}
    chosen = {side: calls[side] for side in loaded}
    if options and "ours" in loaded:  # ours as by default, beside: what the options buy
        chosen[DEFAULT_SIDE] = ours
    return {"prefix tokens": prefix, "output tokens": output}, chosen


def run(module: OmniGenLitModule, args: BenchConfig, device: torch.device) -> list[dict[str, float]]:
    if options := sampler_options(args):
        print(f"ours: with {options}; ours default: without them")
    print(
        "ours: OmniGenPipeline.generate (kv-cache); diffusers: its transformer + scheduler in its pipeline's loop "
        "(its OmniGenPipeline needs torchvision), the full sequence every step; both end at module.vae.decode"
    )
    return compare(sys.modules[__name__], module, args, device)
