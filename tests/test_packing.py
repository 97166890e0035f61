"""Sequence packing: several samples per row with block-diagonal masks and restarted positions
give each sample exactly what it gets alone, forward and backward, at any output size."""

import pytest
import torch
from conftest import TINY_PHI3

from omnigen.model.backbone import build_hf_backbone
from omnigen.model.masks import CausalMask, FullMask, OmniGenMask, PrefixLMMask
from omnigen.model.omnigen import OmniGen
from omnigen.processor import OmniGenProcessor, balanced_rows

TEXTS = [
    "<img><|image_1|></img> make the red circle green",
    "a red circle",
    "<img><|image_1|></img> and <img><|image_2|></img> a blue square",
    "a small green triangle at the top",
]


def randomised_model(mask, attn="sdpa") -> OmniGen:
    torch.manual_seed(0)
    m = OmniGen(
        build_hf_backbone(config=TINY_PHI3, attn_implementation=attn),
        mask,
        in_channels=4,
        patch_size=2,
        pos_embed_max_size=16,
    ).eval()
    for layer in (m.final_layer.linear, m.final_layer.adaLN_modulation[1]):
        torch.nn.init.normal_(layer.weight, std=0.05)
    return m


def samples():
    """Four samples with 1, 0, 2, 0 input images and three output sizes."""
    g = torch.Generator().manual_seed(0)
    images = [
        [torch.randn(4, 8, 8, generator=g)],
        [],
        [torch.randn(4, 4, 6, generator=g), torch.randn(4, 8, 8, generator=g)],
        [],
    ]
    outputs = [
        torch.randn(4, 8, 8, generator=g),
        torch.randn(4, 4, 6, generator=g),
        torch.randn(4, 8, 8, generator=g),
        torch.randn(4, 6, 4, generator=g),
    ]
    return images, outputs, torch.tensor([0.1, 0.5, 0.7, 0.95])


def tokens(z: torch.Tensor) -> int:
    return (z.shape[-2] // 2) * (z.shape[-1] // 2)


def pack(processor, images, outputs, max_tokens, texts=TEXTS):
    prompts = [processor.tokenize(text, [tokens(z) for z in zs]) for text, zs in zip(texts, images, strict=True)]
    batch = processor.pack(prompts, [tokens(z) for z in outputs], max_tokens)
    return batch, [images[b][i] for b, i in batch.image_order]


def alone(m, processor, images, outputs, t, b):
    """Sample b through the left-padded `forward`, as a batch of one."""
    prompt = processor.tokenize(TEXTS[b], [tokens(z) for z in images[b]])
    batch = processor.batch([prompt], tokens(outputs[b]))
    return m(outputs[b][None], t[b : b + 1], batch.input_ids, batch.image_token_mask, images[b], batch.layout)[0]


@pytest.mark.parametrize("mask", [OmniGenMask(), CausalMask(), FullMask(), PrefixLMMask()], ids=repr)
def test_a_packed_sample_gets_the_velocity_it_gets_alone(mask, tokenizer):
    m, processor = randomised_model(mask), OmniGenProcessor(tokenizer)
    images, outputs, t = samples()
    batch, latents = pack(processor, images, outputs, max_tokens=120)
    assert batch.input_ids.shape[0] < len(TEXTS)  # some row really holds several samples
    with torch.no_grad():
        packed = m.forward_packed(outputs, t, batch, latents)
        for b in range(len(TEXTS)):
            assert packed[b].shape == outputs[b].shape
            torch.testing.assert_close(packed[b], alone(m, processor, images, outputs, t, b), atol=2e-5, rtol=1e-4)
        # outputs of one size may come stacked: one patch embedding, one (S, C, H, W) result
        same = [outputs[0], outputs[2]]
        batch, latents = pack(processor, [images[0], images[2]], same, max_tokens=200, texts=[TEXTS[0], TEXTS[2]])
        stacked = m.forward_packed(torch.stack(same), t[[0, 2]], batch, latents)
        torch.testing.assert_close(
            stacked, torch.stack(m.forward_packed(same, t[[0, 2]], batch, latents)), atol=1e-6, rtol=0
        )


def test_packed_gradients_equal_the_per_sample_gradients(tokenizer):
    processor, images, (outputs, t) = OmniGenProcessor(tokenizer), samples()[0], samples()[1:]
    grads = []
    for packed in (True, False):
        m = randomised_model(OmniGenMask())
        if packed:
            batch, latents = pack(processor, images, outputs, max_tokens=120)
            loss = sum(v.square().mean() for v in m.forward_packed(outputs, t, batch, latents))
        else:
            loss = sum(alone(m, processor, images, outputs, t, b).square().mean() for b in range(len(TEXTS)))
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_packed_layout_keeps_samples_apart(tokenizer):
    processor = OmniGenProcessor(tokenizer)
    images, outputs, _ = samples()
    batch, _ = pack(processor, images, outputs, max_tokens=120)
    layout = batch.layout
    segments, positions = layout.segment_ids, layout.position_ids()
    allowed = OmniGenMask().allowed(layout)  # (R, L, L)
    different = segments[:, :, None] != segments[:, None, :]
    assert not (allowed & different).any()  # no token attends to another sample, nor to padding
    for r in range(segments.shape[0]):
        for s in segments[r].unique().tolist():
            if s:  # positions restart at 0 and run contiguously through each sample
                where = segments[r] == s
                assert positions[r][where].tolist() == list(range(int(where.sum())))
    # time and output tokens sit where the batch says, sample after sample
    flat_segments = segments.flatten()
    assert flat_segments[batch.time_index].ne(0).all() and batch.output_index.numel() == sum(batch.output_tokens)
    assert batch.layout.valid.flatten()[batch.output_index].all()


def test_balanced_rows_respect_the_budget_and_place_every_sample_once():
    lengths = [209, 80, 140, 209, 80, 140, 80, 140]
    rows = balanced_rows(lengths, 420)
    assert sorted(i for row in rows for i in row) == list(range(8))
    assert max(sum(lengths[i] for i in row) for row in rows) <= 420
    padded = len(rows) * max(sum(lengths[i] for i in row) for row in rows)
    assert padded <= 1.05 * sum(lengths)  # 1078 tokens in 5 even rows of at most 220, not 8 rows of 209
    assert balanced_rows(lengths, None) == [[i] for i in range(8)]
    # with attention's per-pair cost, merging equal rows only lengthens them: they stay apart
    assert len(balanced_rows([209] * 4, 420)) == 2 and balanced_rows([209] * 4, 420, 1e-3) == [[0], [1], [2], [3]]
    assert len(balanced_rows(lengths, 420, 5e-4)) < 8  # the mixed batch still packs
    # a sample over the budget sits alone; rows then hold at most the longest sample
    rows = balanced_rows(lengths, 200, 5e-4)
    assert [0] in rows and [3] in rows and max(sum(lengths[i] for i in row) for row in rows) <= 209
    with pytest.raises(ValueError, match="packing budget must be >= 1"):
        balanced_rows(lengths, 0)


def test_packing_a_mixed_resolution_batch_wastes_under_5_percent(tokenizer):
    """32 prompts with 0-2 input images and 16², 32², 48² x 32 outputs, as an X2I mixture batch holds them."""
    processor = OmniGenProcessor(tokenizer)
    g = torch.Generator().manual_seed(0)
    prompts, outputs = [], []
    for i in range(32):
        n = i % 3
        text = [TEXTS[1], TEXTS[0], TEXTS[2]][n]
        prompts.append(processor.tokenize(text, [16 * int(torch.randint(1, 5, (), generator=g)) for _ in range(n)]))
        outputs.append([16, 64, 96][int(torch.randint(0, 3, (), generator=g))])
    unpacked = processor.pack(prompts, outputs, None)
    packed = processor.pack(prompts, outputs, 1024)
    assert unpacked.padding_waste == pytest.approx(packed.unpacked_padding_waste)
    assert unpacked.padding_waste > 0.3 and packed.padding_waste <= 0.05


def test_flex_attention_block_masks_give_the_dense_result(tokenizer):
    """The FlexAttention path (BlockMask from the same mask_mod) against SDPA's dense mask: packed
    training rows and kv-cached sampling steps (forward only: torch 2.13 has no flex backward on the
    CPU). Compiles flex_attention for the CPU (~10 s a shape)."""
    # torch 2.13's CPU inductor emits uncompilable C++ for flex attention with dynamic shapes
    # (`cur_qSplitSize6` undeclared): compile each shape statically. Dynamo's own patch, not pytest's
    # monkeypatch: monkeypatch's undo deletes the attribute, which hides the option for every later
    # compile in the process ("torch._dynamo.config.automatic_dynamic_shapes does not exist").
    with torch._dynamo.config.patch(automatic_dynamic_shapes=False):
        check_flex_against_dense(tokenizer)


def check_flex_against_dense(tokenizer):
    processor = OmniGenProcessor(tokenizer)
    images, outputs, t = samples()
    dense, flex = randomised_model(OmniGenMask()), randomised_model(OmniGenMask(), attn="flex_attention")
    batch, latents = pack(processor, images, outputs, max_tokens=120)
    with torch.no_grad():
        for a, b in zip(
            dense.forward_packed(outputs, t, batch, latents),
            flex.forward_packed(outputs, t, batch, latents),
            strict=True,
        ):
            torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
        prompts = [
            processor.tokenize(text, [tokens(z) for z in zs]) for text, zs in zip(TEXTS[:3], images[:3], strict=True)
        ]
        left = processor.batch(prompts, 16)
        ordered = [images[b][i] for b, i in left.image_order]
        x = torch.randn(3, 4, 8, 8)
        reference = dense(x, t[:3], left.input_ids, left.image_token_mask, ordered, left.layout)
        cache = flex.cache_prefix(left.input_ids, left.image_token_mask, ordered, left.layout)
        torch.testing.assert_close(flex.forward_cached(x, t[:3], cache, left.layout), reference, atol=2e-5, rtol=1e-4)


def test_a_mixed_resolution_fit_packs_its_batches(tmp_path):
    """data.mixed_sizes: one batch holds 16² edits and 32² text-to-image samples; training packs them
    into rows of model.pack_tokens and logs how much of each batch was padding."""
    import csv
    import itertools

    from hydra_utils import FAST, compose_fit

    from omnigen.fit import train

    cfg = compose_fit(
        FAST
        + [
            "logger=csv",
            "data=mixture",
            "data.mixed_sizes=true",
            "data.resolution.mode=raw",
            "data.batch_size=8",
            "data.families.edit.sources.0.image_size=16",
            "data.ratios={t2i: 0.5, subject: 0, visual_condition: 0, edit: 0.5, other: 0}",
            "model.pack_tokens=400",
            "callbacks.sample_grid=null",
        ],
        tmp_path,
    )
    objects = train(cfg)
    assert objects["trainer"].global_step == 4 and objects["module"].pack_tokens == 400
    batches = itertools.islice(objects["datamodule"].train_dataloader(), 4)
    assert any(len({tuple(image.shape[-2:]) for image in b["output_image"]}) == 2 for b in batches)  # 16² with 32²
    rows = list(csv.DictReader(open(next(tmp_path.glob("csv/**/metrics.csv")))))
    waste = [float(r["train/padding_waste"]) for r in rows if r.get("train/padding_waste")]
    assert len(waste) == 4 and all(0 <= w < 0.5 for w in waste)


def test_packing_and_attention_misuse_is_a_clear_error(tokenizer):
    m, processor = randomised_model(OmniGenMask()), OmniGenProcessor(tokenizer)
    images, outputs, t = samples()
    batch, latents = pack(processor, images, outputs, max_tokens=120)
    with pytest.raises(ValueError, match="goes through forward_packed"):
        m(outputs[0][None], t[:1], batch.input_ids, batch.image_token_mask, latents, batch.layout)
    with pytest.raises(ValueError, match="output_tokens must all be >= 1"):
        processor.pack([processor.tokenize(TEXTS[1], [])], [0])
    # a cached step given the full-sequence mask is refused before it can touch the cache
    left = processor.batch([processor.tokenize(TEXTS[1], [])], 16)
    cache = m.cache_prefix(left.input_ids, left.image_token_mask, [], left.layout)
    with pytest.raises(ValueError, match="query rows"):
        m.forward_cached(outputs[0][None], t[:1], cache, left.layout, m.attention_mask(left.layout, torch.float32))
    assert cache.get_seq_length() == left.layout.prefix_length
    m.llm.config._attn_implementation = "flash_attention_2"  # ignores 4-D masks: samples would see each other
    with pytest.raises(ValueError, match="cannot take OmniGen's masks"):
        m.attention_mask(left.layout, torch.float32)
