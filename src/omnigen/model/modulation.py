"""adaLN in every decoder layer: an option beside the paper's time conditioning (the time token and
the final layer's adaLN only).

For the time token and the output-image tokens, every decoder layer's attention and MLP blocks see
their normed input shifted and scaled by the time embedding, and their output gated (DiT's adaLN;
the gate is 1 + g, and g, shift and scale start at zero, so an untrained modulation leaves the LLM
exactly as it is: a pretrained backbone keeps its function). Condition tokens (text, input images)
are never modulated, so the condition prefix stays independent of t and its kv-cache still holds.

Any HF decoder of the Llama family works unchanged: each of its layers has `input_layernorm`,
`self_attn`, `post_attention_layernorm` and `mlp`, and forward hooks on those four apply the
modulation. Which tokens belong to which sample is set before every LLM call (`use`); it stays set
until the next call, so activation checkpointing recomputes a layer with the same modulation.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

BLOCKS = ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp")


def decoder_layers(llm: nn.Module) -> list[nn.Module]:
    layers = [m for m in llm.modules() if all(isinstance(getattr(m, name, None), nn.Module) for name in BLOCKS)]
    if not layers:
        raise ValueError(
            f"{type(llm).__name__} has no decoder layers with {', '.join(BLOCKS)}: adaLN in every layer "
            "needs a Llama-family decoder (Llama, Phi-3, Qwen2, Mistral, Gemma)"
        )
    return layers


class LayerModulation(nn.Module):
    def __init__(self, llm: nn.Module, hidden_size: int) -> None:
        super().__init__()
        layers = decoder_layers(llm)
        # Per layer: shift, scale and gate of the attention block, then of the MLP block.
        self.modulation = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size)) for _ in layers
        )
        for mlp in self.modulation:
            nn.init.zeros_(mlp[1].weight)
            nn.init.zeros_(mlp[1].bias)
        self.state: tuple[Tensor, Tensor] | None = None  # (time embedding (S, D), token owner (B, L))
        self.current: dict[int, list[Tensor]] = {}  # layer -> its six (B, L, D) token modulations, this call
        for i, layer in enumerate(layers):
            layer.input_layernorm.register_forward_hook(partial(self._modulate_norm, i, 0))
            layer.self_attn.register_forward_hook(partial(self._gate, i, 2))
            layer.post_attention_layernorm.register_forward_hook(partial(self._modulate_norm, i, 3))
            layer.mlp.register_forward_hook(partial(self._gate, i, 5))

    def use(self, time_embedding: Tensor | None, owner: Tensor | None = None) -> None:
        """Modulate token (b, l) of the next LLM call by sample owner[b, l]'s row of `time_embedding`
        (S, D); owner -1 (or no time embedding at all) leaves a token as it is."""
        self.state = None if time_embedding is None else (time_embedding, owner)
        self.current = {}

    def _token_modulations(self, i: int) -> list[Tensor]:
        embedding, owner = self.state
        per_sample = self.modulation[i](embedding)  # (S, 6D)
        per_token = per_sample[owner.clamp(min=0)] * (owner >= 0)[..., None].to(per_sample.dtype)  # (B, L, 6D)
        return list(per_token.chunk(6, dim=-1))  # shift, scale, gate (attention); shift, scale, gate (MLP)

    def _modulate_norm(self, i: int, first: int, module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
        if self.state is None:
            return output
        if first == 0:  # a layer's first hook: its modulations for this call (recomputed under checkpointing)
            self.current[i] = self._token_modulations(i)
        shift, scale = self.current[i][first], self.current[i][first + 1]
        return output * (1 + scale.to(output.dtype)) + shift.to(output.dtype)  # (B, L, D)

    def _gate(self, i: int, index: int, module: nn.Module, inputs: Any, output: Any) -> Any:
        if self.state is None:
            return output
        gate = 1 + self.current[i][index]
        if isinstance(output, tuple):  # attention returns (output, weights)
            return (output[0] * gate.to(output[0].dtype), *output[1:])
        return output * gate.to(output.dtype)


def left_padded_owner(rows: int, length: int, modulated: int, device: torch.device) -> Tensor:
    """(rows, length): row b owns its last `modulated` tokens (time token and output image), -1 elsewhere."""
    owner = torch.full((rows, length), -1, dtype=torch.long, device=device)
    owner[:, length - modulated :] = torch.arange(rows, device=device)[:, None]
    return owner


def packed_owner(rows: int, length: int, time_index: Tensor, output_index: Tensor, output_tokens: list[int]) -> Tensor:
    """(rows, length): sample s owns its time token and its output tokens in the packed rows, -1 elsewhere."""
    samples = torch.arange(len(output_tokens), device=time_index.device)
    owner = torch.full((rows * length,), -1, dtype=torch.long, device=time_index.device)
    owner[time_index] = samples
    owner[output_index] = samples.repeat_interleave(torch.tensor(output_tokens, device=samples.device))
    return owner.view(rows, length)
