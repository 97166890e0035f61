"""Processor: a round trip from instruction to ids/spans/layout and back, and its errors."""

import pytest
import torch

from omnigen.processor import OmniGenProcessor, PromptError, drop_images, drop_text, placeholder_ids


@pytest.fixture
def processor(tokenizer):
    return OmniGenProcessor(tokenizer)


def test_round_trip_text_and_image_spans(processor, tokenizer):
    instruction = "<img><|image_1|></img> make the red circle green and <img><|image_2|></img> remove the blue square"
    prompt = processor.tokenize(instruction, [4, 9])
    ids = prompt.input_ids
    assert ids[0] == tokenizer.bos_token_id
    assert [(e - s, i) for s, e, i in prompt.image_spans] == [(4, 0), (9, 1)]
    # every span is wrapped by <img> ... </img> and filled with the placeholder id
    img, end_img = tokenizer.convert_tokens_to_ids(["<img>", "</img>"])
    for start, end, _ in prompt.image_spans:
        assert ids[start - 1] == img and ids[end] == end_img
        assert set(ids[start:end]) == {tokenizer.pad_token_id}
    # the text outside the spans decodes back to the templated instruction
    text_ids = [t for k, t in enumerate(ids) if not any(s <= k < e for s, e, _ in prompt.image_spans)]
    decoded = tokenizer.decode(text_ids[1:])
    expected = processor.template.format(instruction=instruction.replace("<|image_1|>", "").replace("<|image_2|>", ""))
    assert decoded.split() == tokenizer.decode(tokenizer(expected, add_special_tokens=False)["input_ids"]).split()
    assert "make the red circle green" in decoded and "remove the blue square" in decoded


def test_repeated_and_reordered_placeholders(processor):
    prompt = processor.tokenize("<img><|image_2|></img> like <img><|image_1|></img> and <img><|image_2|></img>", [1, 2])
    assert [i for _, _, i in prompt.image_spans] == [1, 0, 1]
    assert [e - s for s, e, _ in prompt.image_spans] == [2, 1, 2]


@pytest.mark.parametrize(
    "instruction, counts, message",
    [
        ("<img><|image_1|></img> and <img><|image_3|></img>", [4, 4], "without gaps"),
        ("<img><|image_2|></img> alone", [4], "without gaps"),
        ("<img><|image_1|></img> one image", [4, 4], "references 1 image"),
        ("a red circle", [4], "references 0 image"),
        ("<|image_1|> unwrapped", [4], "wrapped"),
        ("<img><|image_x|></img> bad id", [4], "malformed"),
    ],
)
def test_placeholder_errors_name_the_problem(processor, instruction, counts, message):
    with pytest.raises(PromptError, match=message):
        processor.tokenize(instruction, counts)


def test_token_limit(tokenizer):
    processor = OmniGenProcessor(tokenizer, max_condition_tokens=12)
    with pytest.raises(PromptError, match="over the limit of 12"):
        processor.tokenize("<img><|image_1|></img> a red circle", [16])


def test_template_must_hold_the_instruction(tokenizer):
    with pytest.raises(ValueError, match="instruction"):
        OmniGenProcessor(tokenizer, template="no slot")
    custom = OmniGenProcessor(tokenizer, template="{instruction}", add_bos=False)
    assert (
        custom.tokenize("a red circle", []).input_ids
        == tokenizer("a red circle", add_special_tokens=False)["input_ids"]
    )


def test_batch_left_pads_and_describes_the_sequence(processor, tokenizer):
    long = processor.tokenize("<img><|image_1|></img> make the red circle green", [4])
    short = processor.tokenize("a red circle", [])
    batch = processor.batch([long, short], output=6)
    lc = len(long.input_ids)
    assert batch.input_ids.shape == (2, lc) and batch.layout.span_ids.shape == (2, lc + 1 + 6)
    pad = lc - len(short.input_ids)
    assert torch.all(batch.input_ids[1, :pad] == tokenizer.pad_token_id)
    assert batch.input_ids[1, pad:].tolist() == short.input_ids
    assert not batch.layout.valid[1, :pad].any() and batch.layout.valid[1, pad:].all() and batch.layout.valid[0].all()
    assert batch.image_token_mask.sum().item() == 4 and batch.image_order == [(0, 0)]
    span = batch.layout.span_ids
    assert (span[0] == 1).sum() == 4 and (span[0, -6:] == 2).all() and (span[1, -6:] == 1).all()
    assert span[:, lc].tolist() == [0, 0]  # the time token belongs to no image span


def test_condition_dropout_rewrites():
    instruction = "<img><|image_1|></img> make the red circle green"
    assert drop_text(instruction) == "<img><|image_1|></img>"
    assert drop_images(instruction) == "make the red circle green"
    assert placeholder_ids(drop_text(instruction)) == [1] and placeholder_ids(drop_images(instruction)) == []
    assert drop_text("a red circle") == ""
