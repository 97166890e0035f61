"""The OmniGen transformer: embeddings, released-layout names, shapes and batching invariants."""

import pytest
import torch
from conftest import TINY_PHI3

from omnigen.model.backbone import build_hf_backbone
from omnigen.model.embeddings import crop_pos_embed, sincos_2d_table, timestep_sinusoid, unpatchify
from omnigen.model.masks import OmniGenMask, PrefixLMMask
from omnigen.model.omnigen import OmniGen
from omnigen.processor import OmniGenProcessor


def model(patch_size=2, channels=4) -> OmniGen:
    torch.manual_seed(0)
    return OmniGen(
        build_hf_backbone(config=TINY_PHI3),
        OmniGenMask(),
        in_channels=channels,
        patch_size=patch_size,
        pos_embed_max_size=16,
    ).eval()


def patchify(latent: torch.Tensor, p: int) -> torch.Tensor:
    """The inverse of unpatchify, written independently: (B, C, H, W) -> (B, H/p · W/p, p·p·C)."""
    b, c, h, w = latent.shape
    x = latent.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, p, C)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def test_patchify_round_trip_and_row_major_order():
    x = torch.randn(2, 3, 8, 12)
    tokens = patchify(x, 4)
    assert tokens.shape == (2, 6, 48)
    assert torch.equal(unpatchify(tokens, 4, 3, 2, 3), x)
    # token 1 is the patch in row 0, column 1
    assert torch.equal(tokens[0, 1].reshape(4, 4, 3).permute(2, 0, 1), x[0, :, 0:4, 4:8])


def test_pos_embed_halves_encode_column_then_row_and_crop_is_centred():
    table = sincos_2d_table(32, 8)  # (64, 32)
    grid = table.reshape(8, 8, 32)
    assert torch.equal(grid[0, 3, :16], grid[5, 3, :16])  # same column -> same first half
    assert torch.equal(grid[2, 0, 16:], grid[2, 7, 16:])  # same row -> same second half
    assert not torch.equal(grid[0, 3, :16], grid[0, 4, :16])
    # coordinates are i * 64 / grid: column 1 of an 8-grid sits at 8.0, sin(8 * omega_0 = 8)
    assert grid[0, 1, 0].item() == pytest.approx(torch.sin(torch.tensor(8.0)).item(), abs=1e-6)
    crop = crop_pos_embed(table[None], 8, 2, 4)  # rows 3..4, columns 2..5
    assert torch.equal(crop[0].reshape(2, 4, 32), grid[3:5, 2:6])
    with pytest.raises(ValueError, match="exceeds the position grid"):
        crop_pos_embed(table[None], 8, 9, 2)


def test_timestep_sinusoid_is_cos_then_sin_of_unscaled_t():
    emb = timestep_sinusoid(torch.tensor([0.0, 0.5]), dim=8)
    assert emb[0].tolist() == [1.0] * 4 + [0.0] * 4
    assert emb[1, 0].item() == pytest.approx(torch.cos(torch.tensor(0.5)).item())  # first frequency is 1


def test_state_dict_uses_the_released_layout():
    d, c, p, g = 64, 4, 2, 16  # hidden, latent channels, patch, position grid
    shapes = {name: tuple(v.shape) for name, v in model(patch_size=p, channels=c).state_dict().items()}
    expected = {
        "x_embedder.proj.weight": (d, c, p, p),
        "x_embedder.proj.bias": (d,),
        "input_x_embedder.proj.weight": (d, c, p, p),
        "input_x_embedder.proj.bias": (d,),
        "time_token.mlp.0.weight": (d, 256),
        "time_token.mlp.2.weight": (d, d),
        "t_embedder.mlp.0.weight": (d, 256),
        "t_embedder.mlp.2.bias": (d,),
        "final_layer.adaLN_modulation.1.weight": (2 * d, d),
        "final_layer.linear.weight": (p * p * c, d),
        "pos_embed": (1, g * g, d),
        "llm.embed_tokens.weight": (128, d),
        "llm.layers.0.self_attn.qkv_proj.weight": (3 * d, d),
        "llm.norm.weight": (d,),
    }
    for name, shape in expected.items():
        assert shapes.get(name) == shape, (name, shapes.get(name))
    assert not [k for k in shapes if k.startswith("mask") or "lm_head" in k]


def inputs(processor, m: OmniGen, instructions, images, hw=(8, 8)):
    prompts = [
        processor.tokenize(text, [(im.shape[-2] // m.patch_size) * (im.shape[-1] // m.patch_size) for im in imgs])
        for text, imgs in zip(instructions, images, strict=True)
    ]
    n = (hw[0] // m.patch_size) * (hw[1] // m.patch_size)
    batch = processor.batch(prompts, n)
    latents = [images[b][i] for b, i in batch.image_order]
    return batch, latents


def test_zero_initialised_final_layer_predicts_zero_then_learns_a_signal(tokenizer):
    m = model()
    processor = OmniGenProcessor(tokenizer)
    batch, latents = inputs(processor, m, ["a red circle"], [[]])
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([0.3])
    out = m(x, t, batch.input_ids, batch.image_token_mask, latents, batch.layout)
    assert out.shape == x.shape and torch.all(out == 0)
    torch.nn.init.normal_(m.final_layer.linear.weight, std=0.02)
    out = m(x, t, batch.input_ids, batch.image_token_mask, latents, batch.layout)
    assert out.abs().sum() > 0


def randomised(m: OmniGen) -> OmniGen:
    for layer in (m.final_layer.linear, m.final_layer.adaLN_modulation[1]):
        torch.nn.init.normal_(layer.weight, std=0.05)
    return m


def test_a_sample_gives_the_same_velocity_alone_or_left_padded_in_a_batch(tokenizer):
    m = randomised(model())
    processor = OmniGenProcessor(tokenizer)
    g = torch.Generator().manual_seed(0)
    edit_image, ref = torch.randn(4, 8, 8, generator=g), torch.randn(4, 4, 6, generator=g)
    texts = ["<img><|image_1|></img> make the red circle green and <img><|image_2|></img>", "a red circle"]
    images = [[edit_image, ref], []]
    x, t = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([0.2, 0.7])
    with torch.no_grad():
        batch, latents = inputs(processor, m, texts, images)
        together = m(x, t, batch.input_ids, batch.image_token_mask, latents, batch.layout)
        for b in range(2):
            single, lat = inputs(processor, m, texts[b : b + 1], images[b : b + 1])
            alone = m(x[b : b + 1], t[b : b + 1], single.input_ids, single.image_token_mask, lat, single.layout)
            torch.testing.assert_close(together[b : b + 1], alone, atol=2e-5, rtol=1e-4)


def test_the_input_images_reach_the_output(tokenizer):
    m = randomised(model())
    processor = OmniGenProcessor(tokenizer)
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(1, 4, 8, 8, generator=g), torch.tensor([0.5])
    outs = []
    with torch.no_grad():
        for seed in (2, 3):
            image = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(seed))
            batch, latents = inputs(processor, m, ["<img><|image_1|></img> make the red circle green"], [[image]])
            outs.append(m(x, t, batch.input_ids, batch.image_token_mask, latents, batch.layout))
    assert (outs[0] - outs[1]).abs().max() > 1e-4


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_the_backbone_obeys_the_mask(attn, tokenizer):
    """Through the real LLM: the prefix never sees the output; output patches see each other."""
    from conftest import TINY_PHI3

    torch.manual_seed(0)
    m = OmniGen(
        build_hf_backbone(config=TINY_PHI3, attn_implementation=attn),
        OmniGenMask(),
        in_channels=4,
        patch_size=2,
        pos_embed_max_size=16,
    ).eval()
    captured = []
    m.llm.register_forward_hook(lambda mod, args, out: captured.append(out.last_hidden_state))
    processor = OmniGenProcessor(tokenizer)
    image = torch.randn(4, 4, 4)
    batch, latents = inputs(processor, m, ["<img><|image_1|></img> make the red circle green"], [[image]])
    x = torch.randn(1, 4, 8, 8)
    changed = x.clone()
    changed[..., 6:, 6:] += 1.0  # perturb only the last output patch
    with torch.no_grad():
        for latent in (x, changed):
            m(latent, torch.tensor([0.5]), batch.input_ids, batch.image_token_mask, latents, batch.layout)
    prefix = batch.layout.prefix_length + 1  # condition tokens and the time token
    assert torch.equal(captured[0][:, :prefix], captured[1][:, :prefix])
    assert (captured[0][:, prefix] - captured[1][:, prefix]).abs().max() > 1e-4  # the first output patch sees the last


def test_placeholders_without_latents_are_an_error(tokenizer):
    m = model()
    processor = OmniGenProcessor(tokenizer)
    batch, _ = inputs(processor, m, ["<img><|image_1|></img> remove the blue square"], [[torch.randn(4, 8, 8)]])
    with pytest.raises(ValueError, match="0 input latent"):
        m(torch.randn(1, 4, 8, 8), torch.tensor([0.5]), batch.input_ids, batch.image_token_mask, [], batch.layout)


def test_mismatched_layout_is_rejected(tokenizer):
    m = model()
    processor = OmniGenProcessor(tokenizer)
    batch, latents = inputs(processor, m, ["a red circle"], [[]], hw=(8, 8))
    with pytest.raises(ValueError, match="does not match"):
        m(torch.randn(1, 4, 4, 4), torch.tensor([0.5]), batch.input_ids, batch.image_token_mask, latents, batch.layout)
    with pytest.raises(ValueError, match="not divisible by patch size"):
        m.patch_grid(torch.randn(1, 4, 7, 8))


@pytest.mark.parametrize(
    ("family", "mask"),
    [("phi3", OmniGenMask()), ("llama", OmniGenMask()), ("qwen2", OmniGenMask()), ("phi3", PrefixLMMask())],
    ids=str,
)
def test_cached_prefix_gives_the_uncached_velocity_at_every_step(family, mask, tokenizer):
    """kv-cache: the condition prefix runs once; later steps run [time | output] only, and match
    the full sequence (fp32, padded batch with 0, 1 and 2 input images)."""
    from test_backbone import FAMILIES

    torch.manual_seed(0)
    m = randomised(
        OmniGen(
            build_hf_backbone(config=FAMILIES[family]), mask, in_channels=4, patch_size=2, pos_embed_max_size=16
        ).eval()
    )
    processor = OmniGenProcessor(tokenizer)
    g = torch.Generator().manual_seed(0)
    texts = [
        "a red circle",
        "<img><|image_1|></img> make the red circle green",
        "<img><|image_1|></img> and <img><|image_2|></img> a blue square",
    ]
    images = [
        [],
        [torch.randn(4, 8, 8, generator=g)],
        [torch.randn(4, 4, 6, generator=g), torch.randn(4, 8, 8, generator=g)],
    ]
    with torch.no_grad():
        batch, latents = inputs(processor, m, texts, images)
        cache = m.cache_prefix(batch.input_ids, batch.image_token_mask, latents, batch.layout)
        for t in (0.0, 0.4, 0.9):  # the cache must come back unchanged after each step
            x, tt = torch.randn(3, 4, 8, 8, generator=g), torch.full((3,), t)
            full = m(x, tt, batch.input_ids, batch.image_token_mask, latents, batch.layout)
            cached = m.forward_cached(x, tt, cache, batch.layout)
            assert (cached - full).abs().max() <= 1e-5
            assert cache.get_seq_length() == batch.layout.prefix_length


def test_a_mask_that_sees_the_future_refuses_the_cache(tokenizer):
    from omnigen.model.masks import FullMask

    m = model()
    m.mask = FullMask()
    batch, latents = inputs(OmniGenProcessor(tokenizer), m, ["a red circle"], [[]])
    with pytest.raises(ValueError, match="cannot be cached"):
        m.cache_prefix(batch.input_ids, batch.image_token_mask, latents, batch.layout)
