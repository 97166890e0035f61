"""Pre-train the backbone as a language model on the training prompts: the paper's LLM start, in small.

OmniGen starts from Phi-3, which already reads text. The tiny preset's Phi-3 starts from random
weights and must learn to read its prompts while it learns to draw: "a red circle at the top" and
"... at the top left" differ only in a word after the one that names the row. This trains it first
as a causal language model on the text of the training prompts (the images left out), and saves it
where `model/backbone=pretrained` loads it (the LM head is dropped there):

    python -m omnigen.pretrain_lm out=checkpoints/lm_shapes
    python -m omnigen.fit model/backbone=pretrained model.backbone.pretrained_path=checkpoints/lm_shapes

The prompts come from the Shapes-X2I training stream of `seed` (never the evaluation's held-out
seeds), wrapped in the prompt template the processor uses. `<out>/pretrain_lm.json` records the
settings, the seconds it took, and the loss on held-out prompts before and after.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from omnigen.checkpoints.atomic_io import atomic_directory
from omnigen.config import CONFIG_DIR
from omnigen.data.shapes import load_shapes_tokenizer, sample_at
from omnigen.evaluation import EVAL_SEED_OFFSET
from omnigen.processor import OmniGenProcessor, drop_images
from omnigen.utils.cli import MissingPath, UserError, parse_cli, run_main

log = logging.getLogger(__name__)


@dataclass
class PretrainLMConfig:
    out: str = "???"  # the directory to write (an HF model directory)
    backbone: str = "phi3_tiny"  # configs/model/backbone/<name>.yaml, or a path to such a file
    families: dict[str, float] = field(default_factory=lambda: {"text_to_image": 0.5, "mixed_modal": 0.5})
    steps: int = 400
    batch_size: int = 64
    lr: float = 1.0e-3
    warmup_steps: int = 50
    seed: int = 0
    held_out: int = 512  # prompts from the evaluation's seed range, scored before and after
    threads: int | None = None  # torch threads (None: torch's default)
    overwrite: bool = False


def backbone_config(backbone: str) -> dict:
    """The `config` dict of a backbone YAML (a random-init HF backbone, as the presets build it)."""
    path = (
        Path(backbone) if backbone.endswith(".yaml") else Path(CONFIG_DIR) / "model" / "backbone" / f"{backbone}.yaml"
    )
    if not path.is_file():
        raise MissingPath(f"no backbone config {path}")
    config = OmegaConf.to_container(OmegaConf.load(path).get("config"))
    if not isinstance(config, dict) or "model_type" not in config:
        raise UserError(f"{path} has no `config:` with a model_type (a pretrained backbone cannot be pre-trained here)")
    return config


def prompt_batch(
    processor: OmniGenProcessor, indices: range, seed: int, families: dict[str, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels), (B, L) each: templated prompts without their images, right-padded; labels
    are -100 on padding (HF shifts them by one inside the model)."""
    rows = [
        processor.tokenize(drop_images(sample_at(i, seed, families, 16).instruction), []).input_ids for i in indices
    ]
    length = max(map(len, rows))
    ids = torch.full((len(rows), length), processor.tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), length), -100, dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, : len(row)] = labels[b, : len(row)] = torch.tensor(row)
    return ids, labels


@torch.no_grad()
def held_out_loss(model: PreTrainedModel, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
    model.eval()
    ids, labels = batch
    loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss.item()
    model.train()
    return loss


def pretrain(cfg: PretrainLMConfig) -> dict:
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise UserError(f"steps and batch_size must be >= 1, got {cfg.steps} and {cfg.batch_size}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    config = backbone_config(cfg.backbone)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(config.pop("model_type"), **config))
    tokenizer = load_shapes_tokenizer()
    if tokenizer.vocab_size > model.config.vocab_size:
        raise UserError(
            f"the Shapes-X2I tokenizer has {tokenizer.vocab_size} tokens, the backbone's vocabulary "
            f"{model.config.vocab_size}"
        )
    processor = OmniGenProcessor(tokenizer)
    held_out = prompt_batch(processor, range(cfg.held_out), cfg.seed + EVAL_SEED_OFFSET, cfg.families)
    before = held_out_loss(model, held_out)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / cfg.warmup_steps))
    start, losses = time.perf_counter(), []
    for step in range(cfg.steps):
        ids, labels = prompt_batch(
            processor, range(step * cfg.batch_size, (step + 1) * cfg.batch_size), cfg.seed, cfg.families
        )
        loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"language-model loss is {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == cfg.steps - 1:
            log.info("step %d: loss %.4f", step, loss.item())
    seconds = time.perf_counter() - start
    record = {
        "settings": asdict(cfg),
        "seconds": seconds,
        "held_out_loss_before": before,
        "held_out_loss_after": held_out_loss(model, held_out),
        "train_loss": losses,
    }
    with atomic_directory(cfg.out, cfg.overwrite) as tmp:
        model.save_pretrained(tmp)  # safetensors
        tokenizer.save_pretrained(tmp / "tokenizer")
        (tmp / "pretrain_lm.json").write_text(json.dumps(record, indent=2))
    log.info("held-out loss %.3f -> %.3f in %.0f s; wrote %s", before, record["held_out_loss_after"], seconds, cfg.out)
    return record


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return pretrain(parse_cli(PretrainLMConfig, argv, "omnigen.pretrain_lm", "out=checkpoints/lm_shapes", __doc__))


if __name__ == "__main__":
    run_main(main, "omnigen.pretrain_lm")
