"""Attention-mask strategies: who may attend to whom in `[condition | time | output image]`.

A strategy sees a batch as a `SequenceLayout` (one span id per token, 0 for text, time and
padding; a distinct positive id per image span) and returns which query may attend to which
key. The dense additive form is what HF backbones take on CPU.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SequenceLayout:
    """Token roles for a left-padded batch.

    span_ids: (B, L) int, 0 for text / time token / padding, k > 0 for tokens of image span k
        (unique within a row; the output image is one of the spans).
    valid: (B, L) bool, False on padding.
    num_output_tokens: the output image occupies the last `num_output_tokens` positions of
        every row (left padding keeps it there), directly after the time token.
    """

    span_ids: Tensor
    valid: Tensor
    num_output_tokens: int

    def __post_init__(self) -> None:
        if self.span_ids.shape != self.valid.shape or self.span_ids.dim() != 2:
            raise ValueError(
                f"span_ids {tuple(self.span_ids.shape)} and valid {tuple(self.valid.shape)} "
                "must both be (B, L)"
            )
        if not 0 <= self.num_output_tokens < self.span_ids.shape[1]:
            raise ValueError(f"num_output_tokens={self.num_output_tokens} does not fit L={self.span_ids.shape[1]}")

    @property
    def prefix_length(self) -> int:
        """Length of the condition prefix (everything before the time token)."""
        return self.span_ids.shape[1] - self.num_output_tokens - 1

    def position_ids(self) -> Tensor:
        """Contiguous 1-D RoPE positions over the valid tokens of each row; padding gets 0."""
        return (self.valid.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, L)


class MaskStrategy(ABC):
    """Base class: implement `allowed`; the dense additive mask follows."""

    #: True when no token before the output image attends to a later token, so the condition
    #: prefix's keys/values do not depend on the time step and can be cached across steps.
    prefix_independent: bool

    @abstractmethod
    def allowed(self, layout: SequenceLayout) -> Tensor:
        """(B, L, L) bool: [b, q, k] is True where query q may attend to key k."""

    def dense(self, layout: SequenceLayout, dtype: torch.dtype = torch.float32) -> Tensor:
        """(B, 1, L, L) additive mask: 0 where allowed, the dtype's minimum where blocked."""
        allowed = self.allowed(layout)
        # A padding query attends only to itself, so no softmax row is empty.
        eye = torch.eye(allowed.shape[-1], dtype=torch.bool, device=allowed.device)
        allowed = allowed | (eye & ~layout.valid[:, :, None])
        mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
        return mask[:, None]  # (B, 1, L, L)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def causal_pairs(layout: SequenceLayout) -> Tensor:
    """(B, L, L) bool: key at or before query, and key not padding."""
    length = layout.span_ids.shape[1]
    idx = torch.arange(length, device=layout.span_ids.device)
    causal = idx[:, None] >= idx[None, :]  # (L, L)
    return causal[None] & layout.valid[:, None, :]


def same_image_pairs(layout: SequenceLayout) -> Tensor:
    """(B, L, L) bool: query and key lie in the same image span."""
    span = layout.span_ids
    return (span[:, :, None] == span[:, None, :]) & (span[:, :, None] > 0)
