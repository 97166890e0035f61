"""OmniGenLitModule: rectified-flow training of the OmniGen transformer over a frozen VAE."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from lightning import LightningModule
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from omnigen.checkpoints.format import CHECKPOINT_KEY, describe
from omnigen.flow.rectified import interpolate, velocity_target
from omnigen.flow.timesteps.base import TimestepSampler
from omnigen.flow.weighting.base import LossWeighting
from omnigen.model.backbone.hf import backbone_architecture_config
from omnigen.model.masks.base import MaskStrategy
from omnigen.model.omnigen import OmniGen
from omnigen.model.positions import PositionScheme
from omnigen.model.vae.base import VAE
from omnigen.processor import (
    DEFAULT_TEMPLATE,
    OmniGenProcessor,
    PackedBatch,
    Prompt,
    PromptBatch,
    drop_images,
    drop_text,
    tokenizer_to_files,
)
from omnigen.training.finetune import FineTune

TIMESTEP_BINS = 4  # train/loss_t/<bin>: the loss over quarters of t (0 = noise, 1 = data)


def size_groups(images: Tensor | list[Tensor]) -> list[tuple[list[int], Tensor]]:
    """(sample indices, (G, 3, H, W) images) per output size: a stacked batch is one group; a list
    of (3, H, W) images of mixed sizes is grouped by size."""
    if isinstance(images, Tensor):
        return [(list(range(images.shape[0])), images)]
    by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, image in enumerate(images):
        by_size[tuple(image.shape[-2:])].append(i)
    return [(index, torch.stack([images[i] for i in index])) for index in by_size.values()]


class OmniGenLitModule(LightningModule):
    def __init__(
        self,
        vae: VAE,
        backbone: nn.Module,
        mask: MaskStrategy,
        weighting: LossWeighting,
        timesteps: TimestepSampler,
        tokenizer: PreTrainedTokenizerBase,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
        patch_size: int = 2,
        pos_embed_max_size: int = 192,
        prompt_template: str = DEFAULT_TEMPLATE,
        max_condition_tokens: int | None = None,
        text_dropout: float = 0.1,
        image_dropout: float = 0.1,
        seed: int = 0,
        finetune: FineTune | None = None,
        pack_tokens: int | None = None,
        compile_backbone: bool = False,
        positions: PositionScheme | None = None,
        modulate_layers: bool = False,
        prediction: str = "velocity",
    ) -> None:
        super().__init__()
        if pack_tokens is not None and pack_tokens < 1:
            raise ValueError(f"pack_tokens must be a positive token budget per row or null, got {pack_tokens}")
        for name, p in (("text_dropout", text_dropout), ("image_dropout", image_dropout)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if len(tokenizer) > backbone.config.vocab_size:
            raise ValueError(
                f"tokenizer has {len(tokenizer)} tokens but the backbone's vocabulary is {backbone.config.vocab_size}"
            )
        self.vae = vae
        self.transformer = OmniGen(
            backbone, mask, vae.latent_channels, patch_size, pos_embed_max_size, positions, modulate_layers, prediction
        )
        self.finetune = finetune  # None: full fine-tune from the plugins' weights (omnigen.training.finetune)
        if finetune is not None:
            finetune.apply(self.transformer)
        self.processor = OmniGenProcessor(tokenizer, prompt_template, max_condition_tokens)
        self.weighting, self.timesteps = weighting, timesteps
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.text_dropout, self.image_dropout, self.seed = text_dropout, image_dropout, seed
        # Training rows hold as many samples as fit in pack_tokens (None: one sample per row),
        # as many rows as minimise compute with attention costing pair_cost per token pair.
        self.pack_tokens, self.pair_cost = pack_tokens, self.transformer.attention_pair_cost()
        # torch.compile the LLM when training starts (not for sampling from a checkpoint): fused
        # elementwise kernels; the first two batch shapes compile (static, then dynamic), ~30 s each on a CPU.
        self.compile_backbone = compile_backbone
        # The resolved model config this module was built from (set by build_module, not a
        # constructor argument: Hydra would instantiate its `_target_`).
        # With it, checkpoints rebuild the module on their own.
        self.model_config: dict[str, Any] | None = None
        self.run_config: dict[str, Any] | None = None  # the whole resolved run config, for provenance
        self.loaded_step = 0  # the global step of the checkpoint this module was loaded from
        self.last_batch_tokens = 0  # sequence tokens (padding excluded) of the last training batch

    @property
    def steps_trained(self) -> int:
        """Optimiser steps behind these weights, whether training now or loaded from a checkpoint."""
        return self.global_step if self._trainer is not None else self.loaded_step

    @property
    def pixels_per_token(self) -> int:
        return self.vae.downsample_factor * self.transformer.patch_size

    def check_size(self, height: int, width: int) -> None:
        f = self.pixels_per_token
        if height % f or width % f:
            raise ValueError(f"image {height}×{width} is not a multiple of {f} pixels (VAE factor × patch size)")

    def moments(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) pixels in [-1, 1] -> the VAE posterior's normalised mean and std."""
        self.check_size(*images.shape[-2:])
        return self.vae.moments(images.to(self.device))

    def encode_inputs(self, images: list[list[Tensor]]) -> list[list[Tensor]]:
        """Each sample's (3, H, W) input images -> (C, h, w) latents, once per step. Conditions
        take the posterior mean: deterministic, so sampling is reproducible and edits compare
        like with like."""
        return [[self.moments(im[None])[0][0] for im in imgs] for imgs in images]

    def step_generator(self, batch_idx: int) -> torch.Generator:
        """All randomness of one training batch (noise, timesteps, dropout, posterior draws) as a
        pure function of (seed, rank, step, micro-batch): a resumed run repeats an uninterrupted one."""
        accumulate = self._trainer.accumulate_grad_batches if self._trainer is not None else 1
        state = np.random.SeedSequence([self.seed, self.global_rank, self.global_step, batch_idx % accumulate])
        return torch.Generator(self.device).manual_seed(int(state.generate_state(1)[0]))

    # ---- conditioning -------------------------------------------------------------------
    def num_tokens(self, latent: Tensor) -> int:
        h, w = self.transformer.patch_grid(latent)
        return h * w

    def tokenize(self, instructions: list[str], latents: list[list[Tensor]]) -> list[Prompt]:
        return [
            self.processor.tokenize(text, [self.transformer.patch_grid(z) for z in zs])
            for text, zs in zip(instructions, latents, strict=True)
        ]

    def prepare(
        self, instructions: list[str], latents: list[list[Tensor]], output: Tensor
    ) -> tuple[PromptBatch, list[Tensor]]:
        """Tokenise a batch, left-padded -> (prompt batch, input latents in span order); `output` is
        any latent of the output's size. Sampling uses this layout: its prefix is kv-cacheable."""
        batch = self.processor.batch(
            self.tokenize(instructions, latents), self.transformer.patch_grid(output), self.device
        )
        return batch, [latents[b][i] for b, i in batch.image_order]

    def prepare_packed(
        self, instructions: list[str], latents: list[list[Tensor]], outputs: list[Tensor]
    ) -> tuple[PackedBatch, list[Tensor]]:
        """Tokenise a batch and pack it `pack_tokens` to a row (one per row when None); `outputs`
        are latents of each sample's output size, which may differ."""
        batch = self.processor.pack(
            self.tokenize(instructions, latents),
            [self.transformer.patch_grid(z) for z in outputs],
            self.pack_tokens,
            self.device,
            self.pair_cost,
        )
        return batch, [latents[b][i] for b, i in batch.image_order]

    def drop_conditions(
        self, instructions: list[str], images: list[list[Tensor]], generator: torch.Generator | None = None
    ) -> tuple[list[str], list[list[Tensor]]]:
        """CFG dropout, independently per sample: text (keep placeholders) and images (and their
        placeholders); both dropped gives the unconditional prompt. `images` may be latents."""
        device = generator.device if generator is not None else None
        draws = torch.rand(len(instructions), 2, generator=generator, device=device).tolist()  # (B, [text, images])
        out_text, out_images = [], []
        for text, imgs, (u_text, u_images) in zip(instructions, images, draws, strict=True):
            if u_text < self.text_dropout:
                text = drop_text(text)
            if imgs and u_images < self.image_dropout:
                text, imgs = drop_images(text), []
            out_text.append(text)
            out_images.append(imgs)
        return out_text, out_images

    # ---- training -----------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        g = self.step_generator(batch_idx)
        size = len(batch["instruction"])
        instructions, inputs = self.drop_conditions(batch["instruction"], self.encode_inputs(batch["input_images"]), g)
        references = self.edit_references(inputs, batch.get("edit_source") or [None] * size, batch["task"])
        t = self.timesteps.sample(size, device=self.device, generator=g)  # (B,)
        x_t, targets, weights = [None] * size, [None] * size, [None] * size
        for index, images in size_groups(batch["output_image"]):  # batched VAE and weighting per output size
            mean, std = self.moments(images)  # (G, C, h, w) each, from (G, 3, H, W) in [-1, 1]
            x = self.vae.draw(mean, std, g)
            noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
            group = zip(
                index,
                interpolate(x, noise, t[index]),
                velocity_target(x, noise),
                self.weighting.weights(mean, [references[i] for i in index]),
                strict=True,
            )
            for i, *values in group:
                x_t[i], targets[i], weights[i] = values
        prompt, latents = self.prepare_packed(instructions, inputs, x_t)  # x_t: only its shapes are read
        one_size = len({x.shape for x in x_t}) == 1
        pred = self.transformer.forward_packed(
            torch.stack(x_t) if one_size else x_t, t, prompt, latents
        )  # (B, C, h, w) or list
        per_sample = torch.stack(
            [(w * (p.float() - v.float()).pow(2)).mean() for p, v, w in zip(pred, targets, weights, strict=True)]
        )  # (B,)
        loss = per_sample.mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss {loss.item()} at step {self.global_step} "
                f"(tasks in batch: {sorted(set(batch['task']))})"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log_groups(
            "train/loss",
            per_sample.detach(),  # family/task: depth, segmentation are in two families
            [f"{f}/{t}" for f, t in zip(batch["family"], batch["task"], strict=True)],
        )
        bins = (t.detach() * TIMESTEP_BINS).long().clamp(max=TIMESTEP_BINS - 1).tolist()  # which quarter of [0, 1]
        self.log_groups(
            "train/loss_t",
            per_sample.detach(),
            [f"{b / TIMESTEP_BINS:.2f}-{(b + 1) / TIMESTEP_BINS:.2f}" for b in bins],
        )
        self.log("train/padding_waste", prompt.padding_waste, batch_size=size)  # share of row slots that are padding
        self.last_batch_tokens = prompt.num_tokens  # for the throughput callback
        for name, value in (batch.get("data_stats") or {}).items():  # running totals from the DataModule
            self.log(f"data/{name}", value, batch_size=size)
        return loss

    @staticmethod
    def edit_references(inputs: list[list[Tensor]], sources: list[int | None], tasks: list[str]) -> list[Tensor | None]:
        """The input latent each sample edits, for edit weighting; None where it has none or its
        images were dropped (edit weighting compares posterior means, so unchanged stays unchanged)."""
        references = []
        for b, (zs, i) in enumerate(zip(inputs, sources, strict=True)):
            if i is not None and zs and not 0 <= i < len(zs):
                raise ValueError(f"sample {b} ({tasks[b]}): edit_source={i} but it has {len(zs)} input image(s)")
            references.append(zs[i] if i is not None and zs else None)
        return references

    def log_groups(self, prefix: str, per_sample: Tensor, labels: list[str]) -> None:
        """The mean loss of each label's samples as `<prefix>/<label>` (per task, per timestep bin)."""
        groups: dict[str, list[Tensor]] = defaultdict(list)
        for loss, label in zip(per_sample, labels, strict=True):
            groups[label].append(loss)
        for label, losses in groups.items():
            self.log(f"{prefix}/{label}", torch.stack(losses).mean(), batch_size=len(losses))

    def on_fit_start(self) -> None:
        if self.compile_backbone:
            self.transformer.llm.compile()  # in place: parameter names (and checkpoints) stay as they are

    def configure_model(self) -> None:
        # Under FSDP2 (trainer=fsdp) the strategy shards the transformer here, before the optimizer sees it.
        strategy = self._trainer.strategy if self._trainer is not None else None
        if hasattr(strategy, "shard"):
            self.shard(strategy)

    def shard(self, strategy: Any) -> None:
        """Shard what trains (the transformer) with `strategy.shard`; the frozen VAE stays whole on every rank.
        The EMA shards its copy of this module the same way (omnigen.callbacks.ema)."""
        strategy.shard(self.transformer)

    def configure_optimizers(self) -> Any:
        # Named, so an optimiser can treat parameters by role (MuonAdamW); torch's take names too.
        params = [(name, p) for name, p in self.named_parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"},
        }

    # ---- self-describing checkpoints ------------------------------------------------------
    def architecture_config(self) -> dict[str, Any]:
        """The model config with the VAE and backbone replaced by weight-free rebuilds."""
        if self.model_config is None:
            raise RuntimeError(
                "this module has no model_config, so its checkpoint cannot describe it: build it with "
                "omnigen.module.build_module(config)"
            )
        config = dict(self.model_config)
        config["vae"] = self.vae.architecture_config()
        config["backbone"] = backbone_architecture_config(self.transformer.llm)
        config.pop("tokenizer", None)  # stored as files beside it
        if self.finetune is not None or "finetune" in config:  # adapters rebuilt, `init_from` not re-read
            config["finetune"] = self.finetune.architecture_config() if self.finetune is not None else None
        return config

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = describe(self) | {"tokenizer_files": tokenizer_to_files(self.processor.tokenizer)}


def build_module(config: dict[str, Any], run_config: dict[str, Any] | None = None, **built: Any) -> OmniGenLitModule:
    """The module a resolved model config describes (`_target_` and its plugins), with the config recorded
    on it so its checkpoints describe it (fit, checkpoint loading, the release import and the benchmarks
    all build through here). `built` passes objects made elsewhere (a release's VAE, a tokenizer) for the
    config keys they stand for."""
    module = instantiate({k: v for k, v in config.items() if k not in built}, **built, _convert_="all")
    module.model_config, module.run_config = config, run_config
    return module
