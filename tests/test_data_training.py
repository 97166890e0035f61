"""Training from files: a released-format JSONL trains, and the same data packed to shards trains identically."""

import json
import logging

import numpy as np
import pytest
import torch
from conftest import make_module
from lightning import Callback, Trainer
from PIL import Image

from omnigen.data.modules import MixedModalDataModule
from omnigen.data.resolution import Resolution
from omnigen.data.sources.jsonl import JsonlSource
from omnigen.data.sources.webdataset import WebDatasetSource
from omnigen.data.write_shards import pack

INSTRUCTIONS = [
    "make the red circle green",
    "remove the blue square",
    "make the blue square red",
    "remove the red circle",
]


def write_release_jsonl(root, n=16):
    """The released OmniGen format: instruction with placeholders, image paths relative to a root."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    with open(root / "edit.jsonl", "w") as f:
        for i in range(n):
            for name in (f"in_{i}.png", f"out_{i}.png"):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "images" / name)
            line = {
                "instruction": f"<img><|image_1|></img> {INSTRUCTIONS[i % 4]}",
                "input_images": [f"images/in_{i}.png"],
                "output_image": f"images/out_{i}.png",
            }
            f.write(json.dumps(line) + "\n")
    return root / "edit.jsonl"


class Recorder(Callback):
    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append(
            (
                list(batch["instruction"]),
                batch["output_image"].clone(),
                [im.clone() for ims in batch["input_images"] for im in ims],
            )
        )


def fit(tokenizer, source, steps=3):
    torch.manual_seed(0)
    module = make_module(tokenizer, patch_size=4)
    data = MixedModalDataModule([source], batch_size=4, shuffle=False, resolution=Resolution("square", 32))
    recorder = Recorder()
    trainer = Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
    )
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == steps
    return module, recorder.seen


def test_released_jsonl_trains_and_its_shards_train_identically(tokenizer, tmp_path):
    jsonl = write_release_jsonl(tmp_path)
    from_jsonl, seen_jsonl = fit(tokenizer, JsonlSource(jsonl, family="mixed_modal", task="edit"))
    counts = pack(
        JsonlSource(jsonl, family="mixed_modal", task="edit"), str(tmp_path / "shards" / "s-%06d.tar"), maxcount=5
    )
    assert counts["written"] == 16 and len(counts["shards"]) == 4
    from_shards, seen_shards = fit(tokenizer, WebDatasetSource(str(tmp_path / "shards" / "s-{000000..000003}.tar")))

    assert [s[0] for s in seen_jsonl] == [s[0] for s in seen_shards]  # same samples, same order
    for (_, out_a, in_a), (_, out_b, in_b) in zip(seen_jsonl, seen_shards, strict=True):
        assert torch.equal(out_a, out_b) and all(torch.equal(a, b) for a, b in zip(in_a, in_b, strict=True))
    for name, value in from_jsonl.state_dict().items():
        torch.testing.assert_close(from_shards.state_dict()[name], value, atol=0, rtol=0, msg=name)
    assert any((p != 0).any() for p in (from_jsonl.transformer.final_layer.linear.weight,))  # it did train


def test_a_bad_jsonl_line_is_a_counted_skip_during_training(tokenizer, tmp_path):
    jsonl = write_release_jsonl(tmp_path, n=8)
    with open(jsonl, "a") as f:
        f.write("{not json\n")
        f.write(
            json.dumps(
                {
                    "instruction": "<img><|image_1|></img> x",
                    "input_images": ["images/missing.png"],
                    "output_image": "images/out_0.png",
                }
            )
            + "\n"
        )
    logged = {}
    module, _ = fit(tokenizer, JsonlSource(jsonl, family="mixed_modal", task="edit"), steps=3)
    data = MixedModalDataModule(
        [JsonlSource(jsonl, family="mixed_modal", task="edit")],
        batch_size=4,
        shuffle=False,
        resolution=Resolution("square", 32, multiple=4),
    )
    for batch in data.train_dataloader():
        logged = data.accounting.update(batch["data_stats"])
    assert logged["skipped_bad_json"] == 1 and logged["skipped_missing_image"] == 1
    strict = MixedModalDataModule(
        [JsonlSource(jsonl, family="mixed_modal", task="edit")],
        batch_size=4,
        shuffle=False,
        resolution=Resolution("square", 32, multiple=4),
        max_skip_fraction=0.1,
    )
    strict.accounting.min_records = 1
    with pytest.raises(RuntimeError, match="over data.max_skip_fraction=0.1"):
        for batch in strict.train_dataloader():
            strict.accounting.update(batch["data_stats"])


def test_resuming_a_file_backed_stream_says_it_restarts_the_epoch(tmp_path, caplog):
    from hydra_utils import FAST, compose_fit

    from omnigen.fit import train

    overrides = ["data=text_to_image", *FAST, "logger=csv", "callbacks.sample_grid=null"]
    train(compose_fit(overrides + ["trainer.max_steps=2"], tmp_path / "a"))
    with caplog.at_level(logging.WARNING, logger="omnigen.data.modules.base"):
        resumed = train(
            compose_fit(overrides + [f"ckpt_path={tmp_path / 'a' / 'checkpoints' / 'last.ckpt'}"], tmp_path / "b")
        )
    assert resumed["trainer"].global_step == 4
    assert "resuming at step 2: the TextToImageDataModule stream restarts its epoch" in caplog.text
