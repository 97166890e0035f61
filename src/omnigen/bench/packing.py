"""packing: padding waste and estimated compute of the fit config's own batches, one sample per
row (padded to the longest) against packed up to pack_tokens per row. A count, not a timing:
the estimate is `processor.row_compute` with c = `OmniGen.attention_pair_cost` (dense attention
per token pair against the Linear layers per token), as the packer itself weighs it."""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict

import torch
from hydra.utils import instantiate

from omnigen.bench.common import random_module
from omnigen.config import compose_fit
from omnigen.processor import PackedBatch, row_compute


def estimated_compute(batch: PackedBatch, pair_cost: float) -> float:
    return row_compute(*batch.input_ids.shape, pair_cost)


def run(overrides: list[str], batches: int, pack_tokens: int) -> list[dict[str, float]]:
    """Two rows: rows chosen for dense attention (the model's pair cost, as training packs on SDPA)
    and for padding alone (pair cost 0, as for FlexAttention, which skips cross-sample tiles)."""
    cfg = compose_fit(overrides)
    module = random_module(overrides)
    data = instantiate(cfg.data, _convert_="all")
    if hasattr(data, "attach"):
        data.attach(module)
    dense_cost = module.transformer.attention_pair_cost()
    f, channels = module.vae.downsample_factor, module.vae.latent_channels
    figures: dict[str, list[float]] = defaultdict(list)
    for batch in itertools.islice(data.train_dataloader(), batches):
        # Only the latents' shapes matter for the layout: no VAE pass.
        inputs = [
            [torch.zeros(channels, im.shape[-2] // f, im.shape[-1] // f) for im in ims] for ims in batch["input_images"]
        ]
        outputs = [
            module.num_tokens(torch.zeros(channels, im.shape[-2] // f, im.shape[-1] // f))
            for im in batch["output_image"]
        ]
        prompts = module.tokenize(batch["instruction"], inputs)
        padded = module.processor.pack(prompts, outputs, None)
        figures["sizes"].append(len({tuple(im.shape[-2:]) for im in batch["output_image"]}))
        figures["before"].append(100 * padded.padding_waste)
        for policy, pair_cost in (("dense", dense_cost), ("padding", 0.0)):
            packed = module.processor.pack(prompts, outputs, pack_tokens, pair_cost=pair_cost)
            figures[f"{policy} after"].append(100 * packed.padding_waste)
            figures[f"{policy} rows"].append(packed.input_ids.shape[0])
            # compute saved is always estimated for dense attention, which is what runs on the CPU
            figures[f"{policy} saved"].append(
                estimated_compute(padded, dense_cost) / estimated_compute(packed, dense_cost)
            )
    median = {name: statistics.median(values) for name, values in figures.items()}
    return [
        {
            "data": type(data).__name__,
            "batches": len(figures["before"]),
            "batch": len(batch["instruction"]),
            "output sizes per batch": median["sizes"],
            "rows chosen for": policy,
            "padding one per row %": median["before"],
            "padding packed %": median[f"{policy} after"],
            "max padding packed %": max(figures[f"{policy} after"]),
            "rows one per row": len(batch["instruction"]),
            "rows packed": median[f"{policy} rows"],
            "dense compute saved x": median[f"{policy} saved"],
        }
        for policy in ("dense", "padding")
    ]
