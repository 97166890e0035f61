"""memory: what training the fit config's model takes per GPU, planned on the meta device (no weights, no GPU).

    python -m omnigen.bench memory model=paper [trainer=fsdp] [devices=8] [batch=1] [condition_tokens=128]

The model is built from the fit config on `torch.device("meta")` (shapes and dtypes, no storage; the tokenizer
is the shipped Shapes-X2I one, which holds no tensors), with the configured fine-tune applied, once per
fine-tune (full and LoRA, unless an override picks `model/finetune`) and planned under each strategy (DDP and
FSDP2, unless `trainer=` picks one). Per GPU, in GiB (2^30 bytes):

- weights: every parameter and buffer in its own dtype; FSDP2 shards the transformer's (rank 0's shard:
  dim 0 padded to a multiple of `devices`), the frozen VAE and the buffers stay whole on every rank.
- grads: the trainable parameters', in their dtype (fp32: DDP's bf16-mixed and FSDP2's `32-true` keep fp32
  masters), sharded under FSDP2.
- optimizer: the configured optimizer itself, built over the meta parameters and stepped once on meta
  gradients; its per-parameter tensors are counted (AdamW two, Muon one; scalar step counters live on the
  host), sharded under FSDP2.
- EMA: the weight average (`callbacks.ema`) copies the whole module, frozen VAE and buffers included.
- buckets: DDP's flat all-reduce buckets, one more copy of the gradients unless `gradient_as_bucket_view`.
- gathered: FSDP2's all-gathered parameters in the policy's dtype: the root unit (embeddings, embedders,
  final layer) for the whole step, plus two layers (the one running and the one prefetched; every layer when
  `reshard_after_forward` is false), and one layer's unsharded gradients in the compute and reduce dtypes.
- activations: `activation_parts`, at each output size with and without activation checkpointing.

`total` adds them all: an upper bound, as gradients fill in while activations are freed. Not counted: the
CUDA context, allocator fragmentation, the VAE's transient encode at the start of a step, backward's own
temporaries (a layer's activation gradients) and communication buffers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from omnigen.config import compose_fit
from omnigen.data.shapes.vocab import load_shapes_tokenizer
from omnigen.module import OmniGenLitModule, build_module
from omnigen.training.distributed import transformer_layers
from omnigen.training.finetune import add_lora, set_trainable

GIB = 2**30
STRATEGIES = ("ddp", "fsdp")
FINETUNES = ("full", "lora")
# Linear layers of a Phi-3 / Llama decoder layer, by what they read: the attention norm, the attention
# output, the MLP norm, the gated product.
ATTENTION_IN, ATTENTION_OUT = {"qkv_proj", "q_proj", "k_proj", "v_proj"}, {"o_proj"}
MLP_IN, MLP_OUT = {"gate_up_proj", "gate_proj", "up_proj"}, {"down_proj"}


@dataclass(frozen=True)
class Precision:
    """How a strategy computes: `autocast` (bf16-mixed: fp32 weights and residual stream, matmuls cast to
    `compute`) or parameters in `compute` (FSDP2's param_dtype, or fp32 under 32-true)."""

    compute: torch.dtype
    autocast: bool
    reduce: torch.dtype = torch.float32

    @property
    def c(self) -> int:  # bytes of a matmul input or output
        return self.compute.itemsize

    @property
    def stream(self) -> int:  # bytes of the residual stream and of the normalised hidden state
        return 4 if self.autocast else self.c


@dataclass(frozen=True)
class Layers:
    """The backbone's decoder layers as the activation estimate needs them, read from the built model."""

    count: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    attention: str
    norm_trains: bool  # its RMSNorm weights train: `weight * h` keeps h
    keeps: dict[str, bool]  # per Linear group: it keeps its input (its weight or an adapter on it trains)
    linear_weights: int  # elements of one layer's Linear weights (autocast casts a copy of each)
    trainable_linear_weights: int  # of those, trainable: autocast caches their copies for the whole forward
    final_norm_trains: bool
    outside_copies: int  # elements of the Linear weights outside the layers whose autocast copy is kept


def plan_config(overrides: list[str], strategy: str | None, finetune: str | None) -> dict[str, Any]:
    """The composed fit config of one (strategy, fine-tune) plan: its model resolved, its trainer as written
    (paths resolve only inside a run), and whether it averages the weights."""
    picks = ([f"model/finetune={finetune}"] if finetune else []) + ([f"trainer={strategy}"] if strategy else [])
    cfg = compose_fit([*picks, *overrides])
    return {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "trainer": OmegaConf.to_container(cfg.trainer, resolve=False),
        "ema": bool((cfg.get("callbacks") or {}).get("ema")),
    }


def meta_module(model: dict[str, Any]) -> OmniGenLitModule:
    """The model on the meta device, fine-tune applied. FineTune.apply reads the final layer's values (a warning
    for fresh LoRA), which meta tensors lack, so its two steps that shape the model run here."""
    config = {k: v for k, v in model.items() if k != "finetune"}
    with torch.device("meta"):
        module = build_module(config, tokenizer=load_shapes_tokenizer(), finetune=None)
    finetune = instantiate(model["finetune"]) if model.get("finetune") else None
    if finetune is not None:
        if finetune.mode == "lora":
            rank, alpha, dropout = finetune.lora_rank, finetune.lora_alpha, finetune.lora_dropout
            add_lora(module.transformer.llm, rank, alpha, dropout, finetune.target_modules)
        set_trainable(module.transformer, finetune.mode == "full", finetune.trainable, finetune.freeze)
    module.finetune = finetune
    return module


def precision_of(trainer: dict[str, Any]) -> Precision:
    precision = str(trainer.get("precision", "32-true"))
    precision = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}.get(precision, precision)  # Lightning's
    strategy = trainer.get("strategy")
    policy = strategy.get("mixed_precision") if isinstance(strategy, dict) else None
    if precision.endswith("-mixed"):
        return Precision(torch.float16 if precision.startswith("16") else torch.bfloat16, autocast=True)
    if precision != "32-true":
        raise ValueError(f"the planner knows 32-true and *-mixed precision, not trainer.precision={precision}")
    if policy:
        policy = instantiate(policy)
        return Precision(policy.param_dtype or torch.float32, False, policy.reduce_dtype or torch.float32)
    return Precision(torch.float32, autocast=False)


def nbytes(t: torch.Tensor, shards: int = 1) -> int:
    """Bytes of `t`, or of rank 0's FSDP2 shard of it (dim 0 split in `shards`, rounded up)."""
    if shards == 1 or t.dim() == 0:
        return t.numel() * t.element_size()
    return math.ceil(t.shape[0] / shards) * math.prod(t.shape[1:]) * t.element_size()


def optimizer_state(module: OmniGenLitModule) -> tuple[str, list[tuple[nn.Parameter, torch.Tensor]]]:
    """The configured optimizer's name and its (parameter, state tensor) pairs after one step on meta
    gradients: what it really allocates, whatever it is. Only tensors of the parameter's shape count: scalar
    step counters stay on the host."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    optimizer.step()
    states = [(p, v) for p, s in optimizer.state.items() for v in s.values() if torch.is_tensor(v)]
    for p in params:
        p.grad = None
    return type(optimizer).__name__, [(p, v) for p, v in states if v.shape == p.shape]


def strategy_of(trainer: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """("FSDP2", "DDP" or the strategy's own name, its config)."""
    strategy = trainer.get("strategy") if isinstance(trainer.get("strategy"), dict) else {}
    target = strategy.get("_target_", str(trainer.get("strategy", "single device")))
    if target.endswith("FullyShardedStrategy"):
        return "FSDP2", strategy
    return ("DDP" if target.endswith("DDPStrategy") else target.rsplit(".", 1)[-1]), strategy


def static_bytes(
    module: OmniGenLitModule,
    states: list[tuple[nn.Parameter, torch.Tensor]],
    trainer: dict[str, Any],
    ema: bool,
    devices: int,
    precision: Precision,
) -> dict[str, int]:
    """weights, grads, optimizer, EMA, buckets, gathered: bytes on rank 0 (module docstring); `states` from
    `optimizer_state`."""
    kind, strategy = strategy_of(trainer)
    shards = devices if kind == "FSDP2" else 1
    in_transformer = {id(p) for p in module.transformer.parameters()}

    def size(t: torch.Tensor, owner: torch.Tensor) -> int:  # sharded with its parameter when that is sharded
        return nbytes(t, shards if id(owner) in in_transformer else 1)

    weights = sum(size(p, p) for p in module.parameters()) + sum(nbytes(b) for b in module.buffers())
    grads = sum(size(p, p) for p in module.parameters() if p.requires_grad)
    parts = {"weights": weights, "grads": grads, "optimizer": sum(size(v, p) for p, v in states)}
    parts["EMA"] = weights if ema else 0  # AveragedModel deep-copies the module; sharded as it is
    parts["buckets"] = grads if kind == "DDP" and not strategy.get("gradient_as_bucket_view", False) else 0
    parts["gathered"] = 0
    if kind == "FSDP2":
        layers = transformer_layers(module.transformer)
        in_layers = {id(p) for layer in layers for p in layer.parameters()}
        root = sum(p.numel() for p in module.transformer.parameters() if id(p) not in in_layers)
        layer = max(layers, key=lambda m: sum(p.numel() for p in m.parameters()))
        gathered = len(layers) if not strategy.get("reshard_after_forward", True) else 2
        params = root + gathered * sum(p.numel() for p in layer.parameters())
        grads_of_layer = sum(p.numel() for p in layer.parameters() if p.requires_grad)
        parts["gathered"] = params * precision.c + grads_of_layer * (precision.c + precision.reduce.itemsize)
    return parts


def layers_of(module: OmniGenLitModule) -> Layers:
    llm = module.transformer.llm
    config, layers = llm.config, transformer_layers(llm)
    layer = layers[len(layers) // 2]
    names = {name: p for name, p in layer.named_parameters()}

    def trains(group: set[str]) -> bool:
        return any(p.requires_grad for name, p in names.items() if group & set(name.split(".")))

    keeps = {"attention_in": ATTENTION_IN, "attention_out": ATTENTION_OUT, "mlp_in": MLP_IN, "mlp_out": MLP_OUT}
    if not all(any(group & set(name.split(".")) for name in names) for group in keeps.values()):
        raise ValueError(f"the planner knows Phi-3 and Llama decoder layers, not {type(layer).__name__}")
    linears = [m.weight for m in layer.modules() if isinstance(m, nn.Linear)]
    heads = config.num_attention_heads
    norms = [p for name, p in names.items() if "norm" in name]
    final_norm = [p for name, p in llm.named_parameters() if name.startswith("norm.")]
    return Layers(
        count=len(layers),
        hidden=config.hidden_size,
        intermediate=config.intermediate_size,
        heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        attention=getattr(config, "_attn_implementation", None) or "eager",
        norm_trains=any(p.requires_grad for p in norms),
        keeps={key: trains(group) for key, group in keeps.items()},
        linear_weights=sum(w.numel() for w in linears),
        trainable_linear_weights=sum(w.numel() for w in linears if w.requires_grad),
        final_norm_trains=any(p.requires_grad for p in final_norm),
        outside_copies=outside_copies(module.transformer),
    )


def outside_copies(transformer: nn.Module) -> int:
    """Elements of the Linear weights outside the decoder layers that autocast keeps a bf16 copy of for backward:
    those whose input carries a gradient. The final linear reads the hidden stream; a timestep MLP's first layer
    reads a sinusoid (never); its second layer reads the first's output, and the adaLN layers (final, and per
    layer when on) read the time embedding: a gradient when what precedes them trains."""
    trains = lambda m: any(p.requires_grad for p in m.parameters())  # noqa: E731
    kept = [transformer.final_layer.linear]
    kept += [mlp[2] for mlp in (transformer.time_token.mlp, transformer.t_embedder.mlp) if trains(mlp[0])]
    if trains(transformer.t_embedder):
        adaln = [transformer.final_layer.adaLN_modulation, transformer.layer_modulation]
        kept += [m for part in adaln if part is not None for m in part.modules() if isinstance(m, nn.Linear)]
    return sum(m.weight.numel() for m in kept)


def activation_parts(
    layers: Layers, precision: Precision, rows: int, length: int, output_tokens: int, checkpointing: bool
) -> dict[str, int]:
    """What one training step keeps for backward, in bytes: `kept` (alive when the forward ends), `recompute`
    (checkpointing: one layer's activations rebuilt in backward) and `cache` (autocast's bf16 copies of the
    trainable weights, held until the forward ends). The peak is kept + max(recompute, cache).

    Per token of a decoder layer, with c the compute dtype's bytes and s the stream's (4 under autocast):
    each RMSNorm keeps its fp32 input (4·D), its normalised h when its weight trains (s·D) and its output in c
    when the next Linear keeps its input (c·D); attention keeps qkv (its v is saved), the rotated q and k, the
    attention output and o_proj's copy of it, and SDPA's log-sum-exp; the gated MLP keeps gate_up (2·I), the
    activation (I) and, when down_proj keeps its input, the product (I). The dense (L, L) mask (omnigen's
    masks are dense for SDPA and eager) is kept once in the stream dtype, except that autocast casts a bf16
    copy of it for every layer's SDPA; eager attention keeps softmax's fp32 scores and, below fp32, their copy
    in c. Autocast also keeps a bf16 copy of every Linear weight that a saved matmul needs. Checkpointing keeps
    each layer's input instead (s·D per token) and the mask. Outside the layers: the final norm over the
    sequence, the final layer over the output tokens and the rotary tables. Checked against a measured CPU
    step of the tiny model (tests/test_bench_memory.py).
    """
    d, inter, c, s = layers.hidden, layers.intermediate, precision.c, precision.stream
    q, kv, keeps = layers.heads * layers.head_dim, layers.kv_heads * layers.head_dim, layers.keeps
    norm = 4 * d + (s * d if layers.norm_trains else 0)
    per_token = 2 * norm + c * d * (keeps["attention_in"] + keeps["mlp_in"])
    per_token += c * (q + 2 * kv) + c * (q + kv) + c * q * (1 + keeps["attention_out"])
    per_token += c * 3 * inter + c * inter * keeps["mlp_out"]
    if layers.attention == "eager":
        per_square = layers.heads * (4 + (c if c != 4 else 0))  # per (query, key) pair of one layer
    else:  # SDPA, FlexAttention: no scores, a log-sum-exp per head
        per_token += 4 * layers.heads
        per_square = c if precision.autocast and layers.attention == "sdpa" else 0
    mask = s * length**2 if layers.attention in ("sdpa", "eager") else 0
    copies = c * layers.linear_weights if precision.autocast else 0
    layer = rows * (length * per_token + length**2 * per_square) + copies
    outside = length * (4 * d + (s * d if layers.final_norm_trains else 0) + s * d) + output_tokens * d * (s + c)
    outside = rows * (outside + 2 * length * layers.head_dim * s) + (
        c * layers.outside_copies if precision.autocast else 0
    )
    shared_mask = rows * mask if checkpointing or (layers.attention == "sdpa" and not precision.autocast) else 0
    if not checkpointing:
        return {"kept": layers.count * layer + outside + shared_mask, "recompute": 0, "cache": 0}
    inputs = rows * layers.count * length * d * s
    cache = c * layers.trainable_linear_weights * layers.count if precision.autocast else 0
    return {"kept": inputs + outside + shared_mask, "recompute": layer, "cache": cache}


def activation_bytes(*args: Any, **kwargs: Any) -> int:
    parts = activation_parts(*args, **kwargs)
    return parts["kept"] + max(parts["recompute"], parts["cache"])


def sequence(module: OmniGenLitModule, side: int, condition_tokens: int) -> tuple[int, int]:
    """(tokens of one sample, output-image tokens) at a side x side output: [condition | time | image]."""
    per_token = module.pixels_per_token  # the VAE's downsampling times the patch size
    if side % per_token:
        raise ValueError(f"size {side} is not a multiple of {per_token} pixels (VAE factor x patch size)")
    grid, most = side // per_token, module.transformer.pos_embed_max_size
    if grid > most:
        raise ValueError(f"size {side} exceeds this model's position grid: sizes up to {most * per_token} pixels")
    return condition_tokens + 1 + grid**2, grid**2


def plan(args: Any) -> tuple[list[dict[str, Any]], OmniGenLitModule]:
    """One row per (strategy, fine-tune, output size); the last module built, for the header."""
    overrides = ([f"model={args.model}"] if args.model else []) + list(args.override)
    # every fine-tune and strategy unless the command picks one (Hydra refuses a group chosen twice)
    finetunes = (
        [None] if any(o.lstrip("+~").startswith(("model/finetune", "model.finetune")) for o in overrides) else FINETUNES
    )
    strategies = (
        [args.trainer] if args.trainer else [None] if any(o.startswith("trainer=") for o in overrides) else STRATEGIES
    )
    rows = []
    for finetune in finetunes:
        module = None
        for strategy in strategies:
            cfg = plan_config(overrides, strategy, finetune)
            if module is None:  # the strategies share the model (the optimizer's meta step leaves it as it was)
                module = meta_module(cfg["model"])
                optimizer, states = optimizer_state(module)
                layers = layers_of(module)
            precision = precision_of(cfg["trainer"])
            static = static_bytes(module, states, cfg["trainer"], cfg["ema"], args.devices, precision)
            head = {
                "strategy": strategy_of(cfg["trainer"])[0],
                "finetune": module.finetune.mode if module.finetune else "full",
                "optimizer": optimizer,
                "precision": str(precision.compute).removeprefix("torch.")
                + (" autocast" if precision.autocast else ""),
                "trainable M": sum(p.numel() for p in module.parameters() if p.requires_grad) / 1e6,
                **{f"{k} GiB": v / GIB for k, v in static.items()},
                "static GiB": sum(static.values()) / GIB,
            }
            for side in args.sizes:
                length, image = sequence(module, side, args.condition_tokens)
                row = head | {"size": side, "tokens": length}
                for ckpt, label in ((False, ""), (True, " ckpt")):
                    act = activation_bytes(layers, precision, args.batch, length, image, ckpt) / GIB
                    row[f"activations{label} GiB"] = act
                    row[f"total{label} GiB"] = head["static GiB"] + act
                rows.append(row)
    return rows, module


def show(rows: list[dict[str, Any]], keys: list[str], columns: dict[str, str] | None = None) -> None:
    """A table of `keys` per (strategy, fine-tune); `columns` spreads a value per output size."""
    pivot: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        entry = pivot.setdefault((row["strategy"], row["finetune"]), {k: row[k] for k in keys})
        for label, key in (columns or {}).items():
            entry[f"{row['size']}² {label}".strip()] = row[key]
    table = list(pivot.values())
    print(" | ".join(table[0]))
    for entry in table:
        print(" | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in entry.values()))


def run(args: Any) -> list[dict[str, Any]]:
    rows, module = plan(args)
    tokens = ", ".join(f"{r['size']}²: {r['tokens']}" for r in rows[: len(args.sizes)])
    print(
        f"memory per GPU (GiB) over {args.devices} devices, planned on the meta device: "
        f"{sum(p.numel() for p in module.transformer.parameters()) / 1e9:.2f}B transformer and "
        f"{sum(p.numel() for p in module.vae.parameters()) / 1e9:.2f}B VAE parameters; batch {args.batch}, "
        f"tokens per sample (condition {args.condition_tokens} + time + image) {tokens}"
    )
    static = ["weights GiB", "grads GiB", "optimizer GiB", "EMA GiB", "buckets GiB", "gathered GiB", "static GiB"]
    show(rows, ["strategy", "finetune", "optimizer", "precision", "trainable M", *static])
    print("activations (GiB; ckpt: activation checkpointing, model.backbone.gradient_checkpointing=true)")
    show(rows, ["strategy", "finetune"], {"": "activations GiB", "ckpt": "activations ckpt GiB"})
    print("total (GiB, an upper bound)")
    show(rows, ["strategy", "finetune"], {"": "total GiB", "ckpt": "total ckpt GiB"})
    return rows
