"""The LightningModule without Hydra: loss, dropout, guidance, self-describing checkpoints."""

import pytest
import torch
from conftest import TINY_PHI3, make_module

from omnigen.data.collate import collate_samples
from omnigen.data.modules.shapes import ShapesX2IDataset
from omnigen.flow.weighting import EditRegionWeighting
from omnigen.processor import placeholder_ids


def shapes_batch(n=8, seed=0):
    data = ShapesX2IDataset({"text_to_image": 0.5, "mixed_modal": 0.5}, image_size=32, seed=seed, length=n)
    return collate_samples([data[i] for i in range(n)])


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
    assert {"train/loss", "train/loss/text_to_image/t2i"} <= set(logged)
    assert any(k.startswith("train/loss/mixed_modal/edit/") for k in logged)


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


def test_a_module_without_config_says_it_cannot_describe_itself(tokenizer):
    with pytest.raises(RuntimeError, match="model_config"):
        make_module(tokenizer).architecture_config()


def test_vocabulary_must_fit_the_backbone(tokenizer):
    with pytest.raises(ValueError, match="vocabulary"):
        make_module(tokenizer, backbone_config=dict(TINY_PHI3, vocab_size=16))


def test_sizes_off_the_patch_grid_are_named(tokenizer):
    module = make_module(tokenizer)  # pixel VAE, patch 4
    with pytest.raises(ValueError, match="30×32 is not a multiple of 4 pixels"):
        module.check_size(30, 32)
    with pytest.raises(ValueError, match="not a multiple of 4"):
        module.moments(torch.zeros(1, 3, 32, 18))


def test_edit_source_out_of_range_is_named(tokenizer):
    module = make_module(tokenizer)
    latent = torch.zeros(3, 8, 8)
    assert module.edit_references([[latent], [], [latent]], [0, 0, None], ["edit", "edit", "t2i"])[1:] == [None, None]
    with pytest.raises(ValueError, match="sample 0 .edit/add.: edit_source=1 but it has 1 input image"):
        module.edit_references([[latent]], [1], ["edit/add"])
