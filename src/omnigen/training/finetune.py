"""Fine-tuning: full or LoRA (peft) on the LLM backbone, freezing by name, initial weights from disk.

Plain arguments, so a notebook uses it without Hydra:

    module = OmniGenLitModule(..., finetune=FineTune(mode="lora", lora_rank=8, init_from="/models/OmniGen-v1"))

What trains (VAE always frozen; names are the transformer's state-dict names, e.g. `llm.layers.0.mlp.down_proj.weight`,
`x_embedder.proj.weight`; a LoRA-wrapped layer's base weight also answers to its plain name):
  * mode="full": every transformer parameter, minus the `freeze` patterns.
  * mode="lora": only the adapters (`lora_A`/`lora_B` of the `target_modules` in the LLM), plus the
    `trainable` patterns (e.g. `["x_embedder.*", "final_layer.*"]`), minus the `freeze` patterns.
Patterns are globs (fnmatch; `*` crosses dots). Each must match at least one parameter.

`init_from` loads transformer weights before the adapters are added: an OmniGen-v1 release directory
(model.safetensors/model.pt + config.json), an omnigen exported directory or a `.ckpt`. It is read
once, at build time: checkpoints hold the weights and record `init_from: null`.
A pretrained LLM alone initialises the backbone through the backbone plugin (configs/model/backbone/pretrained.yaml).

LoRA adapters live inside the LLM (peft.inject_adapter_in_model), so state-dict names become
`...qkv_proj.base_layer.weight` and `...qkv_proj.lora_A.default.weight`; the module's config records
the structure, so checkpoints and exports rebuild it before loading strictly. `merge_lora` folds them
into the base weights (a plain module); `save_lora`/`load_lora` move the adapters alone (peft's layout:
adapter_config.json + adapter_model.safetensors, loadable by peft.PeftModel.from_pretrained on the bare LLM).
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from peft import LoraConfig
from peft.functional import get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import AutoConfig

from omnigen.checkpoints.format import EXPORT_CONFIG, EXPORT_WEIGHTS, read_checkpoint
from omnigen.checkpoints.release_layout import load_release_state, read_release_weights, release_backbone_config

if TYPE_CHECKING:
    from omnigen.model.omnigen import OmniGen
    from omnigen.module import OmniGenLitModule

log = logging.getLogger(__name__)

MODES = ("full", "lora")
ADAPTER_CONFIG, ADAPTER_WEIGHTS, EXTRA_WEIGHTS = (
    "adapter_config.json",
    "adapter_model.safetensors",
    "omnigen_trainable.safetensors",
)
PEFT_PREFIX = "base_model.model."  # how peft.PeftModel names the wrapped model's tensors in adapter files


@dataclass
class FineTune:
    mode: str = "full"
    lora_rank: int = 8
    lora_alpha: float = 8.0
    lora_dropout: float = 0.0
    target_modules: str | list[str] = "attention"  # "attention", "all-linear" or module names in the LLM
    trainable: list[str] = field(default_factory=list)  # lora: patterns trained besides the adapters
    freeze: list[str] = field(default_factory=list)
    init_from: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"finetune mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "lora" and (self.lora_rank < 1 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1):
            raise ValueError(
                f"LoRA needs rank >= 1, alpha > 0, dropout in [0, 1); got {self.lora_rank}, "
                f"{self.lora_alpha}, {self.lora_dropout}"
            )
        if self.mode == "full" and self.trainable:
            raise ValueError(
                "`trainable` adds to the adapters in mode=lora; in mode=full everything trains already "
                "(use `freeze` to exclude)"
            )
        self.trainable, self.freeze = list(self.trainable), list(self.freeze)
        if not isinstance(self.target_modules, str):
            self.target_modules = list(self.target_modules)

    def architecture_config(self) -> dict[str, Any]:
        """A `_target_` config that rebuilds the structure (adapters, trainable flags) without re-reading weights."""
        return {"_target_": f"{__name__}.FineTune", **asdict(self), "init_from": None}

    def apply(self, transformer: OmniGen) -> None:
        """Load `init_from`, add the adapters, set requires_grad; in that order."""
        if self.init_from is not None:
            load_initial_weights(transformer, self.init_from)
        if self.mode == "lora":
            add_lora(transformer.llm, self.lora_rank, self.lora_alpha, self.lora_dropout, self.target_modules)
        set_trainable(transformer, self.mode == "full", self.trainable, self.freeze)
        out = transformer.final_layer.linear.weight
        if self.mode == "lora" and not out.requires_grad and not out.any():
            log.warning(
                "the final layer is zero (a fresh model) and frozen: no gradient reaches the adapters. "
                "Initialise from trained weights (init_from) or add 'final_layer.*' to `trainable`"
            )


# ---- trainable parameters ---------------------------------------------------------------------
def plain_name(name: str) -> str:
    """A parameter's name as if no adapter wrapped its layer."""
    return name.replace(".base_layer.", ".")


def is_adapter(name: str) -> bool:
    return ".lora_" in name


def match(patterns: list[str], names: list[str], what: str) -> set[str]:
    """The names any pattern matches (a name or its plain name); a pattern matching nothing is an error."""
    matched = set()
    for pattern in patterns:
        hits = {n for n in names if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(plain_name(n), pattern)}
        if not hits:
            raise ValueError(
                f"{what} pattern {pattern!r} matches no transformer parameter (names look like "
                f"{', '.join(names[:3])}, ...)"
            )
        log.info("%s pattern %r matches %d parameter tensors", what, pattern, len(hits))
        matched |= hits
    return matched


def set_trainable(transformer: nn.Module, train_base: bool, trainable: list[str], freeze: list[str]) -> None:
    """requires_grad = (adapter or base-if-full or matches `trainable`) and not matches `freeze`."""
    params = dict(transformer.named_parameters())
    names = list(params)
    extra, frozen = match(trainable, names, "trainable"), match(freeze, names, "freeze")
    for name, p in params.items():
        p.requires_grad_((train_base or is_adapter(name) or name in extra) and name not in frozen)
    total = sum(p.numel() for p in params.values())
    trained = sum(p.numel() for p in params.values() if p.requires_grad)
    log.info("fine-tuning %d of %d transformer parameters (%.2f%%)", trained, total, 100 * trained / max(total, 1))


# ---- LoRA -------------------------------------------------------------------------------------
def resolve_target_modules(llm: nn.Module, spec: str | list[str]) -> str | list[str]:
    """`spec` "attention": the Linear layers inside the LLM's attention blocks (Phi-3: qkv_proj, o_proj;
    Llama/Qwen2: q_proj, k_proj, v_proj, o_proj), as leaf names; "all-linear" goes to peft as is;
    a list is a list of module names (peft matches them as name suffixes)."""
    if not isinstance(spec, str):
        return sorted(spec)
    if spec == "all-linear":
        return spec
    if spec != "attention":
        raise ValueError(f"target_modules must be 'attention', 'all-linear' or a list of module names, got {spec!r}")
    attention = [name for name, m in llm.named_modules() if "attention" in type(m).__name__.lower()]
    found = {
        name: m
        for name, m in llm.named_modules()
        if isinstance(m, nn.Linear) and any(name.startswith(a + ".") for a in attention)
    }
    if not found:
        raise ValueError(
            f"no Linear layer inside an attention module of {type(llm).__name__}: pass target_modules explicitly"
        )
    leaves = sorted({name.rsplit(".", 1)[-1] for name in found})
    same_leaf = {
        name for name, m in llm.named_modules() if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in leaves
    }
    return leaves if same_leaf == set(found) else sorted(found)  # full names where a leaf name also occurs elsewhere


def add_lora(llm: nn.Module, rank: int, alpha: float, dropout: float, target_modules: str | list[str]) -> LoraConfig:
    """Wrap the target Linear layers of `llm` with LoRA adapters (lora_B = 0: the output is unchanged)."""
    if has_lora(llm):
        raise ValueError("this backbone already has LoRA adapters")
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        bias="none",
        target_modules=resolve_target_modules(llm, target_modules),
    )
    inject_adapter_in_model(config, llm)
    log.info("LoRA rank %d (alpha %g) on %d layers (%s)", rank, alpha, len(lora_layers(llm)), config.target_modules)
    return config


def lora_layers(model: nn.Module) -> dict[str, BaseTunerLayer]:
    return {name: m for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)}


def has_lora(model: nn.Module) -> bool:
    return bool(lora_layers(model))


def merge_lora(module: OmniGenLitModule) -> OmniGenLitModule:
    """Fold the adapters into the base weights and drop them (peft's merge per layer): a plain module
    whose config and state dict have no LoRA left. In place; returns `module`."""
    llm = module.transformer.llm
    layers = lora_layers(llm)
    if not layers:
        raise ValueError("this module has no LoRA adapters to merge")
    for name, layer in layers.items():
        layer.merge(safe_merge=True)  # raises on non-finite merged weights
        parent_name, _, child = name.rpartition(".")
        setattr(llm.get_submodule(parent_name) if parent_name else llm, child, layer.get_base_layer())
    if hasattr(llm, "peft_config"):
        del llm.peft_config
    module.finetune = None
    log.info("merged LoRA adapters into %d layers", len(layers))
    return module


def save_lora(module: OmniGenLitModule, out_dir: str | Path) -> Path:
    """The adapters alone, in peft's layout; non-adapter tensors trained beside them (`trainable`)
    go to omnigen_trainable.safetensors."""
    llm, out_dir = module.transformer.llm, Path(out_dir)
    if not has_lora(llm):
        raise ValueError("this module has no LoRA adapters to save")
    out_dir.mkdir(parents=True, exist_ok=True)
    llm.peft_config["default"].save_pretrained(str(out_dir))
    state = {PEFT_PREFIX + k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(llm).items()}
    save_file(state, str(out_dir / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    extra = {
        k: v.detach().cpu().contiguous()
        for k, v in module.transformer.named_parameters()
        if v.requires_grad and not is_adapter(k)
    }
    if extra:
        save_file(extra, str(out_dir / EXTRA_WEIGHTS), metadata={"format": "pt"})
    return out_dir


def load_lora(module: OmniGenLitModule, path: str | Path, merge: bool = False) -> OmniGenLitModule:
    """Add the adapters saved by `save_lora` to a module without any (its base), strictly; `merge`
    folds them in at once. The module's config then describes the adapters (or, merged, none)."""
    path = Path(path)
    if not (path / ADAPTER_CONFIG).is_file() or not (path / ADAPTER_WEIGHTS).is_file():
        raise FileNotFoundError(f"{path} has no {ADAPTER_CONFIG} + {ADAPTER_WEIGHTS} (written by save_lora)")
    llm, transformer = module.transformer.llm, module.transformer
    config = LoraConfig.from_pretrained(str(path))
    state = {k.removeprefix(PEFT_PREFIX): v for k, v in load_file(str(path / ADAPTER_WEIGHTS)).items()}
    add_lora(
        llm,
        config.r,
        config.lora_alpha,
        config.lora_dropout,
        config.target_modules if isinstance(config.target_modules, str) else sorted(config.target_modules),
    )
    expected = set(get_peft_model_state_dict(llm))
    if set(state) != expected:
        raise ValueError(
            f"{path}'s adapters do not fit this backbone: missing {sorted(expected - set(state))[:5]}, "
            f"unexpected {sorted(set(state) - expected)[:5]}"
        )
    set_peft_model_state_dict(llm, state)
    trainable = []
    if (path / EXTRA_WEIGHTS).is_file():
        extra = load_file(str(path / EXTRA_WEIGHTS))
        own = dict(transformer.named_parameters())
        if unknown := sorted(set(extra) - set(own)):
            raise ValueError(f"{path / EXTRA_WEIGHTS} names parameters this transformer lacks: {unknown[:5]}")
        with torch.no_grad():
            for k, v in extra.items():
                own[k].copy_(v)
        trainable = sorted(extra)
    target = config.target_modules if isinstance(config.target_modules, str) else sorted(config.target_modules)
    module.finetune = FineTune(
        mode="lora",
        lora_rank=config.r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=target,
        trainable=trainable,
    )
    set_trainable(transformer, False, trainable, [])
    return merge_lora(module) if merge else module


# ---- initial weights --------------------------------------------------------------------------
def load_initial_weights(transformer: OmniGen, path: str | Path) -> None:
    """Transformer weights from an OmniGen-v1 release directory, an omnigen exported directory or a
    `.ckpt` (strict: every name and shape must match). The VAE is the VAE plugin's business."""
    path = Path(path)
    if path.is_dir() and not (path / EXPORT_CONFIG).is_file():
        warn_config_mismatch(transformer, path)
        load_release_state(transformer, read_release_weights(path), str(path))
        log.info("initialised the transformer from the OmniGen-v1 release at %s", path)
        return
    if path.is_dir():
        state = load_file(str(path / EXPORT_WEIGHTS))
    elif path.is_file():
        state = read_checkpoint(path)["state_dict"]
    else:
        raise FileNotFoundError(f"init_from: no such file or directory {path}")
    state = {k.removeprefix("transformer."): v for k, v in state.items() if k.startswith("transformer.")}
    if any(is_adapter(k) for k in state):
        raise ValueError(
            f"{path} holds LoRA adapters: merge them first (OmniGenPipeline.from_checkpoint(path, "
            "merge_lora=True).save_pretrained(...)) and initialise from that"
        )
    transformer.load_state_dict(state, strict=True)
    log.info("initialised the transformer from %s", path)


def warn_config_mismatch(transformer: OmniGen, release_dir: Path) -> None:
    """Weights carry no rope factors: warn where the release's config.json differs from our backbone's."""
    if not (release_dir / "config.json").is_file():
        return
    config = release_backbone_config(json.loads((release_dir / "config.json").read_text()))
    theirs = AutoConfig.for_model(config.pop("model_type"), **config).to_dict()  # normalised as ours was
    ours = transformer.llm.config.to_dict()
    keys = (
        "model_type",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "max_position_embeddings",
        "rope_parameters",
    )
    differ = [k for k in keys if ours.get(k) != theirs.get(k)]
    if differ:
        log.warning(
            "the backbone's config differs from %s/config.json in %s: use model/backbone=omnigen_v1 "
            "(model.backbone.release_dir=%s) to build the release's architecture",
            release_dir,
            ", ".join(differ),
            release_dir,
        )


def adapter_state(module: OmniGenLitModule) -> dict[str, Tensor]:
    """The module's LoRA tensors under their state-dict names."""
    return {k: v for k, v in module.state_dict().items() if is_adapter(k)}


__all__ = [
    "FineTune",
    "add_lora",
    "adapter_state",
    "has_lora",
    "load_initial_weights",
    "load_lora",
    "merge_lora",
    "save_lora",
    "set_trainable",
]
