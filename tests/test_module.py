"""The LightningModule without Hydra: loss, dropout, guidance, self-describing checkpoints."""

import pytest
import torch

from conftest import TINY_PHI3, make_module
from omnigen.data.collate import collate_x2i
from omnigen.data.shapes_module import ShapesX2IDataset
from omnigen.flow.weighting import EditRegionWeighting
from omnigen.processor import placeholder_ids


def shapes_batch(n=8, seed=0):
    data = ShapesX2IDataset({"t2i": 0.5, "edit": 0.5}, image_size=32, seed=seed, length=n)
    return collate_x2i([data[i] for i in range(n)])


def test_training_reduces_the_loss_on_a_fixed_batch(tokenizer):
    torch.manual_seed(0)
    module = make_module(tokenizer, lr=3e-3)
    batch = shapes_batch()
    optimizer = module.configure_optimizers()
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, float(torch.as_tensor(value).detach()))
    losses = []
    for _ in range(30):
        torch.manual_seed(1)  # the same noise and timesteps each step: a pure optimisation check
        loss = module.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert {"train/loss", "train/loss/t2i"} <= set(logged) and any(k.startswith("train/loss/edit/") for k in logged)


def test_condition_dropout_is_independent_for_text_and_images(tokenizer):
    module = make_module(tokenizer, text_dropout=1.0, image_dropout=0.0)
    image = torch.zeros(3, 32, 32)
    texts, images = module.drop_conditions(["<img><|image_1|></img> make the red circle green"], [[image]])
    assert texts == ["<img><|image_1|></img>"] and len(images[0]) == 1
    module.text_dropout, module.image_dropout = 0.0, 1.0
    texts, images = module.drop_conditions(["<img><|image_1|></img> make the red circle green"], [[image]])
    assert texts == ["make the red circle green"] and images == [[]]
    module.text_dropout, module.image_dropout = 0.5, 0.5
    torch.manual_seed(0)
    outcomes = [module.drop_conditions(["<img><|image_1|></img> move the red circle"], [[image]]) for _ in range(400)]
    kept_text = sum("move" in t[0] for t, _ in outcomes) / 400
    kept_image = sum(len(i[0]) == 1 for _, i in outcomes) / 400
    assert 0.4 < kept_text < 0.6 and 0.4 < kept_image < 0.6
    for texts, images in outcomes:  # every rewrite stays a valid prompt
        assert len(set(placeholder_ids(texts[0]))) == len(images[0])


def test_edit_weighting_reaches_the_loss(tokenizer):
    torch.manual_seed(0)
    batch = shapes_batch(8)
    uniform = make_module(tokenizer)
    weighted = make_module(tokenizer, weighting=EditRegionWeighting(threshold=0.05))
    weighted.load_state_dict(uniform.state_dict())
    for m in (uniform, weighted):
        m.log = lambda *a, **k: None
    torch.manual_seed(3)
    a = uniform.training_step(batch, 0)
    torch.manual_seed(3)
    b = weighted.training_step(batch, 0)
    assert b > a  # the edited regions weigh more


def test_guidance_at_scale_one_equals_the_conditional_sample(tokenizer):
    torch.manual_seed(0)
    module = make_module(tokenizer).eval()
    torch.nn.init.normal_(module.transformer.final_layer.linear.weight, std=0.05)
    batch = shapes_batch(4)
    kwargs = dict(instructions=batch["instruction"], input_images=batch["input_images"], num_steps=3)
    plain = module.generate(**kwargs, generator=torch.Generator().manual_seed(5))
    branched = module.generate(**kwargs, guidance_scale=1.0 + 1e-12, image_guidance_scale=1.0,
                               generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(plain, branched, atol=1e-5, rtol=1e-5)
    again = module.generate(**kwargs, generator=torch.Generator().manual_seed(5))
    assert torch.equal(plain, again)  # same seed, same image
    guided = module.generate(**kwargs, guidance_scale=3.0, image_guidance_scale=1.5,
                             generator=torch.Generator().manual_seed(5))
    assert (guided - plain).abs().max() > 1e-3 and guided.shape == (4, 3, 32, 32)


def test_a_module_without_config_says_it_cannot_describe_itself(tokenizer):
    with pytest.raises(RuntimeError, match="model_config"):
        make_module(tokenizer).architecture_config()


def test_vocabulary_must_fit_the_backbone(tokenizer):
    with pytest.raises(ValueError, match="vocabulary"):
        make_module(tokenizer, backbone_config=dict(TINY_PHI3, vocab_size=16))


def test_sizes_off_the_patch_grid_are_named(tokenizer):
    module = make_module(tokenizer)  # pixel VAE, patch 4
    with pytest.raises(ValueError, match="30×32 is not a multiple of 4 pixels"):
        module.generate(["a red circle"], height=30, width=32)
    with pytest.raises(ValueError, match="not a multiple of 4"):
        module.moments(torch.zeros(1, 3, 32, 18))


def test_text_only_guidance_is_the_same_alone_or_beside_an_edit(tokenizer):
    torch.manual_seed(0)
    module = make_module(tokenizer).eval()
    torch.nn.init.normal_(module.transformer.final_layer.linear.weight, std=0.05)
    edit = shapes_batch(8)
    e = edit["task"].index(next(t for t in edit["task"] if t.startswith("edit")))
    text = "a large red circle at the center on a white background"
    kwargs = dict(num_steps=2, guidance_scale=3.0, image_guidance_scale=1.5, negative_instruction="a blue square")
    alone = module.generate([text], **kwargs, generator=torch.Generator().manual_seed(0))
    mixed = module.generate([text, edit["instruction"][e]], [[], edit["input_images"][e]], **kwargs,
                            generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(mixed[:1], alone, atol=2e-5, rtol=1e-4)


def test_posterior_sampling_vae_keeps_edits_and_sampling_deterministic(tokenizer):
    from test_vae import TINY_KL
    from omnigen.model.vae import AutoencoderKLVAE

    torch.manual_seed(0)
    vae = AutoencoderKLVAE(config=TINY_KL, sample_posterior=True)
    module = make_module(tokenizer, vae=vae, patch_size=1, weighting=EditRegionWeighting(threshold=0.05)).eval()
    torch.nn.init.normal_(module.transformer.final_layer.linear.weight, std=0.05)
    batch = shapes_batch(4)
    kwargs = dict(instructions=batch["instruction"], input_images=batch["input_images"], num_steps=2)
    first = module.generate(**kwargs, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(module.generate(**kwargs, generator=torch.Generator().manual_seed(1)), first, atol=0, rtol=0)
    # an unchanged image is never "edited": the weighting compares posterior means, not two draws
    image = batch["output_image"][:1]
    mean, _ = module.moments(image)
    assert torch.all(module.weighting.weights(mean, [module.moments(image)[0][0]]) == 1.0)


def test_edit_source_out_of_range_is_named(tokenizer):
    module = make_module(tokenizer)
    latent = torch.zeros(3, 8, 8)
    assert module.edit_references([[latent], [], [latent]], [0, 0, None], ["edit", "edit", "t2i"])[1:] == [None, None]
    with pytest.raises(ValueError, match="sample 0 .edit/add.: edit_source=1 but it has 1 input image"):
        module.edit_references([[latent]], [1], ["edit/add"])
