"""`python -m omnigen.pretrain_lm`: the tiny backbone pre-trained as a language model on the training
prompts, then loaded by a fit as `model/backbone=pretrained`."""

import json

import pytest
from hydra_utils import FAST, compose_fit
from safetensors.torch import load_file

from omnigen.fit import train
from omnigen.pretrain_lm import main


def test_pretraining_lowers_the_held_out_loss_and_a_fit_starts_from_it(tmp_path):
    out = tmp_path / "lm"
    record = main([f"out={out}", "steps=60", "batch_size=16", "held_out=64", "warmup_steps=5", "lr=3e-3"])
    # the prompts' grammar is learnable in seconds: far below the uniform guess over the vocabulary
    assert record["held_out_loss_after"] < 0.5 * record["held_out_loss_before"]
    saved = json.loads((out / "pretrain_lm.json").read_text())
    assert saved["settings"]["steps"] == 60 and len(saved["train_loss"]) == 60
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    weights = load_file(out / "model.safetensors")

    cfg = compose_fit(
        FAST
        + [
            "logger=csv",
            "model/backbone=pretrained",
            f"model.backbone.pretrained_path={out}",
            "trainer.max_steps=1",
            "callbacks.sample_grid=null",
        ],
        tmp_path / "fit",
    )
    module = train(cfg)["module"]
    # the fit's LLM started from the pre-trained weights: one Adam step of lr <= 1e-3 moves each by ~1e-3,
    # where a fresh init (std 0.02) would differ everywhere
    embedding = module.transformer.llm.get_input_embeddings().weight
    assert module.transformer.llm.training  # from_pretrained hands back eval mode; the backbone is set to train
    assert (embedding - weights["model.embed_tokens.weight"]).abs().max() < 5e-3


def test_bad_settings_fail_by_name(tmp_path):
    with pytest.raises(SystemExit, match="missing out"):
        main([])
    with pytest.raises(FileNotFoundError, match="no backbone config"):
        main([f"out={tmp_path}/a", "backbone=nope"])
    with pytest.raises(ValueError, match="steps and batch_size"):
        main([f"out={tmp_path}/b", "steps=0"])
    main([f"out={tmp_path}/c", "steps=1", "batch_size=2", "held_out=2", "warmup_steps=1"])
    with pytest.raises(FileExistsError, match="overwrite"):
        main([f"out={tmp_path}/c", "steps=1", "batch_size=2", "held_out=2"])
