"""The released OmniGen-v1 directory -> an OmniGenLitModule (`python -m omnigen.convert from-release`).

The module is the paper preset (configs/model/paper.yaml, composed as `omnigen.fit model=paper` would) with
the release's VAE, Phi-3 and tokenizer in it, and its patch size and position grid read from its weights;
the training entries are the paper's and only matter for fine-tuning.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from omnigen.checkpoints.format import CheckpointError, path_kind
from omnigen.checkpoints.release_layout import (
    RELEASE_POS_GRID,
    load_release_state,
    load_release_tokenizer,
    read_release_weights,
    release_backbone,
)
from omnigen.config import compose_fit
from omnigen.model.backbone.hf import backbone_architecture_config
from omnigen.model.vae.autoencoder_kl import AutoencoderKLVAE
from omnigen.module import OmniGenLitModule, build_module
from omnigen.processor import RELEASE_TEMPLATE
from omnigen.utils.cli import MissingPath, missing_path

log = logging.getLogger(__name__)


def paper_model_config() -> dict[str, Any]:
    """configs/model/paper.yaml, resolved (its `???` paths left for the caller to fill)."""
    return OmegaConf.to_container(compose_fit(["model=paper"]).model, resolve=True)


def import_release(
    release_dir: str | Path,
    vae_path: str | Path | None = None,
    attn_implementation: str = "sdpa",
    overrides: dict[str, Any] | None = None,
) -> OmniGenLitModule:
    """The released OmniGen-v1 directory as an OmniGenLitModule (float32, eval mode).

    `vae_path` (a local diffusers AutoencoderKL directory, e.g. SDXL's) takes precedence over the
    release's `vae/`. `overrides` replaces top-level entries of the rebuild config (e.g. `weighting`).
    """
    release_dir = Path(release_dir)
    check_release_dir(release_dir)
    vae_dir = Path(vae_path) if vae_path is not None else release_dir / "vae"
    if not vae_dir.is_dir():
        raise MissingPath(
            f"{release_dir} has no vae/ subfolder and no vae_path was given: pass vae_path (CLI: --vae) "
            "pointing at a local SDXL-VAE diffusers directory (nothing is downloaded)"
        )
    state = read_release_weights(release_dir)
    dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in state.values()})
    log.info("release weights in %s; loading them as float32", "/".join(dtypes))

    llm = release_backbone(str(release_dir), attn_implementation)
    hidden = llm.config.hidden_size
    embedder = state.get("x_embedder.proj.weight")
    if embedder is None or embedder.dim() != 4:
        raise CheckpointError(f"{release_dir}: no 4-D x_embedder.proj.weight, so this is not an OmniGen-v1 checkpoint")
    patch_size, in_channels = embedder.shape[-1], embedder.shape[1]  # (D, C, p, p)
    pos_grid = RELEASE_POS_GRID
    if "pos_embed" in state:
        table = state["pos_embed"]  # (1, G², D)
        pos_grid = math.isqrt(table.shape[-2])
        if table.dim() != 3 or pos_grid * pos_grid != table.shape[-2] or table.shape[-1] != hidden:
            raise CheckpointError(
                f"{release_dir}: pos_embed of shape {tuple(table.shape)} is not a square (1, G², {hidden}) table"
            )

    vae = AutoencoderKLVAE(pretrained_path=str(vae_dir))
    if vae.latent_channels != in_channels:
        raise CheckpointError(
            f"the VAE at {vae_dir} has {vae.latent_channels} latent channels, the checkpoint's embedders "
            f"take {in_channels}"
        )
    tokenizer = load_release_tokenizer(release_dir)
    paper = paper_model_config()
    config = paper | {
        "vae": vae.architecture_config(),
        "backbone": backbone_architecture_config(llm),
        "tokenizer": paper["tokenizer"] | {"path": str(release_dir)},
        "patch_size": patch_size,
        "pos_embed_max_size": pos_grid,
        "prompt_template": RELEASE_TEMPLATE,
    }
    config |= overrides or {}
    # the release's own sampling defaults (its OmniGenPipeline.__call__): what generate and the app start from
    sampling = {"num_inference_steps": 50, "guidance_scale": 3.0, "img_guidance_scale": 1.6}
    run_config = {"imported_from": str(release_dir), "vae": str(vae_dir), "sampling": sampling}
    module = build_module(config, run_config, vae=vae, backbone=llm, tokenizer=tokenizer)

    load_release_state(module.transformer, state, str(release_dir))
    return module.eval()


def check_release_dir(path: Path) -> None:
    """The CheckpointError (or MissingPath) saying what `path` is when it is not an OmniGen-v1 release."""
    kind = path_kind(path)
    if kind == "missing":
        raise missing_path(path, "expected an OmniGen-v1 release directory")
    if kind == "export":
        raise CheckpointError(f"{path} is an omnigen exported directory already: use it as it is, nothing to convert")
    if kind != "release":
        raise CheckpointError(
            f"{path} is not an OmniGen-v1 release directory: it needs config.json (Phi-3) and model.safetensors "
            "or model.pt beside its tokenizer files"
        )
