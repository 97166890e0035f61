"""adaLN in every decoder layer (model.modulate_layers): identity when untrained, time and output
tokens only, so the kv-cache, packing and gradients behave as without it."""

import pytest
import torch
from conftest import TINY_PHI3, edit_and_t2i_inputs

from omnigen.model.backbone import build_hf_backbone
from omnigen.model.masks import OmniGenMask
from omnigen.model.omnigen import OmniGen


def model(modulate: bool, randomise_modulation: bool = True) -> OmniGen:
    torch.manual_seed(0)
    m = OmniGen(
        build_hf_backbone(config=TINY_PHI3),
        OmniGenMask(),
        in_channels=4,
        patch_size=2,
        pos_embed_max_size=16,
        modulate_layers=modulate,
    ).eval()
    for layer in (m.final_layer.linear, m.final_layer.adaLN_modulation[1]):
        torch.nn.init.normal_(layer.weight, std=0.05)
    if modulate and randomise_modulation:
        for mlp in m.layer_modulation.modulation:
            torch.nn.init.normal_(mlp[1].weight, std=0.1)
    return m


def test_untrained_modulation_leaves_the_model_as_it_is(tokenizer):
    _, _, _, x, t, batch, latents = edit_and_t2i_inputs(tokenizer)
    plain, modulated = model(False), model(True, randomise_modulation=False)
    modulated.load_state_dict(plain.state_dict(), strict=False)  # same weights; the modulation stays zero
    assert (
        sum(p.numel() for p in modulated.layer_modulation.parameters()) == 2 * 6 * 64 * 65
    )  # 2 layers, Linear(64, 384)
    with torch.no_grad():
        torch.testing.assert_close(
            modulated(x, t, batch.input_ids, batch.image_token_mask, latents, batch.layout),
            plain(x, t, batch.input_ids, batch.image_token_mask, latents, batch.layout),
        )


def test_only_time_and_output_tokens_are_modulated_so_the_cache_holds(tokenizer):
    _, _, _, x, t, batch, latents = edit_and_t2i_inputs(tokenizer)
    m = model(True)
    with torch.no_grad():
        reference = m(x, t, batch.input_ids, batch.image_token_mask, latents, batch.layout)
        assert not torch.allclose(
            reference, model(False)(x, t, batch.input_ids, batch.image_token_mask, latents, batch.layout), atol=1e-4
        )
        cache = m.cache_prefix(batch.input_ids, batch.image_token_mask, latents, batch.layout)
        for _ in range(2):
            torch.testing.assert_close(m.forward_cached(x, t, cache, batch.layout), reference, atol=2e-5, rtol=1e-4)
        # the condition's hidden states do not depend on t: the prefix is the same at every step
        captured = []
        hook = m.llm.norm.register_forward_hook(
            lambda mod, i, out: captured.append(out[:, : batch.layout.prefix_length])
        )
        m(x, t, batch.input_ids, batch.image_token_mask, latents, batch.layout)
        m(x, 1 - t, batch.input_ids, batch.image_token_mask, latents, batch.layout)
        hook.remove()
        torch.testing.assert_close(captured[0], captured[1])


def test_a_packed_sample_gets_what_it_gets_alone_and_the_modulation_trains(tokenizer):
    processor, prompts, images, x, t, _, _ = edit_and_t2i_inputs(tokenizer)
    m = model(True)
    packed = processor.pack(prompts, [(3, 3), (3, 3)], max_tokens=400)
    assert packed.input_ids.shape[0] == 1  # both samples in one row
    latents = [images[b][i] for b, i in packed.image_order]
    out = m.forward_packed(x, t, packed, latents)
    with torch.no_grad():
        for b in range(2):
            alone = processor.batch(prompts[b : b + 1], (3, 3))
            torch.testing.assert_close(
                out[b],
                m(x[b : b + 1], t[b : b + 1], alone.input_ids, alone.image_token_mask, images[b], alone.layout)[0],
                atol=2e-5,
                rtol=1e-4,
            )
    out.square().mean().backward()
    grads = [p.grad for p in m.layer_modulation.parameters()]
    assert all(g is not None for g in grads) and all(g.abs().sum() > 0 for g in grads)


def test_a_fit_with_modulated_layers_loads_and_diffusers_refuses_it(tmp_path):
    from hydra_utils import FAST, compose_fit

    from omnigen.checkpoints.diffusers import diffusers_transformer_config
    from omnigen.checkpoints.native import load_module
    from omnigen.fit import train

    objects = train(
        compose_fit(
            FAST
            + [
                "model.modulate_layers=true",
                "model.backbone.gradient_checkpointing=true",
                "trainer.max_steps=2",
                "logger=csv",
                "callbacks.sample_grid=null",
                "model/positions=sequential",
            ],
            tmp_path,
        )
    )  # export refuses for adaLN alone
    trained = objects["module"].transformer.layer_modulation.modulation[0][1].weight
    assert trained.abs().sum() > 0  # it trained (from zero), through activation checkpointing
    loaded = load_module(tmp_path / "checkpoints" / "last.ckpt")
    assert torch.equal(loaded.transformer.layer_modulation.modulation[0][1].weight, trained.detach())
    with pytest.raises(ValueError, match="adaLN in every decoder layer"):
        diffusers_transformer_config(loaded.transformer)
