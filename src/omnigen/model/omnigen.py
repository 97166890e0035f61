"""The OmniGen transformer: one LLM over `[condition tokens | time token | output-image tokens]`.

Condition tokens are the instruction's text embeddings with each image placeholder span
replaced by that input image's patch tokens. The velocity of the output image is read from
the last tokens through an adaLN final layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.distributed.fsdp import FSDPModule
from torch.nn.attention.flex_attention import BlockMask
from transformers import DynamicCache

from omnigen.flow.rectified import velocity_from_image
from omnigen.model.backbone.base import check_backbone
from omnigen.model.embeddings import (
    FinalLayer,
    PatchEmbed,
    TimestepEmbedder,
    crop_pos_embed,
    sincos_2d_table,
    unpatchify,
)
from omnigen.model.masks.base import MaskStrategy, SequenceLayout
from omnigen.model.modulation import LayerModulation, left_padded_owner, packed_owner
from omnigen.model.positions import PositionScheme, SequentialPositions

if TYPE_CHECKING:
    from omnigen.processor import PackedBatch


ATTENTION_WITH_MASKS = ("sdpa", "eager", "flex_attention")
PREDICTIONS = ("velocity", "image")


class OmniGen(nn.Module):
    # Entry points besides forward (training with packing, the kv-cached sampler): a sharded model (FSDP2)
    # must gather its parameters for these calls as it does for forward.
    forward_methods = ("forward_packed", "cache_prefix", "forward_cached")

    def __init__(
        self,
        llm: nn.Module,
        mask: MaskStrategy,
        in_channels: int,
        patch_size: int = 2,
        pos_embed_max_size: int = 192,
        positions: PositionScheme | None = None,
        modulate_layers: bool = False,
        prediction: str = "velocity",
    ) -> None:
        super().__init__()
        check_backbone(llm)
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        hidden = llm.config.hidden_size
        self.patch_size, self.in_channels, self.pos_embed_max_size = patch_size, in_channels, pos_embed_max_size
        self.mask = mask
        self.positions = positions or SequentialPositions()
        self.positions.install(llm)  # before the LLM is registered: a wrapped rotary embedding is part of it
        # Two embedders: clean condition images and the noisy output image are different inputs.
        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden)
        self.input_x_embedder = PatchEmbed(patch_size, in_channels, hidden)
        self.time_token = TimestepEmbedder(hidden)  # the token placed before the output image
        self.t_embedder = TimestepEmbedder(hidden)  # adaLN conditioning of the final layer
        self.register_buffer("pos_embed", sincos_2d_table(hidden, pos_embed_max_size)[None], persistent=True)
        self.final_layer = FinalLayer(hidden, patch_size, in_channels)
        self.llm = llm
        # adaLN in every decoder layer for the time and output tokens (an option; omnigen.model.modulation)
        self.layer_modulation = LayerModulation(llm, hidden) if modulate_layers else None
        # What the final layer outputs: the velocity (the paper), or the clean image, turned into
        # the velocity here so that training, sampling and the kv-cache all see velocities.
        self.prediction = prediction
        self._init_embedders()

    def _init_embedders(self) -> None:
        # DiT-style: patch convs as linear layers (xavier on the flattened kernel), timestep MLPs N(0, 0.02).
        for embedder in (self.x_embedder, self.input_x_embedder):
            w = embedder.proj.weight
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            nn.init.zeros_(embedder.proj.bias)
        for mlp in (self.time_token.mlp, self.t_embedder.mlp):
            nn.init.normal_(mlp[0].weight, std=0.02)
            nn.init.normal_(mlp[2].weight, std=0.02)

    def patch_grid(self, latent: Tensor) -> tuple[int, int]:
        h, w = latent.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"latent {h}×{w} is not divisible by patch size {self.patch_size}")
        return h // self.patch_size, w // self.patch_size

    def embed_image(self, latent: Tensor, embedder: PatchEmbed) -> Tensor:
        """(B, C, H, W) latent -> (B, h·w, D) patch tokens with their 2D positions."""
        h, w = self.patch_grid(latent)
        return embedder(latent) + crop_pos_embed(self.pos_embed, self.pos_embed_max_size, h, w).to(latent.dtype)

    def condition_embeds(self, input_ids: Tensor, image_token_mask: Tensor, input_latents: list[Tensor]) -> Tensor:
        """Text embeddings with image spans filled by input-image tokens -> (B, Lc, D).

        `input_latents` are (C, h, w) latents in the row-major order of their spans.
        """
        embeds = self.llm.get_input_embeddings()(input_ids)  # (B, Lc, D)
        tokens = [self.embed_image(z[None], self.input_x_embedder)[0] for z in input_latents]  # [(h·w, D), ...]
        num_tokens, num_slots = sum(t.shape[0] for t in tokens), int(image_token_mask.sum())
        if num_tokens != num_slots:
            raise ValueError(
                f"{len(tokens)} input latent(s) give {num_tokens} image tokens for {num_slots} placeholder positions"
            )
        if not tokens:
            if torch.is_grad_enabled() and isinstance(self, FSDPModule):
                # FSDP2 reduce-scatters the gradients its parameters have: a rank whose batch holds no input image
                # would send fewer than the others (gloo: a size mismatch; nccl: a hang). A zero term gives the
                # embedder a zero gradient there, as DDP's find_unused_parameters does.
                embeds = embeds + sum(p.sum() for p in self.input_x_embedder.parameters()) * 0.0
            return embeds
        return embeds.masked_scatter(image_token_mask[..., None], torch.cat(tokens).to(embeds.dtype))

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        input_ids: Tensor,
        image_token_mask: Tensor,
        input_latents: list[Tensor],
        layout: SequenceLayout,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        """Velocity of the output image.

        x_t: (B, C, H, W) noisy output latent; t: (B,) in [0, 1]; input_ids, image_token_mask:
        (B, Lc) left-padded condition; layout: the full sequence (B, Lc + 1 + N). attention_mask:
        `self.attention_mask(layout, dtype)` when the caller already has it (a sampler reuses it
        every step; `forward_cached` takes it for queries from `layout.prefix_length` on).
        """
        if layout.packed:
            raise ValueError("a packed layout goes through forward_packed")
        if layout.prefix_length != input_ids.shape[1]:
            raise ValueError(
                f"layout prefix {layout.prefix_length} does not match the condition's {input_ids.shape[1]} tokens"
            )
        condition = self.condition_embeds(input_ids, image_token_mask, input_latents)  # (B, Lc, D)
        return self._velocity(x_t, t, layout, attention_mask, condition=condition)

    def forward_packed(
        self, x_t: Tensor | list[Tensor], t: Tensor, batch: PackedBatch, input_latents: list[Tensor]
    ) -> Tensor | list[Tensor]:
        """Velocities of samples packed several to a row (see `OmniGenProcessor.pack`).

        x_t: the noisy output latents, (S, C, h, w) when they share a size, else a list of each
        sample's (C, h, w); t: (S,); input_latents in the order of `batch.image_order`. Returns
        the velocities in the same form as x_t.
        """
        if len(x_t) != len(batch.output_tokens) or t.shape != (len(x_t),):
            raise ValueError(
                f"{len(x_t)} latents and t {tuple(t.shape)} for a batch of {len(batch.output_tokens)} samples"
            )
        grids = [self.patch_grid(x) for x in x_t]
        if [h * w for h, w in grids] != batch.output_tokens:
            raise ValueError(
                f"latents give {[h * w for h, w in grids]} output tokens, the batch was packed for "
                f"{batch.output_tokens}"
            )
        condition = self.condition_embeds(batch.input_ids, batch.image_token_mask, input_latents)  # (R, L, D)
        rows, length, hidden = condition.shape
        time_tokens = self.time_token(t).to(condition.dtype)  # (S, D)
        if isinstance(x_t, Tensor):  # one patch embedding for the batch
            outputs = [self.embed_image(x_t.to(condition.dtype), self.x_embedder).reshape(-1, hidden)]  # [(S·N, D)]
        else:
            outputs = [
                self.embed_image(x[None].to(condition.dtype), self.x_embedder)[0] for x in x_t
            ]  # [(N_s, D), ...]
        placed = torch.cat([batch.time_index, batch.output_index])
        sequence = condition.reshape(rows * length, hidden).index_copy(0, placed, torch.cat([time_tokens, *outputs]))
        time_embedding = self.t_embedder(t).to(condition.dtype)  # (S, D)
        self._modulate(
            time_embedding,
            lambda: packed_owner(rows, length, batch.time_index, batch.output_index, batch.output_tokens),
        )
        out = self.llm(
            inputs_embeds=sequence.view(rows, length, hidden),  # (R, L, D)
            attention_mask=self.attention_mask(batch.layout, condition.dtype),
            position_ids=self.positions.position_ids(batch.layout),
        ).last_hidden_state
        out = out.reshape(rows * length, hidden)[batch.output_index]  # (ΣN, D), sample after sample
        tokens = self.final_layer(out, time_embedding.to(out.dtype), batch.output_tokens)  # (ΣN, p*p*C)
        if isinstance(x_t, Tensor):
            h, w = grids[0]
            out = unpatchify(tokens.view(len(x_t), h * w, -1), self.patch_size, self.in_channels, h, w)  # (S, C, H, W)
            return self._as_velocity(out, x_t, t)
        return [
            self._as_velocity(unpatchify(tok[None], self.patch_size, self.in_channels, h, w), x[None], t[i : i + 1])[0]
            for i, (tok, x, (h, w)) in enumerate(zip(tokens.split(batch.output_tokens), x_t, grids, strict=True))
        ]

    @property
    def attention_implementation(self) -> str:
        """The backbone's attention: `sdpa` or `eager` take a dense additive mask, `flex_attention`
        a BlockMask. Others (e.g. flash_attention_2) ignore a 4-D mask, so samples would see each other."""
        name = getattr(self.llm.config, "_attn_implementation", None) or "eager"
        if name not in ATTENTION_WITH_MASKS:
            raise ValueError(
                f"backbone attention {name!r} cannot take OmniGen's masks: use one of {ATTENTION_WITH_MASKS}"
            )
        return name

    def linear_weights(self) -> int:
        """Weights of the backbone's Linear layers (its decoder: a base `*Model` has no LM head)."""
        return sum(m.weight.numel() for m in self.llm.modules() if isinstance(m, nn.Linear))

    def attention_pair_cost(self) -> float:
        """Dense attention's matmul work per (query, key) pair relative to the Linear layers' work per
        token: 4·D (QK^T and AV) per layer against 2·(Linear weights). Packing weighs the two.
        0 under FlexAttention: its BlockMask skips the tiles between packed samples."""
        if self.attention_implementation == "flex_attention":
            return 0.0
        return 4 * self.llm.config.hidden_size * self.llm.config.num_hidden_layers / (2 * self.linear_weights())

    def attention_mask(self, layout: SequenceLayout, dtype: torch.dtype, query_start: int = 0) -> Tensor | BlockMask:
        """The mask for queries `query_start:` in the form the backbone's attention takes: a
        FlexAttention BlockMask or SDPA's / eager's dense additive mask in `dtype`."""
        if self.attention_implementation == "flex_attention":
            return self.mask.block_mask(layout, query_start)
        return self.mask.dense(layout, dtype)[:, :, query_start:]  # (B, 1, L - query_start, L)

    def cache_prefix(
        self, input_ids: Tensor, image_token_mask: Tensor, input_latents: list[Tensor], layout: SequenceLayout
    ) -> DynamicCache:
        """Keys/values of the condition prefix, computed once for all sampling steps.

        Only sound when the mask strategy is prefix-independent: then no prefix token sees the
        time token or the noisy output, so the prefix's keys/values do not change with t.
        """
        if not self.mask.prefix_independent:
            raise ValueError(f"{self.mask!r} lets the condition attend to later tokens: its prefix cannot be cached")
        condition = self.condition_embeds(input_ids, image_token_mask, input_latents)  # (B, Lc, D)
        prefix = layout.prefix_length
        # A cache without the config: sliding-window layers would drop old prefix keys.
        cache = DynamicCache()
        self._modulate(None)  # the condition is never modulated
        self.llm(
            inputs_embeds=condition,
            attention_mask=self.attention_mask(layout.prefix(), condition.dtype),
            position_ids=self.positions.position_ids(layout)[:, :prefix],
            cache=cache,
            use_cache=True,
        )
        return cache

    def forward_cached(
        self, x_t: Tensor, t: Tensor, cache: DynamicCache, layout: SequenceLayout, attention_mask: Tensor | None = None
    ) -> Tensor:
        """Velocity of the output image, running only `[time | output]` against a `cache_prefix` cache.

        The cache is cropped back to the prefix afterwards, so it serves the next step unchanged.
        """
        if cache.get_seq_length() != layout.prefix_length:
            raise ValueError(
                f"the cache holds {cache.get_seq_length()} tokens, the layout's prefix is {layout.prefix_length}"
            )
        self._check_step(x_t, layout, attention_mask, layout.num_output_tokens + 1)  # before the crop below can run
        try:
            return self._velocity(x_t, t, layout, attention_mask, cache=cache)
        finally:
            cache.crop(-(layout.num_output_tokens + 1))

    def _modulate(self, time_embedding: Tensor | None, owner: Callable[[], Tensor] | None = None) -> None:
        """Tell the per-layer adaLN (when on) which tokens of the next LLM call belong to which sample."""
        if self.layer_modulation is not None:
            self.layer_modulation.use(time_embedding, owner() if time_embedding is not None else None)

    def _check_step(
        self, x_t: Tensor, layout: SequenceLayout, attention_mask: Tensor | BlockMask | None, queries: int
    ) -> None:
        """Fail, saying why, when x_t, the layout and the mask for the `queries` tokens run now disagree."""
        h, w = self.patch_grid(x_t)
        if layout.packed:
            raise ValueError("a packed layout goes through forward_packed")
        if layout.num_output_tokens != h * w:
            raise ValueError(f"layout ({layout.num_output_tokens} output tokens) does not match x_t ({h * w})")
        if attention_mask is not None and attention_mask.shape[-2] != queries:
            raise ValueError(
                f"attention_mask has {attention_mask.shape[-2]} query rows for the {queries} tokens run "
                "now: build it with attention_mask(layout, dtype, query_start)"
            )

    def _velocity(
        self,
        x_t: Tensor,
        t: Tensor,
        layout: SequenceLayout,
        attention_mask: Tensor | None,
        condition: Tensor | None = None,
        cache: DynamicCache | None = None,
    ) -> Tensor:
        """Run `[condition | time | output]` (or `[time | output]` after a cached prefix) -> (B, C, H, W).
        Left-padded layouts only: packed batches go through `forward_packed`."""
        h, w = self.patch_grid(x_t)
        num_output = h * w
        dtype = self.x_embedder.proj.weight.dtype if condition is None else condition.dtype
        time_token = self.time_token(t)[:, None].to(dtype)  # (B, 1, D)
        output = self.embed_image(x_t.to(dtype), self.x_embedder)  # (B, N, D)
        parts = [time_token, output] if condition is None else [condition, time_token, output]
        sequence = torch.cat(parts, dim=1)  # (B, L, D), or (B, 1 + N, D) after a cached prefix
        start = layout.span_ids.shape[1] - sequence.shape[1]  # the first position run now
        self._check_step(x_t, layout, attention_mask, sequence.shape[1])
        if attention_mask is None:
            attention_mask = self.attention_mask(layout, dtype, start)
        time_embedding = self.t_embedder(t).to(dtype)  # (B, D)
        self._modulate(time_embedding, lambda: left_padded_owner(*sequence.shape[:2], num_output + 1, sequence.device))
        hidden = self.llm(
            inputs_embeds=sequence,
            attention_mask=attention_mask,
            position_ids=self.positions.position_ids(layout)[:, start:],
            cache=cache,
            use_cache=cache is not None,
        ).last_hidden_state
        tokens = self.final_layer(hidden[:, -num_output:], time_embedding.to(hidden.dtype))  # (B, N, p*p*C)
        return self._as_velocity(unpatchify(tokens, self.patch_size, self.in_channels, h, w), x_t, t)  # (B, C, H, W)

    def _as_velocity(self, out: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """The final layer's output (B, C, H, W) as a velocity, whatever `prediction` it is."""
        return out if self.prediction == "velocity" else velocity_from_image(out, x_t.to(out.dtype), t)
