"""Omni positions: three rotary axes (sequence, row, column), in the manner of OmniGen2's Omni-RoPE.

Text, the time token and padding get (p, p, p), p being the token's sequential position, so text
rotates exactly as under `sequential` (a text-only prompt is unchanged, and so is every text token
after an image). Every token of an image gets (p0, row, column): p0 is the sequential position of
the image's first token, row and column its cell in the image's token grid, from 0 for every image.
The output image's cell (r, c) and an input image's cell (r, c) then differ on the sequence axis
alone, by the same amount for every cell, wherever the images sit in the prompt.

`AxialRotary` wraps the LLM's own rotary embedding: frequency slot j rotates by axis j mod 3, so
each axis keeps a spread of fast and slow frequencies, and the wrapped module still computes the
angles (its scaling, e.g. LongRoPE's factors, applies per axis). It assumes the rotate-half layout
of the Llama family (cos = [angles, angles]): Llama, Phi-3, Qwen2, Mistral, Gemma. The three
coordinates travel through the LLM packed into one int64 id, so no HF code path sees a new shape.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from omnigen.model.masks.base import SequenceLayout
from omnigen.model.positions.base import PositionScheme

AXES = 3
AXIS_BASE = 2**20  # each coordinate < 2^20; an id (p0·B + row)·B + column stays < 2^60


def pack_axes(sequence: Tensor, row: Tensor, column: Tensor) -> Tensor:
    return (sequence * AXIS_BASE + row) * AXIS_BASE + column


def unpack_axes(ids: Tensor) -> list[Tensor]:
    """(B, L) packed ids -> [sequence, row, column], each (B, L)."""
    return [ids // AXIS_BASE**2, ids // AXIS_BASE % AXIS_BASE, ids % AXIS_BASE]


class AxialRotary(nn.Module):
    """The LLM's rotary embedding, evaluated once per axis on that axis's coordinates and
    interleaved by frequency slot: (B, L) packed ids -> (cos, sin), each (B, L, D)."""

    def __init__(self, rotary: nn.Module) -> None:
        super().__init__()
        self.rotary = rotary

    def forward(self, x: Tensor, position_ids: Tensor) -> tuple[Tensor, Tensor]:
        per_axis = [self.rotary(x, coordinate) for coordinate in unpack_axes(position_ids)]  # [(cos, sin), ...]
        dim = per_axis[0][0].shape[-1]
        slot_axis = torch.arange(dim // 2, device=position_ids.device) % AXES  # (D/2,)
        column_axis = torch.cat([slot_axis, slot_axis])  # (D,): cos and sin repeat the D/2 angles
        columns = torch.arange(dim, device=position_ids.device)
        cos = torch.stack([c for c, _ in per_axis], dim=-1)[..., columns, column_axis]  # (B, L, D)
        sin = torch.stack([s for _, s in per_axis], dim=-1)[..., columns, column_axis]  # (B, L, D)
        return cos, sin


class OmniPositions(PositionScheme):
    diffusers_compatible = False

    def install(self, llm: nn.Module) -> None:
        rotary = getattr(llm, "rotary_emb", None)
        if isinstance(rotary, AxialRotary):
            return
        if not isinstance(rotary, nn.Module):
            raise ValueError(
                f"the omni position scheme wraps the backbone's `rotary_emb` module, and "
                f"{type(llm).__name__} has none (HF decoders of the Llama family have one: Llama, "
                "Phi-3, Qwen2, Mistral, Gemma)"
            )
        llm.rotary_emb = AxialRotary(rotary)

    def position_ids(self, layout: SequenceLayout) -> Tensor:
        if "_omni_positions" not in layout.__dict__:  # once per layout: a sampler asks every step
            object.__setattr__(layout, "_omni_positions", self._compute(layout))  # frozen: set once, bypassing it
        return layout.__dict__["_omni_positions"]

    @staticmethod
    def _compute(layout: SequenceLayout) -> Tensor:
        image = (layout.span_ids > 0) & layout.valid  # (B, L)
        if layout.span_widths is None or bool((image & (layout.span_widths < 1)).any()):
            raise ValueError(
                "the omni position scheme needs each image's token grid: tokenize with (rows, "
                "columns) per image, not token counts (OmniGenProcessor.tokenize / batch / pack)"
            )
        sequential = layout.position_ids()  # (B, L)
        rows, length = sequential.shape
        # Where each span starts: its smallest sequential position (span ids are unique within a row).
        first = torch.full((rows, length + 1), length, device=sequential.device)
        first = first.scatter_reduce(1, layout.span_ids, sequential, reduce="amin").gather(1, layout.span_ids)  # (B, L)
        cell = sequential - first  # (B, L): the token's index in its image, row-major
        width = layout.span_widths.clamp(min=1)
        return pack_axes(
            torch.where(image, first, sequential),
            torch.where(image, cell // width, sequential),
            torch.where(image, cell % width, sequential),
        )  # (B, L)
