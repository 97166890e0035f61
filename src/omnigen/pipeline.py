"""OmniGenPipeline: prompt (+ input images) -> images, from a saved checkpoint.

    pipe = OmniGenPipeline.from_checkpoint("logs/quickstart/runs/.../checkpoints/last.ckpt")
    image = pipe("a large red circle at the center on a white background", seed=0)[0]
    edited = pipe("<img><|image_1|></img> make the red circle green", input_images=[image], seed=0)[0]

Sampling integrates the rectified-flow velocity with Euler steps from noise (t = 0) to data
(t = 1). Guidance runs its branches stacked in one batch: `[cond | image-cond | uncond]` when
any prompt has input images, `[cond | uncond]` otherwise. With a prefix-independent mask the
condition prefix of every branch runs once (kv-cache); later steps run `[time | output]` only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm  # plain text: no ipywidgets needed in notebooks

from omnigen.checkpoints.native import export_module, load_module
from omnigen.flow.sampler import (
    SamplerSettings,
    StepCache,
    VelocityFn,
    check_step_cache,
    checked_interval,
    euler_sample,
    guided_velocity,
    windowed,
)
from omnigen.module import OmniGenLitModule
from omnigen.processor import PromptBatch, drop_text
from omnigen.training import finetune
from omnigen.utils.cli import UserError
from omnigen.utils.images import as_tensor, fit_to_grid, to_pil

log = logging.getLogger(__name__)

ImageInput = Image.Image | str | Path | np.ndarray | Tensor  # a tensor is (3, H, W) in [-1, 1]


class OmniGenPipeline:
    def __init__(self, module: OmniGenLitModule) -> None:
        self.module = module
        self.warned_no_cache = False  # said once per pipeline, not at every generate call
        self.transformer_rows = 0  # rows (prompts × branches) the transformer has run, summed over steps: the work

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", merge_lora: bool = False, weights: str = "default"
    ) -> OmniGenPipeline:
        """From a Lightning checkpoint (`*.ckpt`) or a directory written by `save_pretrained`. A LoRA
        fine-tune loads with its adapters (unmerged) unless `merge_lora`. With EMA (callbacks=ema) the
        averaged weights load; weights="raw" takes the raw training weights."""
        pipe = cls(load_module(path, map_location=device, weights=weights))
        return pipe.merge_lora() if merge_lora else pipe

    def save_pretrained(self, out_dir: str | Path, overwrite: bool = False) -> Path:
        """Export the weights (safetensors), config and tokenizer; `from_checkpoint` reads it back.
        LoRA adapters are kept as they are (call `merge_lora()` first for a plain model)."""
        return export_module(self.module, out_dir, overwrite=overwrite)

    def merge_lora(self) -> OmniGenPipeline:
        """Fold the LoRA adapters into the base weights (in place): the module becomes a plain one."""
        finetune.merge_lora(self.module)
        return self

    def load_lora(self, path: str | Path, merge: bool = False) -> OmniGenPipeline:
        """Add adapters written by `save_lora` (omnigen.training.finetune) to this base model; `merge` folds them in."""
        finetune.load_lora(self.module, path, merge=merge)
        self.module.to(self.device).eval()
        return self

    def save_lora(self, out_dir: str | Path) -> Path:
        """The LoRA adapters alone (peft's adapter_config.json + adapter_model.safetensors)."""
        return finetune.save_lora(self.module, out_dir)

    def to(self, device: str | torch.device) -> OmniGenPipeline:
        self.module.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.module.device

    @property
    def max_side(self) -> int:
        """The longest image side, in pixels, the position grid holds (pos_embed_max_size tokens)."""
        return self.module.transformer.pos_embed_max_size * self.module.pixels_per_token

    @property
    def default_size(self) -> tuple[int, int] | None:
        """The (last) training resolution, when the run config records one: the curriculum's last
        stage, else the data's image_size, else its square resolution size."""
        config = self.module.run_config or {}
        stages = (config.get("curriculum") or {}).get("stages") or [{}]
        data = config.get("data") or {}
        resolution = data.get("resolution") or {}
        square = resolution.get("size") if resolution.get("mode", "square") == "square" else None
        for size in (stages[-1].get("image_size"), data.get("image_size"), square):
            if isinstance(size, int):
                return size, size
        return None

    @property
    def recommended(self) -> SamplerSettings:
        """The sampling settings this checkpoint recommends: its run config's `sampling` (configs/sampling/), the
        plain sampler's defaults where it records none."""
        sampling = (self.module.run_config or {}).get("sampling")
        return SamplerSettings.from_config(sampling, "the checkpoint's run config, sampling")

    # ---- the user-facing call ---------------------------------------------------------
    def __call__(
        self,
        prompt: str | list[str],
        input_images: list[ImageInput] | list[list[ImageInput]] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        img_guidance_scale: float | None = None,
        negative_prompt: str = "",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        use_kv_cache: bool = True,
        use_input_image_size_as_output: bool = False,
        max_input_image_size: int = 1024,
        progress: bool = True,
        output_type: str = "pil",
        guidance_interval: tuple[float, float] | None = None,
        schedule_shift: float | None = None,
        step_cache: float | None = None,
        step_cache_order: int | None = None,
        shift_reference_size: int | None = None,
    ) -> list[Image.Image] | Tensor:
        """Images for one prompt (str) or a batch (list). `input_images` is a list of images for
        one prompt, or one list per prompt; each is a PIL image, a path, an (H, W, 3) uint8 array
        or a (3, H, W) tensor in [-1, 1]. Input images are scaled down to at most
        `max_input_image_size` on their longer side (and to what the position grid holds, `max_side`)
        and centre-cropped to the token grid. The sampling settings (`omnigen.flow.sampler.SamplerSettings`) left
        None are the checkpoint's recommendation (`recommended`). `guidance_interval` (low, high): guide only at
        steps with t in it (0 noise, 1 data), the conditional branch alone elsewhere; (0, 1) guides every step.
        `schedule_shift` > 1 spends more steps near noise, < 1 near data (1: uniform steps); with
        `shift_reference_size` it holds at that side and scales with the image's (SD3's rule). `step_cache` > 0
        skips the transformer at steps whose input changed less than that since the last computed one
        (`step_cache_order` 0 reuses its velocity, 1 extrapolates it); 0 computes every step.
        Returns PIL images, or a (B, 3, H, W) tensor in [-1, 1] with output_type="pt"."""
        if output_type not in ("pil", "pt"):
            raise ValueError(f"output_type must be 'pil' or 'pt', got {output_type!r}")
        if seed is not None and generator is not None:
            raise ValueError("pass either seed or generator, not both")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        per_prompt = self._group_images(prompts, input_images, isinstance(prompt, str))
        images = [
            [
                self.prepare_input_image(im, max_input_image_size, f"prompt {b}, input image {i + 1}")
                for i, im in enumerate(ims)
            ]
            for b, ims in enumerate(per_prompt)
        ]
        height, width = self._output_size(images, height, width, use_input_image_size_as_output)
        if seed is not None:
            generator = torch.Generator().manual_seed(seed)
        out = self.generate(prompts, images, height, width, num_inference_steps, guidance_scale, img_guidance_scale,
                            negative_prompt, generator, use_kv_cache, progress, guidance_interval, schedule_shift,
                            step_cache, step_cache_order, shift_reference_size, self.recommended)  # fmt: skip
        return out if output_type == "pt" else [to_pil(im) for im in out]

    @staticmethod
    def _group_images(prompts: list[str], input_images: list | None, single: bool) -> list[list[ImageInput]]:
        if input_images is None:
            return [[] for _ in prompts]
        if single:
            return [list(input_images)]
        if len(input_images) != len(prompts) or not all(
            ims is None or isinstance(ims, (list, tuple)) for ims in input_images
        ):
            raise UserError(
                f"with {len(prompts)} prompts, input_images must be a list of {len(prompts)} lists "
                "(one per prompt; None or [] for none)"
            )
        return [list(ims or []) for ims in input_images]

    def _output_size(
        self, images: list[list[Tensor]], height: int | None, width: int | None, from_input: bool
    ) -> tuple[int, int]:
        if from_input:
            sizes = {tuple(ims[0].shape[-2:]) for ims in images if ims}
            if len(sizes) != 1 or not all(images):
                raise UserError(
                    "use_input_image_size_as_output needs every prompt to have input images whose first "
                    f"image has one common size; got sizes {sorted(sizes)}"
                )
            return sizes.pop()
        if height is None or width is None:
            if self.default_size is None:
                raise UserError("pass height and width: this checkpoint does not record its training image size")
            height, width = height or self.default_size[0], width or self.default_size[1]
        if max(height, width) > self.max_side:
            raise UserError(
                f"height={height} width={width} is larger than this checkpoint's position grid holds: at most "
                f"{self.max_side} pixels a side (pos_embed_max_size {self.module.transformer.pos_embed_max_size} "
                f"× {self.module.pixels_per_token} pixels per token); set height and width to at most {self.max_side}"
            )
        return height, width

    def prepare_input_image(self, image: ImageInput, max_size: int, name: str) -> Tensor:
        """Any supported image -> (3, H, W) in [-1, 1], at most `max_size` (and `max_side`, what the position
        grid holds) on its longer side, centre-cropped to a multiple of the pixels per token."""
        image = as_tensor(image, name)
        h, w = image.shape[-2:]
        if max(h, w) > self.max_side and max_size > self.max_side:
            log.info("%s: %d×%d scaled to fit the position grid (%d pixels a side)", name, h, w, self.max_side)
        return fit_to_grid(image, min(max_size, self.max_side), self.module.pixels_per_token, name)

    # ---- tensor-level sampling ---------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompts: list[str],
        input_images: list[list[Tensor]] | None = None,
        height: int = 32,
        width: int = 32,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        img_guidance_scale: float | None = None,
        negative_prompt: str = "",
        generator: torch.Generator | list[torch.Generator] | None = None,
        use_kv_cache: bool = True,
        progress: bool = False,
        guidance_interval: tuple[float, float] | None = None,
        schedule_shift: float | None = None,
        step_cache: float | None = None,
        step_cache_order: int | None = None,
        shift_reference_size: int | None = None,
        defaults: SamplerSettings | None = None,
    ) -> Tensor:
        """Prompts and (3, H, W) input images in [-1, 1] -> (B, 3, H, W) images in [-1, 1]. `generator`: one
        for the batch, or one per prompt (each image's noise then does not depend on the rest of the batch).
        The sampling settings left None are `defaults`' (`__call__` passes the checkpoint's recommendation), else the
        plain sampler's (SamplerSettings(): what evaluate, the sample grid and the benchmarks run). `guidance_interval`:
        guide only at steps with t in it; `step_cache`, `step_cache_order`: skip steps whose input changed little
        (both `conditioned`). `schedule_shift`: the steps' times (omnigen.flow.sampler.euler_timesteps; 1 uniform), at
        `shift_reference_size` if given (SamplerSettings.shift_at)."""
        settings = (defaults or SamplerSettings()).but(
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            img_guidance_scale=img_guidance_scale,
            guidance_interval=guidance_interval,
            schedule_shift=schedule_shift,
            step_cache=step_cache,
            step_cache_order=step_cache_order,
            shift_reference_size=shift_reference_size,
        )
        module = self.module
        module.check_size(height, width)
        inputs = module.encode_inputs(input_images if input_images is not None else [[] for _ in prompts])
        n = len(prompts)
        f = module.vae.downsample_factor
        shape = (module.vae.latent_channels, height // f, width // f)
        if isinstance(generator, list):
            if len(generator) != n:
                raise ValueError(f"{len(generator)} generators for {n} prompts: pass one per prompt, or one")
            noise = torch.stack([torch.randn(shape, generator=g) for g in generator])
        else:
            noise = torch.randn(n, *shape, generator=generator)
        noise = noise.to(module.device)  # drawn on the CPU: the same seed gives the same image on any device
        velocity = self.conditioned(
            prompts,
            inputs,
            noise,
            settings.guidance_scale,
            settings.img_guidance_scale,
            negative_prompt,
            use_kv_cache,
            settings.guidance_interval,
            settings.step_cache,
            settings.step_cache_order,
        )
        bar = tqdm(total=settings.num_inference_steps, disable=not progress, desc="sampling")

        def step(x: Tensor, t: Tensor) -> Tensor:
            v = velocity(x, t)
            bar.update()
            return v

        try:
            latent = euler_sample(step, noise, settings.num_inference_steps, settings.shift_at(height, width))
        finally:
            bar.close()
        return module.vae.decode(latent).clamp(-1, 1)

    def conditioned(
        self,
        prompts: list[str],
        inputs: list[list[Tensor]],
        output: Tensor,
        guidance_scale: float = SamplerSettings.guidance_scale,
        img_guidance_scale: float = SamplerSettings.img_guidance_scale,
        negative_prompt: str = "",
        use_kv_cache: bool = True,
        guidance_interval: tuple[float, float] | None = None,
        step_cache: float = SamplerSettings.step_cache,
        step_cache_order: int = SamplerSettings.step_cache_order,
    ) -> VelocityFn:
        """The guided velocity of `prompts` with their input latents (encode_inputs'), for outputs shaped like
        `output` (B, C, h, w). Gradients flow through it unless the caller turns them off.

        `guidance_interval` (low, high): guide only at steps whose t (0 noise, 1 data) lies in [low, high]; at the
        others run the conditional branch alone, one branch instead of two or three. None guides every step.
        `step_cache` > 0: skip the transformer at steps whose x_t changed less than that since the last computed
        one (omnigen.flow.sampler.StepCache, `step_cache_order` 0 reuse, 1 extrapolate); the guided and the
        conditional-only velocities keep their own caches."""
        check_step_cache(step_cache, step_cache_order)  # also when 0 leaves the cache off

        def cached(velocity: VelocityFn) -> VelocityFn:
            return StepCache(velocity, step_cache, step_cache_order) if step_cache > 0 else velocity

        module, n, any_images = self.module, len(prompts), any(inputs)
        # A branch is only run when its scale changes the result: text-only prompts need no image
        # branch, and scales of 1 reduce to the conditional branch alone.
        guided = guidance_scale != 1.0 or (any_images and img_guidance_scale != 1.0)
        with_images = guided and any_images
        texts, latents = list(prompts), list(inputs)
        if with_images:  # a prompt without images gets its uncond here: guidance reduces to u + s(c - u)
            texts += [drop_text(p) if zs else negative_prompt for p, zs in zip(prompts, inputs, strict=True)]
            latents += inputs
        if guided:
            texts += [negative_prompt] * n
            latents += [[] for _ in range(n)]
        batch, ordered = module.prepare(texts, latents, output)
        velocity = cached(
            self.velocity_fn(
                batch, ordered, len(texts) // n, with_images, guidance_scale, img_guidance_scale, use_kv_cache
            )
        )
        if guidance_interval is None:
            return velocity
        # checked also when the scales leave nothing to window; [0, 1] guides every step: the plain velocity
        if not guided or checked_interval(guidance_interval) == (0.0, 1.0):
            return velocity
        conditional = cached(  # the prompts alone: their own (shorter) rows and kv-cache
            self.velocity_fn(*module.prepare(list(prompts), list(inputs), output), 1, False, 1.0, 1.0, use_kv_cache)
        )
        return windowed(velocity, conditional, guidance_interval)

    def velocity_fn(
        self,
        batch: PromptBatch,
        latents: list[Tensor],
        branches: int,
        with_images: bool,
        guidance_scale: float,
        img_guidance_scale: float,
        use_kv_cache: bool,
    ) -> VelocityFn:
        """The guided velocity of `branches` stacked prompt groups ([cond | image-cond | uncond])."""
        transformer = self.module.transformer
        if use_kv_cache and not transformer.mask.prefix_independent:
            if not self.warned_no_cache:
                log.warning("%r lets the condition see later tokens: sampling without the kv-cache", transformer.mask)
                self.warned_no_cache = True
            use_kv_cache = False
        cache = (
            transformer.cache_prefix(batch.input_ids, batch.image_token_mask, latents, batch.layout)
            if use_kv_cache
            else None
        )
        # The same at every step; a cached step runs only the queries from the time token on.
        mask = transformer.attention_mask(
            batch.layout,
            transformer.x_embedder.proj.weight.dtype,
            batch.layout.prefix_length if cache is not None else 0,
        )

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            x, t = x.repeat(branches, 1, 1, 1), t.repeat(branches)  # (branches·B, C, h, w), (branches·B,)
            self.transformer_rows += x.shape[0]
            if cache is not None:
                v = transformer.forward_cached(x, t, cache, batch.layout, mask)
            else:
                v = transformer(x, t, batch.input_ids, batch.image_token_mask, latents, batch.layout, mask)
            v = v.float().chunk(branches)
            if branches == 1:
                return v[0]
            return guided_velocity(v[0], v[-1], guidance_scale, v[1] if with_images else None, img_guidance_scale)

        return velocity
