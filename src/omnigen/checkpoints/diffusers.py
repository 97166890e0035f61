"""omnigen's native module -> a diffusers 0.42 OmniGenPipeline directory (`python -m omnigen.convert to-diffusers`).

Native -> diffusers key mapping (OmniGenTransformer2DModel):
    llm.embed_tokens / llm.norm                  -> embed_tokens / norm
    llm.layers.i.self_attn.qkv_proj              -> layers.i.self_attn.to_q, to_k, to_v (row split q|k|v)
    llm.layers.i.self_attn.o_proj                -> layers.i.self_attn.to_out.0
    llm.layers.i.{input,post_attention}_layernorm, mlp.{gate_up,down}_proj -> same, `llm.` dropped
    x_embedder.proj / input_x_embedder.proj      -> patch_embedding.output_image_proj / input_image_proj
    pos_embed                                    -> patch_embedding.pos_embed
    time_token.mlp.{0,2} / t_embedder.mlp.{0,2}  -> time_token.linear_{1,2} / t_embedder.linear_{1,2}
    final_layer.adaLN_modulation.1 / .linear     -> norm_out.linear / proj_out
Diffusers' transformer takes t in [0, 1] (t = 0 noise) like ours; the exported scheduler
(FlowMatchEulerDiscreteScheduler, invert_sigmas, one train timestep) walks the same Euler grid.

Assumptions diffusers' OmniGenPipeline hard-codes (export_diffusers warns when the model breaks
one that changes results):
  * 16 pixels per token (an 8x VAE with patch 2): it counts image tokens as H·W/256;
  * the OmniGen-v1 Phi-3 chat template (omnigen.processor.RELEASE_TEMPLATE) around every prompt;
  * the tokenizer adds BOS id 1 itself when called (a leading 1 is stripped from each text chunk
    after an image) and nothing else;
  * pad id 2 and image placeholder id 0 (harmless: padding is masked and placeholders are
    replaced by image tokens);
  * the VAE has no shift_factor; input images take a posterior sample (ours: its mean); the
    unconditional branch uses a fixed long negative prompt (ours: `negative_instruction`).
Its processor imports torchvision, absent here. To run the full-pipeline test with input images:
    pip install "torchvision==0.28.*" --index-url https://download.pytorch.org/whl/cpu  # pairs with torch 2.13
    python -m pytest tests/test_convert.py -k diffusers_pipeline
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor

from omnigen.checkpoints.atomic_io import atomic_directory
from omnigen.checkpoints.release_layout import name_keys
from omnigen.model.masks import OmniGenMask
from omnigen.model.omnigen import OmniGen
from omnigen.model.vae.autoencoder_kl import AutoencoderKLVAE
from omnigen.module import OmniGenLitModule
from omnigen.processor import RELEASE_TEMPLATE
from omnigen.training.finetune import has_lora
from omnigen.utils.cli import UserError

log = logging.getLogger(__name__)

PIPELINE_PIXELS_PER_TOKEN, PIPELINE_BOS, PIPELINE_PAD = 16, 1, 2


# ---- native -> diffusers -----------------------------------------------------------------
_RENAMES = {
    "pos_embed": "patch_embedding.pos_embed",
    "llm.embed_tokens.weight": "embed_tokens.weight",
    "llm.norm.weight": "norm.weight",
    **{
        f"{ours}.proj.{p}": f"patch_embedding.{theirs}.{p}"
        for ours, theirs in (("x_embedder", "output_image_proj"), ("input_x_embedder", "input_image_proj"))
        for p in ("weight", "bias")
    },
    **{
        f"{m}.mlp.{i}.{p}": f"{m}.linear_{j}.{p}"
        for m in ("time_token", "t_embedder")
        for i, j in ((0, 1), (2, 2))
        for p in ("weight", "bias")
    },
    **{
        f"final_layer.{ours}.{p}": f"{theirs}.{p}"
        for ours, theirs in (("adaLN_modulation.1", "norm_out.linear"), ("linear", "proj_out"))
        for p in ("weight", "bias")
    },
}
_LAYER_KEY = re.compile(r"llm\.layers\.(\d+)\.(.+)")
_LAYER_SAME = {
    "input_layernorm.weight",
    "post_attention_layernorm.weight",
    "mlp.gate_up_proj.weight",
    "mlp.down_proj.weight",
}


def to_diffusers_state_dict(
    state: dict[str, Tensor], num_heads: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype | None = None
) -> dict[str, Tensor]:
    """Release/native names -> OmniGenTransformer2DModel names; any other key is an error."""
    out, unknown = {}, set()
    for key, value in state.items():
        value = value.detach().to("cpu", dtype if dtype is not None and value.is_floating_point() else value.dtype)
        layer = _LAYER_KEY.fullmatch(key)
        if key in _RENAMES:
            out[_RENAMES[key]] = value
        elif layer and layer[2] in _LAYER_SAME:
            out[f"layers.{layer[1]}.{layer[2]}"] = value
        elif layer and layer[2] == "self_attn.o_proj.weight":
            out[f"layers.{layer[1]}.self_attn.to_out.0.weight"] = value
        elif layer and layer[2] == "self_attn.qkv_proj.weight":
            # (H·d + 2·KV·d, D) rows: queries, then keys, then values. Cloned: safetensors refuses shared storage.
            q, k, v = value.split([num_heads * head_dim, num_kv_heads * head_dim, num_kv_heads * head_dim])
            for name, part in (("to_q", q), ("to_k", k), ("to_v", v)):
                out[f"layers.{layer[1]}.self_attn.{name}.weight"] = part.clone()
        else:
            unknown.add(key)
    if unknown:
        raise ValueError(f"no diffusers name for {len(unknown)} key(s): {name_keys(unknown)}")
    return out


def diffusers_transformer_config(transformer: OmniGen) -> dict[str, Any]:
    """OmniGenTransformer2DModel's config for `transformer`, or a UserError naming what it cannot express."""
    c = transformer.llm.config
    if not transformer.positions.diffusers_compatible:
        raise UserError(
            f"position scheme {transformer.positions!r} cannot be expressed in diffusers' "
            "OmniGenTransformer2DModel, whose rotary embedding takes one 1-D position per token "
            "(model/positions=sequential exports)"
        )
    if transformer.layer_modulation is not None:
        raise UserError(
            "adaLN in every decoder layer (model.modulate_layers=true) has no counterpart in diffusers' "
            "OmniGenTransformer2DModel, which conditions on t through its time token and final layer only"
        )
    if transformer.prediction != "velocity":
        raise UserError(
            f"model.prediction={transformer.prediction!r}: diffusers' OmniGenTransformer2DModel outputs "
            "the velocity (model.prediction=velocity exports)"
        )
    if c.model_type != "phi3":
        raise UserError(
            f"diffusers' OmniGenTransformer2DModel is the Phi-3 architecture (fused qkv_proj and "
            f"gate_up_proj, RMSNorm, SiLU); this backbone is {c.model_type!r}"
        )
    heads, kv_heads = c.num_attention_heads, c.num_key_value_heads or c.num_attention_heads
    head_dim = c.hidden_size // heads
    if kv_heads != heads:
        raise UserError(
            f"grouped-query attention ({kv_heads} key/value heads for {heads} query heads): diffusers' "
            "OmniGen attention processor does not repeat key/value heads"
        )
    if (declared := getattr(c, "head_dim", None)) not in (None, head_dim) or c.hidden_act != "silu":
        raise UserError(
            f"diffusers' OmniGen needs head_dim = hidden/heads and SiLU; got head_dim={declared}, "
            f"hidden_act={c.hidden_act!r}"
        )
    rope = dict(c.rope_parameters or {})
    rope_type = rope.get("rope_type", "default")
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise UserError(
            f"partial rotary embeddings ({rope['partial_rotary_factor']}) cannot be expressed in diffusers' OmniGen"
        )
    if rope_type == "default":  # identity factors; equal lengths so diffusers applies no attention scaling
        short = long = [1.0] * (head_dim // 2)
        original = max_positions = c.max_position_embeddings
    elif rope_type == "longrope":
        short, long = [float(f) for f in rope["short_factor"]], [float(f) for f in rope["long_factor"]]
        original = rope.get("original_max_position_embeddings", c.original_max_position_embeddings)
        max_positions = c.max_position_embeddings
        if rope.get("factor") is not None:  # diffusers scales by max/original: encode the factor there
            max_positions = round(rope["factor"] * original)
            if abs(max_positions - rope["factor"] * original) > 1e-6:
                raise UserError(f"longrope factor {rope['factor']} × {original} is not an integer length")
        scale = max_positions / original
        implied = 1.0 if scale <= 1.0 else math.sqrt(1 + math.log(scale) / math.log(original))
        if rope.get("attention_factor") is not None and abs(rope["attention_factor"] - implied) > 1e-6:
            raise UserError(
                f"longrope attention_factor {rope['attention_factor']} differs from the {implied:.6g} "
                "diffusers derives from the lengths"
            )
    else:
        raise UserError(
            f"rope type {rope_type!r} cannot be expressed by diffusers' OmniGen rotary embedding "
            "(only default and longrope/su)"
        )
    if transformer.time_token.frequency_dim != transformer.t_embedder.frequency_dim:
        raise UserError("the two timestep embedders use different sinusoid sizes; diffusers shares one")
    return {
        "in_channels": transformer.in_channels,
        "patch_size": transformer.patch_size,
        "hidden_size": c.hidden_size,
        "rms_norm_eps": c.rms_norm_eps,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "intermediate_size": c.intermediate_size,
        "num_layers": c.num_hidden_layers,
        "pad_token_id": c.pad_token_id,
        "vocab_size": c.vocab_size,
        "max_position_embeddings": max_positions,
        "original_max_position_embeddings": original,
        "rope_base": rope.get("rope_theta", 10000.0),
        "rope_scaling": {"short_factor": short, "long_factor": long},
        "pos_embed_max_size": transformer.pos_embed_max_size,
        "time_step_dim": transformer.time_token.frequency_dim,
        "flip_sin_to_cos": True,
        "downscale_freq_shift": 0,
        "timestep_activation_fn": "silu",  # sinusoid [cos, sin], t unscaled
    }


def write_diffusers_transformer(transformer: OmniGen, out_dir: str | Path, dtype: torch.dtype | None = None) -> Path:
    """`config.json` + `diffusion_pytorch_model.safetensors`, loadable by OmniGenTransformer2DModel.from_pretrained."""
    import diffusers

    out_dir = Path(out_dir)
    config = diffusers_transformer_config(transformer)
    state = to_diffusers_state_dict(
        transformer.state_dict(),
        config["num_attention_heads"],
        config["num_key_value_heads"],
        config["hidden_size"] // config["num_attention_heads"],
        dtype,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"_class_name": "OmniGenTransformer2DModel", "_diffusers_version": diffusers.__version__}
    (out_dir / "config.json").write_text(json.dumps(meta | config, indent=2))
    save_file(
        {k: v.contiguous() for k, v in state.items()},
        str(out_dir / "diffusion_pytorch_model.safetensors"),
        metadata={"format": "pt"},
    )
    return out_dir


def diffusers_inputs(
    module: OmniGenLitModule, batch: Any, latents: list[Tensor], x: Tensor, t: Tensor
) -> dict[str, Any]:
    """Our prepared prompt batch as OmniGenTransformer2DModel's keyword arguments: a 3-D 0/1 mask
    and, per row, the [start, end) token spans of its input images."""
    spans = {}
    for b, row in enumerate(batch.image_token_mask.tolist()):
        edges = np.flatnonzero(np.diff([0, *map(int, row), 0]))  # run starts and ends, alternating
        if len(edges):
            spans[b] = [[int(s), int(e)] for s, e in zip(edges[::2], edges[1::2], strict=True)]
    return dict(
        hidden_states=x,
        timestep=t,
        input_ids=batch.input_ids,
        input_img_latents=[z[None] for z in latents],
        input_image_sizes=spans,
        attention_mask=module.transformer.mask.allowed(batch.layout).float(),
        position_ids=batch.layout.position_ids(),
    )


def pipeline_mismatches(module: OmniGenLitModule) -> list[str]:
    """Where `module` breaks an assumption of diffusers' OmniGenPipeline that changes its results."""
    problems = []
    if module.pixels_per_token != PIPELINE_PIXELS_PER_TOKEN:
        problems.append(
            f"it counts {PIPELINE_PIXELS_PER_TOKEN} pixels per token (8x VAE, patch 2); this model has "
            f"{module.vae.downsample_factor}x{module.transformer.patch_size} = {module.pixels_per_token}"
        )
    processor = module.processor
    if processor.template != RELEASE_TEMPLATE:
        problems.append(
            f"it wraps prompts in the OmniGen-v1 template, this model was trained with {processor.template!r}"
        )
    tokenizer = processor.tokenizer
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    called = tokenizer("a")["input_ids"]
    ours_bos = tokenizer.bos_token_id if processor.add_bos else None
    if ours_bos != PIPELINE_BOS or called != [PIPELINE_BOS, *plain]:
        problems.append(
            f"it relies on the tokenizer adding BOS id {PIPELINE_BOS} (and nothing else) when called; "
            f"this tokenizer gives {called} for {plain} and omnigen prepends BOS {ours_bos}"
        )
    if tokenizer.pad_token_id != PIPELINE_PAD:
        problems.append(
            f"it pads with id {PIPELINE_PAD}, this tokenizer with {tokenizer.pad_token_id} "
            "(harmless: padding is masked)"
        )
    if type(module.transformer.mask) is not OmniGenMask:
        problems.append(
            f"it builds the paper's attention mask (causal text, bidirectional images); this model was "
            f"trained with {module.transformer.mask!r}"
        )
    if getattr(module.vae, "shift_factor", 0.0):
        problems.append(f"it ignores the VAE's shift_factor ({module.vae.shift_factor})")
    return problems


def export_diffusers(
    module: OmniGenLitModule,
    out_dir: str | Path,
    transformer_only: bool = False,
    dtype: torch.dtype | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the diffusers 0.42 OmniGenPipeline layout (transformer/, vae/, tokenizer/, scheduler/,
    model_index.json), or `transformer/` alone. Assembled beside `out_dir`, then moved into place."""
    import diffusers
    from diffusers import FlowMatchEulerDiscreteScheduler

    if not transformer_only and not isinstance(module.vae, AutoencoderKLVAE):
        raise UserError(
            f"diffusers' OmniGenPipeline needs an AutoencoderKL; this module uses {type(module.vae).__name__}. "
            "Export the transformer alone with transformer_only=True (CLI: --transformer-only)"
        )
    if has_lora(module.transformer):
        raise UserError(
            "this module has LoRA adapters: merge them first (omnigen.training.finetune.merge_lora(module); "
            "the CLI does it)"
        )
    diffusers_transformer_config(module.transformer)  # fail before writing anything
    if not transformer_only and (problems := pipeline_mismatches(module)):
        log.warning(
            "diffusers' OmniGenPipeline will not reproduce this model exactly:\n  - %s", "\n  - ".join(problems)
        )
    with atomic_directory(out_dir, overwrite) as tmp:
        write_diffusers_transformer(module.transformer, tmp / "transformer", dtype)
        if not transformer_only:
            module.vae.vae.save_pretrained(tmp / "vae")
            tokenizer = module.processor.tokenizer
            tokenizer.save_pretrained(tmp / "tokenizer")
            # t in [0, 1] with t = 0 noise: sigmas inverted, one train timestep (as diffusers' OmniGen conversion
            # script).
            FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, invert_sigmas=True).save_pretrained(
                tmp / "scheduler"
            )
            index = {
                "_class_name": "OmniGenPipeline",
                "_diffusers_version": diffusers.__version__,
                "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
                "tokenizer": ["transformers", _tokenizer_class_name(tokenizer)],
                "transformer": ["diffusers", "OmniGenTransformer2DModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            }
            (tmp / "model_index.json").write_text(json.dumps(index, indent=2))
    return Path(out_dir)


def _tokenizer_class_name(tokenizer: Any) -> str:
    import transformers  # diffusers imports the tokenizer's class by name from transformers

    for cls in type(tokenizer).__mro__:
        if getattr(transformers, cls.__name__, None) is cls:
            return cls.__name__
    return "PreTrainedTokenizerFast"


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
