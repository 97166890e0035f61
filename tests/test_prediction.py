"""model.prediction=image: the transformer predicts the clean image and hands on the velocity that
reaches it, so the loss, the Euler sampler, the kv-cache and packing all keep working on velocities."""

import pytest
import torch
from conftest import TINY_PHI3, edit_and_t2i_inputs

from omnigen.flow.rectified import MIN_VELOCITY_GAP, interpolate, velocity_from_image, velocity_target
from omnigen.flow.sampler import euler_sample
from omnigen.model.backbone import build_hf_backbone
from omnigen.model.masks import OmniGenMask
from omnigen.model.omnigen import OmniGen


def model(prediction: str) -> OmniGen:
    torch.manual_seed(0)
    m = OmniGen(
        build_hf_backbone(config=TINY_PHI3),
        OmniGenMask(),
        in_channels=4,
        patch_size=2,
        pos_embed_max_size=16,
        prediction=prediction,
    ).eval()
    for layer in (m.final_layer.linear, m.final_layer.adaLN_modulation[1]):  # zero-initialised: make it say something
        torch.nn.init.normal_(layer.weight, std=0.05)
    return m


def test_the_velocity_from_a_right_image_prediction_is_the_true_velocity_and_one_step_lands_on_it():
    g = torch.Generator().manual_seed(0)
    data, noise, t = (
        torch.randn(3, 4, 5, 5, generator=g),
        torch.randn(3, 4, 5, 5, generator=g),
        torch.tensor([0.0, 0.5, 0.9]),
    )
    x_t = interpolate(data, noise, t)
    torch.testing.assert_close(velocity_from_image(data, x_t, t), velocity_target(data, noise))
    # one Euler step over the rest of the path ends on the predicted image
    torch.testing.assert_close(x_t + (1 - t).view(-1, 1, 1, 1) * velocity_from_image(data, x_t, t), data)
    # at t = 1 the gap is floored, so the velocity stays finite
    at_end = velocity_from_image(data, x_t, torch.ones(3))
    assert torch.isfinite(at_end).all()
    torch.testing.assert_close(at_end, (data - x_t) / MIN_VELOCITY_GAP)


def test_an_image_predicting_model_hands_on_the_velocity_towards_its_image(tokenizer):
    _, _, _, x, t, batch, latents = edit_and_t2i_inputs(tokenizer)
    velocity_model, image_model = model("velocity"), model("image")
    image_model.load_state_dict(velocity_model.state_dict())  # same weights: only the reading of the output differs
    with torch.no_grad():
        raw = velocity_model(x, t, batch.input_ids, batch.image_token_mask, latents, batch.layout)
        out = image_model(x, t, batch.input_ids, batch.image_token_mask, latents, batch.layout)
        torch.testing.assert_close(out, (raw - x) / (1 - t).view(-1, 1, 1, 1))
        # the kv-cached path reads it the same way
        cache = image_model.cache_prefix(batch.input_ids, batch.image_token_mask, latents, batch.layout)
        torch.testing.assert_close(image_model.forward_cached(x, t, cache, batch.layout), out, atol=2e-5, rtol=1e-4)


def test_a_packed_image_predicting_sample_gets_what_it_gets_alone(tokenizer):
    processor, prompts, images, x, t, _, _ = edit_and_t2i_inputs(tokenizer)
    m = model("image")
    packed = processor.pack(prompts, [(3, 3), (3, 3)], max_tokens=400)
    assert packed.input_ids.shape[0] == 1  # both samples in one row
    latents = [images[b][i] for b, i in packed.image_order]
    with torch.no_grad():
        stacked = m.forward_packed(x, t, packed, latents)
        listed = m.forward_packed(list(x), t, packed, latents)  # samples of different sizes come as a list
        for b in range(2):
            alone = processor.batch(prompts[b : b + 1], (3, 3))
            expected = m(x[b : b + 1], t[b : b + 1], alone.input_ids, alone.image_token_mask, images[b], alone.layout)[
                0
            ]
            torch.testing.assert_close(stacked[b], expected, atol=2e-5, rtol=1e-4)
            torch.testing.assert_close(listed[b], expected, atol=2e-5, rtol=1e-4)


def test_euler_sampling_of_an_image_predicting_model_ends_on_its_last_prediction(tokenizer):
    _, _, _, x, _, batch, latents = edit_and_t2i_inputs(tokenizer)
    m = model("image")
    seen = []

    def velocity(x_t, t):
        v = m(x_t, t, batch.input_ids, batch.image_token_mask, latents, batch.layout)
        seen.append(x_t + (1 - t).view(-1, 1, 1, 1) * v)  # the image it predicts at this step
        return v

    with torch.no_grad():
        final = euler_sample(velocity, x, num_steps=4)
    torch.testing.assert_close(final, seen[-1])


def test_a_bad_prediction_is_refused_and_an_image_predicting_fit_loads_but_does_not_export(tmp_path):
    from hydra_utils import FAST, compose_fit

    from omnigen.checkpoints.diffusers import diffusers_transformer_config
    from omnigen.checkpoints.native import load_module
    from omnigen.fit import train

    with pytest.raises(ValueError, match="prediction must be one of"):
        model("noise")
    objects = train(
        compose_fit(
            FAST
            + [
                "model.prediction=image",
                "trainer.max_steps=2",
                "logger=csv",
                "callbacks.sample_grid=null",
                "model/positions=sequential",
            ],
            tmp_path,
        )
    )
    assert objects["module"].transformer.prediction == "image"
    loaded = load_module(tmp_path / "checkpoints" / "last.ckpt")
    assert loaded.transformer.prediction == "image"
    with pytest.raises(ValueError, match="outputs the velocity"):
        diffusers_transformer_config(loaded.transformer)
