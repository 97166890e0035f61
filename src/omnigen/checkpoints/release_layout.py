"""Reading the released OmniGen-v1 layout: its weights, Phi-3 config and tokenizer (omnigen.checkpoints.release
builds a module from them; fine-tuning from a release reads them through `load_initial_weights`).

Released layout (read from its code): `model.safetensors` (or `model.pt`, a plain `torch.save`d
state dict), the Phi-3 `config.json`, tokenizer files, optionally `vae/` (a diffusers AutoencoderKL;
without it the release downloads stabilityai/sdxl-vae, we never do: pass `vae_path`). `pos_embed`
is a persistent buffer loaded strictly, so checkpoints carry it (192×192 grid). Fine-tunes are
saved in the training dtype (bf16 by default) and the release casts to bf16 after loading; we load
float32. Our parameter names are the release's, so importing is a strict key check.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from omnigen.checkpoints.format import RELEASE_CONFIG, RELEASE_WEIGHTS, CheckpointError
from omnigen.model.backbone.hf import build_hf_backbone
from omnigen.processor import load_tokenizer

if TYPE_CHECKING:
    from omnigen.model.omnigen import OmniGen

RELEASE_POS_GRID = 192  # the release never passes another pos_embed_max_size
# Keys of a config.json that describe the file, not the architecture.
CONFIG_BOOKKEEPING = ("_name_or_path", "architectures", "auto_map", "torch_dtype", "dtype", "transformers_version")


def name_keys(keys: set[str], limit: int = 5) -> str:
    """The first few of `keys`, sorted, and how many there are in all."""
    names = sorted(keys)
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def read_release_weights(release_dir: Path) -> dict[str, Tensor]:
    for name in RELEASE_WEIGHTS:
        path = release_dir / name
        if path.is_file():
            if path.suffix == ".safetensors":
                state = load_file(str(path), device="cpu")
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
            # Non-persistent in every Phi-3 version we know, but harmless if an old one saved it.
            return {k: v for k, v in state.items() if not k.endswith("rotary_emb.inv_freq")}
    raise CheckpointError(f"{release_dir} has none of {', '.join(RELEASE_WEIGHTS)}: not an OmniGen-v1 release")


def release_backbone(
    release_dir: str, attn_implementation: str = "sdpa", gradient_checkpointing: bool = False
) -> torch.nn.Module:
    """The release's Phi-3 (its config.json, random weights) as a backbone plugin, for fine-tuning it
    (configs/model/backbone/omnigen_v1.yaml); its checkpoints record the config, not this path."""
    config = json.loads((Path(release_dir) / RELEASE_CONFIG).read_text())
    return build_hf_backbone(
        config=release_backbone_config(config),
        attn_implementation=attn_implementation,
        gradient_checkpointing=gradient_checkpointing,
    )


def load_release_state(transformer: OmniGen, state: dict[str, Tensor], what: str) -> None:
    """Load release-layout weights into `transformer` (float32), strictly: every name and shape must match."""
    own = transformer.state_dict()
    check_keys(set(own), set(state), f"{what}'s weights", optional=frozenset({"pos_embed"}))
    wrong = {k for k, v in state.items() if v.shape != own[k].shape}
    if wrong:
        raise CheckpointError(
            f"{what}: shape mismatch against the model's config: "
            + "; ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(wrong)[:5])
        )
    weights = {k: v.float() for k, v in state.items()}
    if "pos_embed" in state:
        weights["pos_embed"] = checked_pos_embed(state["pos_embed"], own["pos_embed"])
    transformer.load_state_dict(weights, strict="pos_embed" in weights)


def release_backbone_config(config: dict[str, Any]) -> dict[str, Any]:
    """The release's Phi-3 config.json as a build_hf_backbone config.

    Phi-3 (128k) configs keep `original_max_position_embeddings` at the top level beside
    `rope_scaling` ("su"); transformers 5 wants it inside the rope parameters too.
    """
    config = {k: v for k, v in config.items() if k not in CONFIG_BOOKKEEPING}
    rope = config.get("rope_scaling")
    if isinstance(rope, dict) and "original_max_position_embeddings" in config:
        config["rope_scaling"] = {
            "original_max_position_embeddings": config["original_max_position_embeddings"],
            **rope,
        }
    return config


def check_keys(expected: set[str], found: set[str], what: str, optional: frozenset[str] = frozenset()) -> None:
    missing, unexpected = expected - found - optional, found - expected
    problems = [f"missing {len(missing)}: {name_keys(missing)}"] if missing else []
    problems += [f"unexpected {len(unexpected)}: {name_keys(unexpected)}"] if unexpected else []
    if problems:
        raise CheckpointError(f"{what} does not match the OmniGen-v1 layout: " + "; ".join(problems))


def load_release_tokenizer(path: str | Path) -> Any:
    """The tokenizer files of the release, read apart from its config.json: AutoTokenizer would
    parse that legacy Phi-3 config, which transformers 5 rejects (see release_backbone_config)."""
    release_dir, skip = Path(path), {RELEASE_CONFIG, *RELEASE_WEIGHTS}
    with tempfile.TemporaryDirectory() as tmp:
        for file in release_dir.iterdir():
            if file.is_file() and file.name not in skip:
                shutil.copy(file, tmp)
        return load_tokenizer(tmp)


def checked_pos_embed(saved: Tensor, computed: Tensor) -> Tensor:
    """The saved table if it is the 2D sin-cos table we compute; a float32 save is kept bit for bit,
    a lower-precision one (a bf16 fine-tune) is replaced by the exact table it rounds."""
    tolerance = 1e-5 if saved.dtype == torch.float32 else 1e-2
    diff = (saved.float() - computed).abs().max().item()
    if diff > tolerance:
        raise CheckpointError(
            f"pos_embed differs from the 2D sin-cos table omnigen computes by {diff:.3g}: "
            "this checkpoint's position embedding is not the release's"
        )
    return saved.float() if saved.dtype == torch.float32 else computed
