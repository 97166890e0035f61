"""train_step: forward + backward of our transformer next to diffusers' on the same weights and batch.

Ours runs the training path (`OmniGen.forward_packed` on `OmniGenLitModule.prepare_packed`'s
batch, packed `pack_tokens` to a row); diffusers' takes the same samples left-padded one per
row, as its model requires. Rows 0, 1, 2: batch copies of PROMPTS[n] (nothing to pack); row
"mixed": the three prompts in turn, as an X2I mixture batch holds them. There the velocities
differ by ~1e-3: diffusers' OmniGen rotary embedding takes batch row 0's positions for every
row (`emb[0]` in its OmniGen rotary module); RoPE is shift-invariant, so that is harmless unless
row 0 is padded, as the text-only row 0 is here. Ours matches each sample run alone
(tests/test_packing.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from omnigen.bench.common import PROMPTS, BenchConfig, autocast, diffusers_transformer, matmul_flops_per_s
from omnigen.bench.compare import compare
from omnigen.checkpoints.diffusers import diffusers_inputs
from omnigen.module import OmniGenLitModule

ROWS = [*PROMPTS, "mixed"]


def training_step_flops(module: OmniGenLitModule, lengths: list[int]) -> float:
    """Matmul FLOPs of one forward + backward (3x the forward) of the decoder layers over samples of
    `lengths` tokens, padding excluded (the useful work, whatever the batch layout): every Linear
    weight once per token, plus QK^T and AV over each sample's full square (a dense mask computes
    masked pairs too). Embedders and the final layer (<1% here) are left out."""
    config = module.transformer.llm.config
    linear = module.transformer.linear_weights()
    forward = sum(2 * n * linear + config.num_hidden_layers * 2 * 2 * n**2 * config.hidden_size for n in lengths)
    return 3.0 * forward


def setup(module: OmniGenLitModule, sides: Iterable[str], device: torch.device) -> dict[str, nn.Module]:
    """The transformers of `sides`, in training mode."""
    models = {side: module.transformer if side == "ours" else diffusers_transformer(module, device) for side in sides}
    return {side: model.train() for side, model in models.items()}


def row(
    module: OmniGenLitModule, models: dict[str, nn.Module], n: int | str, args: BenchConfig, device: torch.device
) -> tuple[dict[str, float], dict[str, Callable[[], Tensor]]]:
    """One batch of row `n`: (its token counts and padding, one training step per side)."""
    counts = [i % len(PROMPTS) for i in range(args.batch)] if n == "mixed" else [n] * args.batch
    g = torch.Generator().manual_seed(
        len(ROWS) if n == "mixed" else n
    )  # drawn on the CPU: the same batch on any device
    c, side = module.vae.latent_channels, args.size // module.vae.downsample_factor
    x = torch.randn(args.batch, c, side, side, generator=g).to(device)  # (B, C, h, w)
    t = torch.rand(args.batch, generator=g).to(device)  # (B,)
    images = [[torch.randn(c, side, side, generator=g).to(device) for _ in range(k)] for k in counts]
    texts = [PROMPTS[k] for k in counts]
    module.pack_tokens = args.pack_tokens
    packed, packed_latents = module.prepare_packed(texts, images, list(x))
    padded, padded_latents = module.prepare(texts, images, x)
    inputs = {"ours": (x, t, packed, packed_latents)}
    if "diffusers" in models:
        inputs["diffusers"] = diffusers_inputs(module, padded, padded_latents, x, t)

    def step(side: str) -> Callable[[], Tensor]:
        def call() -> Tensor:
            model = models[side]
            with autocast(device, args.dtype):
                velocity = model.forward_packed(*inputs[side]) if side == "ours" else model(**inputs[side]).sample
                loss = velocity.float().square().mean()
            loss.backward()
            model.zero_grad(set_to_none=True)  # each step starts without gradients (its peak memory includes them)
            return velocity.detach()

        return call

    lengths = padded.layout.valid.sum(dim=1).tolist()
    info = {
        "sample tokens": f"{min(lengths)}-{max(lengths)}",
        "useful flops": training_step_flops(module, lengths),
        "ours rows": packed.input_ids.shape[0],
        "padding ours %": 100 * packed.padding_waste,
        "padding diffusers %": 100 * (1 - padded.layout.valid.float().mean().item()),
    }
    return info, {side: step(side) for side in models}


def run(module: OmniGenLitModule, args: BenchConfig, device: torch.device) -> list[dict[str, float]]:
    print(
        f"ours packs to {args.pack_tokens} tokens per row, diffusers pads one sample per row; "
        "% matmul peak counts useful work only"
    )
    # The machine's matmul throughput before and after the rows, the better of the two: a busy
    # moment during one measurement would otherwise inflate every percentage.
    peaks = [matmul_flops_per_s(2 * args.repeats + 1, device, args.dtype)]
    rows = compare(sys.modules[__name__], module, args, device)
    peaks.append(matmul_flops_per_s(2 * args.repeats + 1, device, args.dtype))
    peak = max(peaks)
    print(
        f"measured {args.dtype} matmul throughput on {device}: {', '.join(f'{p / 1e9:.1f}' for p in peaks)} GFLOP/s "
        f"(before, after the rows); percentages use {peak / 1e9:.1f}"
    )
    for row in rows:
        flops = row.pop("useful flops")
        for side in ("ours", "diffusers"):
            row[f"{side} % matmul peak"] = 100 * flops / row[f"{side} s"] / peak
    return rows
