import os
import sys

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(2)

TINY_PHI3 = dict(
    model_type="phi3",
    vocab_size=128,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=512,
    pad_token_id=0,
    bos_token_id=2,
    eos_token_id=3,
)


@pytest.fixture(autouse=True)
def compiler_config_left_usable():
    """Fails the test that breaks torch.compile's config for the tests after it: deleting a dynamo or
    inductor option (pytest's monkeypatch undo does, on these config modules) hides it for the rest of
    the process, and the next compile in the same run then fails far from the cause."""
    yield
    for name in ("torch._dynamo.config", "torch._inductor.config"):
        if (config := sys.modules.get(name)) is not None:
            hidden = sorted(key for key, entry in config._config.items() if entry.hide)
            assert not hidden, f"this test left {name} options deleted: {hidden} (patch with {name}.patch(...))"


@pytest.fixture(scope="session")
def tokenizer():
    from omnigen.data.shapes import load_shapes_tokenizer

    return load_shapes_tokenizer()


def edit_and_t2i_inputs(tokenizer):
    """An edit prompt (one 6×6 input latent) and a text-only prompt, batched for 3×3-token outputs:
    (processor, prompts, input latents per sample, x (2, 4, 6, 6), t, batch, latents in span order)."""
    from omnigen.processor import OmniGenProcessor

    processor = OmniGenProcessor(tokenizer)
    g = torch.Generator().manual_seed(0)
    images = [[torch.randn(4, 6, 6, generator=g)], []]
    x, t = torch.randn(2, 4, 6, 6, generator=g), torch.tensor([0.25, 0.75])
    texts = ["<img><|image_1|></img> make the red circle green", "a red circle"]
    prompts = [
        processor.tokenize(text, [(z.shape[1] // 2, z.shape[2] // 2) for z in zs])
        for text, zs in zip(texts, images, strict=True)
    ]
    batch = processor.batch(prompts, (3, 3))
    return processor, prompts, images, x, t, batch, [images[b][i] for b, i in batch.image_order]


def make_module(
    tokenizer,
    mask=None,
    weighting=None,
    vae=None,
    patch_size=4,
    text_dropout=0.0,
    image_dropout=0.0,
    lr=1e-3,
    backbone_config=None,
    finetune=None,
):
    """A small OmniGenLitModule built without Hydra, as a notebook would."""
    from functools import partial

    from omnigen.flow.timesteps import LogitNormalTimesteps
    from omnigen.flow.weighting import UniformWeighting
    from omnigen.model.backbone import build_hf_backbone
    from omnigen.model.masks import OmniGenMask
    from omnigen.model.vae import PixelVAE
    from omnigen.module import OmniGenLitModule

    return OmniGenLitModule(
        vae=vae or PixelVAE(),
        backbone=build_hf_backbone(config=backbone_config or TINY_PHI3),
        mask=mask or OmniGenMask(),
        weighting=weighting or UniformWeighting(),
        timesteps=LogitNormalTimesteps(),
        tokenizer=tokenizer,
        optimizer=partial(torch.optim.AdamW, lr=lr),
        patch_size=patch_size,
        pos_embed_max_size=16,
        text_dropout=text_dropout,
        image_dropout=image_dropout,
        finetune=finetune,
    )


@pytest.fixture(scope="session")
def fitted_checkpoint(tmp_path_factory):
    """last.ckpt of a two-step fit through Hydra, as `python -m omnigen.fit` writes it."""
    from hydra_utils import FAST, compose_fit

    from omnigen.fit import train

    out = tmp_path_factory.mktemp("fit")
    train(compose_fit(FAST + ["logger=csv", "callbacks.sample_grid=null", "trainer.max_steps=2"], out))
    return out / "checkpoints" / "last.ckpt"
