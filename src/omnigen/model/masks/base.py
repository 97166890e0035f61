"""Attention-mask strategies: who may attend to whom in `[condition | time | output image]`.

A strategy sees a batch as a `SequenceLayout` (one span id per token, 0 for text, time and
padding; a distinct positive id per image span; for packed rows, which sample each token belongs
to) and returns which query may attend to which key. No token ever attends across samples. The
dense additive form is what HF's SDPA path takes; `mask_mod` is the same rule as a FlexAttention
predicate, from which the block-sparse `BlockMask` is built (tile by tile when compiled, on CUDA).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask


@dataclass(frozen=True)
class SequenceLayout:
    """Token roles for a batch: left-padded (one sample per row) or packed (several per row).

    span_ids: (B, L) int, 0 for text / time token / padding, k > 0 for tokens of image span k
        (unique within a row; each output image is one of the spans).
    valid: (B, L) bool, False on padding.
    num_output_tokens: left-padded batches: the output image occupies the last
        `num_output_tokens` positions of every row (left padding keeps it there), directly after
        the time token. Packed batches: 0 (each sample's output lies where its batch says).
    segment_ids: packed batches: (B, L) int, s > 0 for the tokens of the row's s-th sample, 0 on
        padding. None for left-padded batches (one segment per row).
    span_widths: (B, L) int, the width in tokens of the image grid each image token belongs to (its
        row-major tokens give its rows and columns), 0 elsewhere; None where the grids are unknown
        (only position schemes with image axes need them).
    """

    span_ids: Tensor
    valid: Tensor
    num_output_tokens: int
    segment_ids: Tensor | None = None
    span_widths: Tensor | None = None

    def __post_init__(self) -> None:
        shapes = [self.span_ids.shape, self.valid.shape] + ([self.segment_ids.shape] if self.packed else [])
        shapes += [self.span_widths.shape] if self.span_widths is not None else []
        if len(set(shapes)) != 1 or self.span_ids.dim() != 2:
            raise ValueError(
                f"span_ids, valid (and segment_ids, span_widths) must all be (B, L), got {[tuple(s) for s in shapes]}"
            )
        if not 0 <= self.num_output_tokens < self.span_ids.shape[1]:
            raise ValueError(f"num_output_tokens={self.num_output_tokens} does not fit L={self.span_ids.shape[1]}")
        if self.packed and self.num_output_tokens:
            raise ValueError("a packed layout has no common output tail: num_output_tokens must be 0")

    def prefix(self) -> SequenceLayout:
        """The condition prefix alone (what a kv-cache holds)."""
        if self.packed:
            raise ValueError("a packed layout has no common condition prefix")
        end = self.prefix_length
        widths = self.span_widths[:, :end] if self.span_widths is not None else None
        return SequenceLayout(self.span_ids[:, :end], self.valid[:, :end], 0, span_widths=widths)

    @property
    def packed(self) -> bool:
        return self.segment_ids is not None

    def segments(self) -> Tensor:
        """(B, L) int: the sample each token belongs to within its row, 0 on padding."""
        return self.segment_ids if self.packed else self.valid.long()

    @property
    def prefix_length(self) -> int:
        """Length of the condition prefix (everything before the time token)."""
        return self.span_ids.shape[1] - self.num_output_tokens - 1

    def position_ids(self) -> Tensor:
        """Contiguous 1-D RoPE positions over each sample's tokens, restarting at 0 for every
        packed sample; padding gets 0. Computed once per layout (a sampler asks every step)."""
        return self._once("_positions", self._positions_of_tokens)

    def generating(self) -> Tensor:
        """(B, L) bool: True on each sample's time token and output image (what is generated), False on
        its condition and on padding. An unpacked layout without output tokens is a condition prefix
        (what a kv-cache holds): all False."""
        return self._once("_generating", self._generating_tokens)

    def _once(self, name: str, compute: Callable[[], Tensor]) -> Tensor:
        """`compute()`, stored on first use (the dataclass is frozen: set once, bypassing it)."""
        if name not in self.__dict__:
            object.__setattr__(self, name, compute())
        return self.__dict__[name]

    def _generating_tokens(self) -> Tensor:
        length = self.span_ids.shape[1]
        index = torch.arange(length, device=self.span_ids.device).expand_as(self.span_ids)  # (B, L)
        if not self.packed:
            return (index >= self.prefix_length) & self.valid & (self.num_output_tokens > 0)
        segments = self.segment_ids
        # Each sample's output image is its last span (the largest span id of its segment); its time
        # token is the one before the output's first token.
        last_span = torch.zeros(segments.shape[0], length + 1, dtype=torch.long, device=segments.device)
        last_span = last_span.scatter_reduce(1, segments, self.span_ids, reduce="amax")  # (B, L + 1)
        output = (self.span_ids == last_span.gather(1, segments)) & (self.span_ids > 0)  # (B, L)
        first = torch.full((segments.shape[0], length + 1), length, device=segments.device)
        first = first.scatter_reduce(1, segments, index.masked_fill(~output, length), reduce="amin")  # (B, L + 1)
        return (index >= first.gather(1, segments) - 1) & self.valid

    def _positions_of_tokens(self) -> Tensor:
        if not self.packed:
            return (self.valid.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, L)
        segments, length = self.segment_ids, self.segment_ids.shape[1]
        index = torch.arange(length, device=segments.device).expand_as(segments)  # (B, L)
        # The first position of each segment: samples are contiguous, so position = index - first.
        # (L + 1 slots bound the segment ids without reading them back from the device.)
        first = torch.full((segments.shape[0], length + 1), length, device=segments.device)
        first = first.scatter_reduce(1, segments, index, reduce="amin")  # (B, L + 1)
        return (index - first.gather(1, segments)).masked_fill(~self.valid, 0)  # (B, L)


#: FlexAttention's predicate: (row, head, query, key) index tensors -> True where the query may
#: attend to the key. Indices may be scalars (inside flex) or broadcastable tensors (dense).
MaskMod = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


class MaskStrategy(ABC):
    """Base class: implement `mask_mod`; the dense additive mask and the BlockMask follow from it,
    so the two attention paths cannot disagree."""

    #: True when no token before the output image attends to a later token, so the condition
    #: prefix's keys/values do not depend on the time step and can be cached across steps.
    prefix_independent: bool

    @abstractmethod
    def mask_mod(self, layout: SequenceLayout) -> MaskMod:
        """The rule for `layout`'s rows. It must refuse keys on padding and keys of other samples."""

    def allowed(self, layout: SequenceLayout) -> Tensor:
        """(B, L, L) bool: [b, q, k] is True where query q may attend to key k."""
        rows, length = layout.span_ids.shape
        index = torch.arange(length, device=layout.span_ids.device)
        head = torch.zeros((), dtype=torch.long, device=index.device)
        allowed = self.mask_mod(layout)(
            torch.arange(rows, device=index.device)[:, None, None], head, index[None, :, None], index[None, None, :]
        )  # broadcast to (B, L, L)
        return allowed.expand(rows, length, length)

    def dense(self, layout: SequenceLayout, dtype: torch.dtype = torch.float32) -> Tensor:
        """(B, 1, L, L) additive mask: 0 where allowed, the dtype's minimum where blocked."""
        allowed = self.allowed(layout)
        # A padding query attends only to itself, so no softmax row is empty.
        eye = torch.eye(allowed.shape[-1], dtype=torch.bool, device=allowed.device)
        allowed = allowed | (eye & ~layout.valid[:, :, None])
        mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
        return mask[:, None]  # (B, 1, L, L)

    def block_mask(self, layout: SequenceLayout, query_start: int = 0) -> BlockMask:
        """FlexAttention's block-sparse form for queries `query_start:` (a kv-cached step runs only
        the tail), from `mask_mod`; fully blocked tiles are skipped by the kernel. Padding queries
        see nothing (their output is ignored). On CUDA it is built compiled, tile by tile, never
        as an (L, L) tensor; eager (the CPU) materialises the mask once while building it."""
        from torch.nn.attention.flex_attention import create_block_mask

        rule, length, device = self.mask_mod(layout), layout.span_ids.shape[1], layout.span_ids.device

        def shifted(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
            return rule(b, h, q + query_start, kv)

        return create_block_mask(
            shifted,
            layout.span_ids.shape[0],
            None,
            length - query_start,
            length,
            device=device,
            _compile=device.type == "cuda",
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def same_sample(layout: SequenceLayout) -> MaskMod:
    """Key not padding and in the query's sample: what every strategy allows at most."""
    valid, segments = layout.valid, layout.segments()

    def rule(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return valid[b, kv] & (segments[b, q] == segments[b, kv])

    return rule


def causal(layout: SequenceLayout) -> MaskMod:
    """Key at or before the query, within its sample."""
    sample = same_sample(layout)

    def rule(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return (q >= kv) & sample(b, h, q, kv)

    return rule


def same_image(layout: SequenceLayout) -> MaskMod:
    """Query and key lie in the same image span (span ids are unique within a row)."""
    span = layout.span_ids

    def rule(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return (span[b, q] == span[b, kv]) & (span[b, q] > 0)

    return rule
