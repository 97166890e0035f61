"""The learned-reward plugin on a tiny random CLIP saved to a local directory: the reward is the image-text
cosine that CLIP's own forward computes, mapped to [0, 1]; bad directories are named."""

import numpy as np
import pytest
import torch
from transformers import CLIPConfig, CLIPModel
from transformers.models.clip import CLIPImageProcessorPil

from omnigen.data.shapes.vocab import load_shapes_tokenizer
from omnigen.rl.learned import ClipReward
from omnigen.utils.cli import UserError


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    tokenizer = load_shapes_tokenizer()
    text = dict(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1)
    text |= dict(num_attention_heads=2, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    text |= dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision | dict(patch_size=8), projection_dim=8))
    path = tmp_path_factory.mktemp("clip")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path, model.eval(), tokenizer


def test_the_reward_is_clips_own_image_text_cosine_in_zero_one(clip_dir):
    path, model, tokenizer = clip_dir
    reward = ClipReward(path)
    images = [np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(3)]
    instructions = ["a red circle", "<img><|image_1|></img> make the circle blue", "a blue square at the top"]
    values = reward(instructions, images)
    assert values.shape == (3,) and torch.all((values >= 0) & (values <= 1))
    # by hand: CLIP's forward on the same inputs, placeholders dropped from the text
    texts = ["a red circle", "make the circle blue", "a blue square at the top"]
    tokens = tokenizer(texts, padding=True, return_tensors="pt")
    pixels = reward.image_processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], pixel_values=pixels)
    cosine = (out.image_embeds * out.text_embeds).sum(-1)  # both unit length
    torch.testing.assert_close(values, (cosine + 1) / 2)
    assert len(set(values.tolist())) == 3  # each image is scored against its own instruction


def test_a_missing_or_foreign_directory_is_named(clip_dir, tmp_path):
    with pytest.raises(UserError, match="no such file or directory"):
        ClipReward(tmp_path / "nope")
    with pytest.raises(UserError, match="cannot be loaded as a CLIP-style reward model"):
        ClipReward(tmp_path)  # an empty directory
    with pytest.raises(ValueError, match="2 instructions for 1 images"):
        ClipReward(clip_dir[0])(["a", "b"], [np.zeros((32, 32, 3), dtype=np.uint8)])
