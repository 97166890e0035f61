"""Any Hugging Face decoder-only LM (Phi-3 in the paper), built from a config or a local directory.

We take the base `*Model` (no LM head): OmniGen reads hidden states, never logits.
"""

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, PreTrainedModel

from omnigen.model.backbone.base import check_backbone


def build_hf_backbone(
    config: dict[str, Any] | None = None,
    pretrained_path: str | None = None,
    attn_implementation: str = "sdpa",
    gradient_checkpointing: bool = False,
    embedding_std: float | None = None,
) -> PreTrainedModel:
    """Exactly one of `config` (a dict with `model_type`, random init) or `pretrained_path`
    (a local HF directory; the LM head, if saved, is dropped) must be given.

    `embedding_std` (random init only): the std of the token embeddings, instead of the config's
    `initializer_range` that HF gives every weight. Image tokens enter the LLM with entries of
    order 1 (patch embedding + 2D sin-cos positions); text embeddings drawn at 0.02 are a faint
    signal beside what the layers add to their residual stream (a hypothesis: the speedrun's
    10-minute screen at std 1 measured no gain, experiments/speedrun).
    """
    if (config is None) == (pretrained_path is None):
        raise ValueError("build_hf_backbone needs exactly one of `config` or `pretrained_path`")
    if embedding_std is not None and (pretrained_path is not None or embedding_std <= 0):
        raise ValueError(
            f"embedding_std must be > 0 and only re-draws a random init, got {embedding_std} "
            f"with pretrained_path={pretrained_path!r}"
        )
    if pretrained_path is not None:
        path = Path(pretrained_path)
        if not path.is_dir():
            raise FileNotFoundError(f"backbone directory not found: {path} (weights load from local paths only)")
        # fp32 whatever the saved dtype (Phi-3 ships bf16): precision is the trainer's choice
        # (autocast), and the embedders around the LLM are fp32.
        model = AutoModel.from_pretrained(
            str(path), local_files_only=True, attn_implementation=attn_implementation, dtype=torch.float32
        )
        model.train()  # from_pretrained returns eval mode, where HF skips gradient checkpointing
    else:
        config = dict(config)
        if "model_type" not in config:
            raise ValueError("backbone config needs a `model_type` (e.g. 'phi3')")
        hf_config = AutoConfig.for_model(config.pop("model_type"), **config)
        hf_config._attn_implementation = attn_implementation
        model = AutoModel.from_config(hf_config, attn_implementation=attn_implementation)
        if embedding_std is not None:
            embeddings = model.get_input_embeddings()
            with torch.no_grad():
                embeddings.weight.normal_(0.0, embedding_std)
                if embeddings.padding_idx is not None:
                    embeddings.weight[embeddings.padding_idx].zero_()  # as HF leaves it
    check_backbone(model)
    if gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return model


def backbone_architecture_config(model: PreTrainedModel) -> dict[str, Any]:
    """A `_target_` config that rebuilds `model`'s architecture with random weights."""
    config = model.config.to_diff_dict()
    config["model_type"] = model.config.model_type
    for key in (
        "_name_or_path",
        "architectures",
        "transformers_version",
        "_attn_implementation_autoset",
        "dtype",
        "torch_dtype",
    ):
        config.pop(key, None)
    return {
        "_target_": f"{__name__}.build_hf_backbone",
        "config": config,
        "attn_implementation": model.config._attn_implementation,
        "gradient_checkpointing": bool(model.is_activation_checkpointing),
    }
