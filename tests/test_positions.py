"""Position schemes (model/positions): `sequential` (OmniGen v1's 1-D RoPE) and `omni` (three axes,
sequence × row × column, in the manner of OmniGen2's Omni-RoPE)."""

import pytest
import torch
from conftest import TINY_PHI3

from omnigen.model.backbone import build_hf_backbone
from omnigen.model.masks import OmniGenMask, SequenceLayout
from omnigen.model.omnigen import OmniGen
from omnigen.model.positions import AxialRotary, OmniPositions, SequentialPositions
from omnigen.model.positions.omni import unpack_axes
from omnigen.processor import OmniGenProcessor

EDIT = "<img><|image_1|></img> make the red circle green"
TWO = "<img><|image_1|></img> and <img><|image_2|></img> a blue square"


def grid(z: torch.Tensor) -> tuple[int, int]:
    return z.shape[-2] // 2, z.shape[-1] // 2  # patch size 2


def model(positions, attn="sdpa") -> OmniGen:
    torch.manual_seed(0)
    m = OmniGen(
        build_hf_backbone(config=TINY_PHI3, attn_implementation=attn),
        OmniGenMask(),
        in_channels=4,
        patch_size=2,
        pos_embed_max_size=16,
        positions=positions,
    ).eval()
    for layer in (m.final_layer.linear, m.final_layer.adaLN_modulation[1]):
        torch.nn.init.normal_(layer.weight, std=0.05)
    return m


def coordinates(layout: SequenceLayout) -> torch.Tensor:
    return torch.stack(unpack_axes(OmniPositions().position_ids(layout)), dim=-1)  # (B, L, 3)


def test_image_positions_translate_with_the_image_and_line_up_cell_for_cell(tokenizer):
    processor = OmniGenProcessor(tokenizer)
    near = processor.tokenize(EDIT, [(2, 3)])
    far = processor.tokenize("a small green triangle at the top " + EDIT, [(2, 3)])
    layout = processor.batch([near, far], (2, 3)).layout
    xyz, spans = coordinates(layout), layout.span_ids
    cells = torch.tensor([[r, c] for r in range(2) for c in range(3)])
    for b in range(2):
        input_cells, output_cells = xyz[b][spans[b] == 1], xyz[b][spans[b] == 2]
        assert torch.equal(input_cells[:, 1:], cells) and torch.equal(output_cells[:, 1:], cells)
        assert len(set(input_cells[:, 0].tolist())) == 1 and len(set(output_cells[:, 0].tolist())) == 1
    # moving the input image further into the prompt moves its sequence coordinate only
    shift = len(far.input_ids) - len(near.input_ids)
    assert xyz[1][spans[1] == 1][0, 0] - xyz[0][spans[0] == 1][0, 0] == shift


def test_text_positions_are_the_sequential_ones(tokenizer):
    processor = OmniGenProcessor(tokenizer)
    prompts = [processor.tokenize(TWO, [(2, 2), (3, 2)]), processor.tokenize("a red circle", [])]
    layout = processor.batch(prompts, (2, 2)).layout
    xyz, sequential = coordinates(layout), layout.position_ids()
    text = layout.span_ids == 0  # text, time token and padding
    for axis in range(3):
        assert torch.equal(xyz[..., axis][text], sequential[text])
    # the rotary wrapper on (p, p, p) gives the LLM's own angles: a text-only forward is unchanged
    omni, plain = model(OmniPositions()), model(SequentialPositions())
    assert isinstance(omni.llm.rotary_emb, AxialRotary)
    ids = torch.arange(2, 12)[None]
    with torch.no_grad():
        a = omni.llm(
            input_ids=ids,
            position_ids=OmniPositions().position_ids(
                SequenceLayout(
                    torch.zeros_like(ids), torch.ones_like(ids, dtype=torch.bool), 0, span_widths=torch.zeros_like(ids)
                )
            ),
        )
        b = plain.llm(input_ids=ids, position_ids=torch.arange(10)[None])
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, atol=1e-6, rtol=0)


def batch_of(processor, texts, images, output):
    prompts = [processor.tokenize(text, [grid(z) for z in zs]) for text, zs in zip(texts, images, strict=True)]
    batch = processor.batch(prompts, grid(output))
    return batch, [images[b][i] for b, i in batch.image_order]


def test_cached_steps_equal_the_uncached_forward(tokenizer):
    processor, m = OmniGenProcessor(tokenizer), model(OmniPositions())
    g = torch.Generator().manual_seed(1)
    images = [
        [torch.randn(4, 4, 6, generator=g)],
        [torch.randn(4, 6, 4, generator=g), torch.randn(4, 4, 4, generator=g)],
    ]
    x, t = torch.randn(2, 4, 6, 4, generator=g), torch.tensor([0.3, 0.8])
    batch, latents = batch_of(processor, [EDIT, TWO], images, x[0])
    with torch.no_grad():
        reference = m(x, t, batch.input_ids, batch.image_token_mask, latents, batch.layout)
        cache = m.cache_prefix(batch.input_ids, batch.image_token_mask, latents, batch.layout)
        for _ in range(2):  # the cache serves every step unchanged
            torch.testing.assert_close(m.forward_cached(x, t, cache, batch.layout), reference, atol=2e-5, rtol=1e-4)
        assert not torch.allclose(
            reference,
            model(SequentialPositions())(x, t, batch.input_ids, batch.image_token_mask, latents, batch.layout),
            atol=1e-4,
        )


@pytest.mark.parametrize("attn", ["sdpa", "flex_attention"])
def test_a_packed_sample_gets_what_it_gets_alone(tokenizer, attn):
    """Packed rows (dense mask, or FlexAttention's BlockMask: forward only on the CPU) against each
    sample through the left-padded forward alone."""
    processor = OmniGenProcessor(tokenizer)
    dense, m = model(OmniPositions()), model(OmniPositions(), attn)
    g = torch.Generator().manual_seed(2)
    texts = [EDIT, "a red circle", TWO]
    images = [
        [torch.randn(4, 8, 8, generator=g)],
        [],
        [torch.randn(4, 4, 6, generator=g), torch.randn(4, 8, 4, generator=g)],
    ]
    outputs = [torch.randn(4, 8, 8, generator=g), torch.randn(4, 4, 6, generator=g), torch.randn(4, 6, 8, generator=g)]
    t = torch.tensor([0.2, 0.6, 0.9])
    prompts = [processor.tokenize(text, [grid(z) for z in zs]) for text, zs in zip(texts, images, strict=True)]
    packed_batch = processor.pack(prompts, [grid(z) for z in outputs], 200)
    assert packed_batch.input_ids.shape[0] < len(texts)  # a row really holds several samples
    latents = [images[b][i] for b, i in packed_batch.image_order]
    with torch.no_grad(), torch._dynamo.config.patch(automatic_dynamic_shapes=False):  # see test_packing's flex test
        packed = m.forward_packed(outputs, t, packed_batch, latents)
        for b in range(len(texts)):
            batch, alone_latents = batch_of(processor, texts[b : b + 1], images[b : b + 1], outputs[b])
            alone = dense(
                outputs[b][None], t[b : b + 1], batch.input_ids, batch.image_token_mask, alone_latents, batch.layout
            )[0]
            torch.testing.assert_close(packed[b], alone, atol=2e-5, rtol=1e-4)


def test_misuse_is_a_clear_error(tokenizer):
    processor = OmniGenProcessor(tokenizer)
    counts_only = processor.batch([processor.tokenize(EDIT, [6])], 6).layout  # token counts, no grids
    with pytest.raises(ValueError, match="needs each image's token grid"):
        OmniPositions().position_ids(counts_only)
    assert torch.equal(SequentialPositions().position_ids(counts_only), counts_only.position_ids())  # 1-D needs none
    with pytest.raises(ValueError, match="has none"):
        OmniPositions().install(torch.nn.Linear(2, 2))


def test_diffusers_export_refuses_what_it_cannot_express():
    from omnigen.checkpoints.diffusers import diffusers_transformer_config

    assert diffusers_transformer_config(model(SequentialPositions()))["num_layers"] == TINY_PHI3["num_hidden_layers"]
    with pytest.raises(ValueError, match="OmniPositions.*1-D position"):
        diffusers_transformer_config(model(OmniPositions()))


def test_a_fit_with_omni_positions_saves_a_checkpoint_that_samples_with_them(tmp_path):
    from hydra_utils import FAST, compose_fit

    from omnigen.checkpoints.native import load_module
    from omnigen.fit import train
    from omnigen.pipeline import OmniGenPipeline

    train(
        compose_fit(
            FAST + ["model/positions=omni", "trainer.max_steps=2", "logger=csv", "callbacks.sample_grid=null"], tmp_path
        )
    )
    module = load_module(tmp_path / "checkpoints" / "last.ckpt")
    assert isinstance(module.transformer.positions, OmniPositions)
    assert isinstance(module.transformer.llm.rotary_emb, AxialRotary)
    images = OmniGenPipeline(module).generate(
        ["<img><|image_1|></img> make the red circle green"], [[torch.zeros(3, 32, 32)]], 32, 32, 2
    )
    assert images.shape == (1, 3, 32, 32) and torch.isfinite(images).all()
