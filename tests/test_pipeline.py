"""OmniGenPipeline: kv-cache = no cache, guidance invariants, seeds, input handling, export round trip."""

import logging

import numpy as np
import pytest
import torch
from conftest import make_module
from PIL import Image

from omnigen.data.collate import collate_samples
from omnigen.data.modules.shapes import ShapesX2IDataset
from omnigen.flow.sampler import SamplerSettings
from omnigen.flow.weighting import EditRegionWeighting
from omnigen.pipeline import OmniGenPipeline
from omnigen.utils.cli import UserError
from omnigen.utils.images import to_pil

EDIT = "<img><|image_1|></img> make the red circle green"
TWO = "<img><|image_1|></img> and <img><|image_2|></img> a blue square"
T2I = "a large red circle at the center on a white background"


def shapes_batch(n=8, seed=0):
    data = ShapesX2IDataset({"text_to_image": 0.5, "mixed_modal": 0.5}, image_size=32, seed=seed, length=n)
    return collate_samples([data[i] for i in range(n)])


def pipeline(tokenizer, **kwargs) -> OmniGenPipeline:
    """A random tiny model whose output layer is not zero, so velocities carry a signal."""
    torch.manual_seed(0)
    module = make_module(tokenizer, **kwargs).eval()
    for layer in (module.transformer.final_layer.linear, module.transformer.final_layer.adaLN_modulation[1]):
        torch.nn.init.normal_(layer.weight, std=0.05)
    return OmniGenPipeline(module)


def images(*sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=g) * 2 - 1 for h, w in sizes]


def test_kv_cache_gives_the_uncached_image_with_0_1_and_2_input_images(tokenizer):
    pipe = pipeline(tokenizer)
    prompts = [T2I, EDIT, TWO]
    inputs = [[], images((32, 32)), images((16, 24), (32, 32), seed=1)]
    kwargs = dict(
        height=32,
        width=32,
        num_inference_steps=4,
        guidance_scale=2.5,
        img_guidance_scale=1.5,
        negative_prompt="a blue square",
    )
    cached = pipe.generate(prompts, inputs, **kwargs, generator=torch.Generator().manual_seed(0), use_kv_cache=True)
    plain = pipe.generate(prompts, inputs, **kwargs, generator=torch.Generator().manual_seed(0), use_kv_cache=False)
    assert (cached - plain).abs().max() <= 1e-5
    assert cached.std() > 0.05  # a real image, not a constant


def test_guidance_at_scale_one_equals_the_conditional_branch(tokenizer):
    """All three branches run and combine at scales 1: the result is the conditional velocity."""
    pipe = pipeline(tokenizer)
    module = pipe.module
    prompts, inputs = [EDIT, T2I], [module.encode_inputs([images((32, 32))])[0], []]
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0.3, 0.6])
    with torch.no_grad():
        batch, latents = module.prepare(prompts, inputs, x)
        conditional = pipe.velocity_fn(batch, latents, 1, False, 1.0, 1.0, use_kv_cache=False)(x, t)
        branched_prompts = prompts + ["<img><|image_1|></img>", ""] + ["", ""]
        batch3, latents3 = module.prepare(branched_prompts, inputs + inputs + [[], []], x)
        for cache in (False, True):
            guided = pipe.velocity_fn(batch3, latents3, 3, True, 1.0, 1.0, use_kv_cache=cache)(x, t)
            torch.testing.assert_close(guided, conditional, atol=1e-5, rtol=1e-5)
    assert conditional.abs().max() > 1e-3


def test_same_seed_same_image_and_guidance_changes_it(tokenizer):
    pipe = pipeline(tokenizer)
    batch = shapes_batch(4)
    kwargs = dict(
        prompt=batch["instruction"],
        input_images=batch["input_images"],
        num_inference_steps=3,
        height=32,
        width=32,
        output_type="pt",
        progress=False,
    )
    plain = pipe(**kwargs, guidance_scale=1.0, img_guidance_scale=1.0, seed=5)
    assert torch.equal(plain, pipe(**kwargs, guidance_scale=1.0, img_guidance_scale=1.0, seed=5))
    assert not torch.equal(plain, pipe(**kwargs, guidance_scale=1.0, img_guidance_scale=1.0, seed=6))
    guided = pipe(**kwargs, guidance_scale=3.0, img_guidance_scale=1.5, seed=5)
    assert (guided - plain).abs().max() > 1e-3 and guided.shape == (4, 3, 32, 32)


def test_text_only_guidance_is_the_same_alone_or_beside_an_edit(tokenizer):
    """Two branches for text-only prompts: beside an edit, its image branch is its uncond."""
    pipe = pipeline(tokenizer)
    kwargs = dict(
        height=32,
        width=32,
        num_inference_steps=2,
        guidance_scale=3.0,
        img_guidance_scale=1.5,
        negative_prompt="a blue square",
    )
    alone = pipe.generate([T2I], **kwargs, generator=torch.Generator().manual_seed(0))
    mixed = pipe.generate([T2I, EDIT], [[], images((32, 32))], **kwargs, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(mixed[:1], alone, atol=2e-5, rtol=1e-4)


def test_posterior_sampling_vae_keeps_sampling_deterministic(tokenizer):
    from test_vae import TINY_KL

    from omnigen.model.vae import AutoencoderKLVAE

    torch.manual_seed(0)
    pipe = pipeline(
        tokenizer,
        vae=AutoencoderKLVAE(config=TINY_KL, sample_posterior=True),
        patch_size=1,
        weighting=EditRegionWeighting(threshold=0.05),
    )
    batch = shapes_batch(4)
    kwargs = dict(prompts=batch["instruction"], input_images=batch["input_images"], num_inference_steps=2)
    first = pipe.generate(**kwargs, generator=torch.Generator().manual_seed(1))
    assert torch.equal(pipe.generate(**kwargs, generator=torch.Generator().manual_seed(1)), first)


def test_any_size_on_the_token_grid_and_named_errors_off_it(tokenizer):
    pipe = pipeline(tokenizer)  # pixel VAE, patch 4: 4 pixels per token
    out = pipe(T2I, height=24, width=40, num_inference_steps=1, seed=0, progress=False)
    assert out[0].size == (40, 24)
    with pytest.raises(ValueError, match="30×32 is not a multiple of 4 pixels"):
        pipe(T2I, height=30, width=32, num_inference_steps=1)
    with pytest.raises(ValueError, match="pass height and width"):
        pipe(T2I, num_inference_steps=1)  # a module built by hand records no training size
    with pytest.raises(ValueError, match="either seed or generator"):
        pipe(T2I, height=32, width=32, seed=0, generator=torch.Generator())


def test_input_images_of_every_kind_are_fitted_to_the_token_grid(tokenizer, tmp_path, caplog):
    pipe = pipeline(tokenizer)
    array = (np.random.default_rng(0).random((30, 50, 3)) * 255).astype(np.uint8)
    path = tmp_path / "in.png"
    Image.fromarray(array).save(path)
    with caplog.at_level(logging.INFO, logger="omnigen"):
        for image in (array, Image.fromarray(array), path, str(path)):
            fitted = pipe.prepare_input_image(image, 1024, "prompt 0, input image 1")
            assert fitted.shape == (3, 28, 48)  # centre crop to multiples of 4
            torch.testing.assert_close(fitted, torch.from_numpy(array[1:29, 1:49]).permute(2, 0, 1) / 127.5 - 1)
    assert "centre-cropped 30×50 to 28×48" in caplog.text
    small = pipe.prepare_input_image(torch.zeros(3, 64, 128), 32, "x")
    assert small.shape == (3, 16, 32)  # longer side scaled to 32, aspect kept
    with pytest.raises(ValueError, match="prompt 1, input image 2: 2×8 is smaller than one token"):
        pipe.prepare_input_image(torch.zeros(3, 2, 8), 1024, "prompt 1, input image 2")
    with pytest.raises(FileNotFoundError, match="no such file"):
        pipe.prepare_input_image(tmp_path / "missing.png", 1024, "x")
    with pytest.raises(ValueError, match="expected a PIL image"):
        pipe.prepare_input_image(torch.zeros(32, 32), 1024, "x")


@pytest.mark.parametrize(
    "run_config, size",
    [
        ({"data": {"image_size": 24}}, (24, 24)),
        ({"data": {"resolution": {"mode": "square", "size": 40}}}, (40, 40)),  # the X2I DataModules
        ({"data": {"resolution": {"mode": "buckets", "size": 40}}}, None),  # sizes vary: the caller decides
        ({"data": {"image_size": 32}, "curriculum": {"stages": [{"image_size": 16}, {"image_size": 48}]}}, (48, 48)),
    ],
)
def test_default_output_size_is_the_last_training_resolution(tokenizer, run_config, size):
    pipe = pipeline(tokenizer)
    pipe.module.run_config = run_config
    assert pipe.default_size == size
    if size:
        assert pipe(T2I, num_inference_steps=1, seed=0, progress=False)[0].size == size[::-1]


def test_batches_take_one_image_list_per_prompt_and_input_size_as_output(tokenizer):
    pipe = pipeline(tokenizer)
    edit_input = to_pil(images((24, 40))[0])
    out = pipe(
        [EDIT, T2I],
        input_images=[[edit_input], None],
        height=32,
        width=32,
        num_inference_steps=1,
        seed=0,
        progress=False,
    )
    assert [im.size for im in out] == [(32, 32), (32, 32)]
    same = pipe(
        EDIT,
        input_images=[edit_input],
        use_input_image_size_as_output=True,
        num_inference_steps=1,
        seed=0,
        progress=False,
    )
    assert same[0].size == (40, 24)
    with pytest.raises(ValueError, match="one per prompt"):
        pipe([EDIT, T2I], input_images=[edit_input], height=32, width=32)
    with pytest.raises(ValueError, match="use_input_image_size_as_output needs every prompt"):
        pipe([EDIT, T2I], input_images=[[edit_input], []], use_input_image_size_as_output=True)
    with pytest.raises(ValueError, match="references 1 image"):
        pipe(EDIT, height=32, width=32, num_inference_steps=1)


def test_a_mask_that_sees_the_future_samples_without_the_cache(tokenizer, caplog):
    from omnigen.model.masks import FullMask

    pipe = pipeline(tokenizer, mask=FullMask())
    with caplog.at_level(logging.WARNING, logger="omnigen.pipeline"):
        out = pipe.generate(
            [T2I], height=32, width=32, num_inference_steps=2, generator=torch.Generator().manual_seed(0)
        )
    assert caplog.text.count("without the kv-cache") == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="omnigen.pipeline"):  # said once per pipeline, not per call
        pipe.generate([T2I], height=32, width=32, num_inference_steps=2)
    assert "without the kv-cache" not in caplog.text
    again = pipe.generate(
        [T2I],
        height=32,
        width=32,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        use_kv_cache=False,
    )
    assert torch.equal(out, again)


@pytest.mark.parametrize("use_kv_cache", [True, False])
def test_a_guidance_interval_guides_inside_it_and_runs_the_conditional_branch_alone_outside(tokenizer, use_kv_cache):
    """Prompts with 0, 1 and 2 input images in one batch: the interval [0, 1] is today's sampler exactly; an
    interval no step's t reaches is the conditional branch alone (scales 1) exactly; [0, 0.5] runs all three
    branches (3 rows a prompt) at the steps from t <= 0.5 and one row a prompt after, and differs from both. The
    step cache and the schedule shift combine with it."""
    pipe = pipeline(tokenizer)
    prompts, inputs = [T2I, EDIT, TWO], [[], images((32, 32)), images((16, 24), (32, 32), seed=1)]
    kwargs = dict(height=32, width=32, num_inference_steps=4, use_kv_cache=use_kv_cache)

    def generate(**more):
        return pipe.generate(prompts, inputs, **kwargs, **more, generator=torch.Generator().manual_seed(0))

    guided = generate(guidance_scale=2.5, img_guidance_scale=1.5)
    conditional = generate(guidance_scale=1.0, img_guidance_scale=1.0)
    assert torch.equal(generate(guidance_scale=2.5, img_guidance_scale=1.5, guidance_interval=(0.0, 1.0)), guided)
    never = generate(guidance_scale=2.5, img_guidance_scale=1.5, guidance_interval=(1.0, 1.0))  # t stops at 0.75
    assert torch.equal(never, conditional)

    transformer = pipe.module.transformer
    forward = transformer.forward_cached if use_kv_cache else transformer.forward
    rows = []

    def counting(x, *args, **kw):
        rows.append(x.shape[0])
        return forward(x, *args, **kw)

    setattr(transformer, forward.__name__, counting)
    try:
        half = generate(guidance_scale=2.5, img_guidance_scale=1.5, guidance_interval=(0.0, 0.5))
    finally:
        delattr(transformer, forward.__name__)
    assert rows == [9, 9, 9, 3]  # steps from t = 0, 0.25, 0.5 (closed interval): 3 branches × 3 prompts; 0.75: 3
    assert not torch.equal(half, guided) and not torch.equal(half, conditional)
    # the step cache: threshold 0 is the plain sampler; one no change reaches computes the first step of each
    # velocity (the guided one at t = 0, the conditional one at 0.75) and reuses it after (order 0)
    assert torch.equal(generate(guidance_scale=2.5, img_guidance_scale=1.5, step_cache=0.0), guided)
    rows.clear()
    setattr(transformer, forward.__name__, counting)
    try:
        skipping = dict(guidance_interval=(0.0, 0.5), step_cache=1e9, step_cache_order=0)
        reused = generate(guidance_scale=2.5, img_guidance_scale=1.5, **skipping)
    finally:
        delattr(transformer, forward.__name__)
    assert rows == [9, 3] and torch.isfinite(reused).all() and not torch.equal(reused, half)
    # with a shifted schedule: shift 1 is the plain sampler; shift 3 moves the steps' times (and so the window's)
    assert torch.equal(generate(guidance_scale=2.5, img_guidance_scale=1.5, schedule_shift=1.0), guided)
    both = generate(guidance_scale=2.5, img_guidance_scale=1.5, guidance_interval=(0.0, 0.5), schedule_shift=3.0)
    assert torch.isfinite(both).all() and not torch.equal(both, half)


def test_a_guidance_interval_outside_0_1_is_refused(tokenizer):
    with pytest.raises(ValueError, match="guidance_interval"):
        pipeline(tokenizer).generate([T2I], [[]], 32, 32, 2, guidance_interval=(0.5, 0.2))


def test_sampling_settings_not_given_are_the_checkpoints_recommendation(tokenizer):
    """pipe(...): a run config's `sampling` (configs/sampling/) fills every setting the caller leaves None, and a
    given one wins; a checkpoint without it samples as the plain sampler; a bad recommendation is named in one
    line. The tensor-level `generate` (evaluate's, the sample grid's) keeps the plain sampler whatever it records."""
    pipe = pipeline(tokenizer)
    inputs = [None, [to_pil(images((16, 16))[0])]]

    def call(**settings):
        return pipe([T2I, EDIT], inputs, 32, 32, seed=0, output_type="pt", progress=False, **settings)

    plain = {"num_inference_steps": 20, "guidance_scale": 2.0, "img_guidance_scale": 1.5}
    assert pipe.recommended == SamplerSettings() and torch.equal(call(), call(**plain))
    recommended = {"num_inference_steps": 3, "schedule_shift": 0.5, "guidance_interval": [0.0, 0.5], "step_cache": 1e9}
    pipe.module.run_config = {"sampling": recommended}
    assert pipe.recommended.guidance_interval == (0.0, 0.5)
    assert torch.equal(call(), call(**recommended))
    assert torch.equal(call(num_inference_steps=4), call(**recommended | {"num_inference_steps": 4}))
    assert not torch.equal(call(num_inference_steps=4), call())
    generator = torch.Generator().manual_seed(0)
    latents = [[im for im in ims] for ims in [[], images((16, 16))]]
    assert torch.equal(pipe.generate([T2I, EDIT], latents, 32, 32, generator=generator), pipe.generate(
        [T2I, EDIT], latents, 32, 32, **plain, generator=torch.Generator().manual_seed(0)))  # fmt: skip
    pipe.module.run_config = {"sampling": {"steps": 3}}
    with pytest.raises(UserError, match=r"run config, sampling: unknown sampling setting\(s\) \['steps'\]"):
        call()


def test_a_resolution_dependent_shift_holds_at_its_reference_side_and_scales_with_the_image(tokenizer):
    """shift_reference_size=r: schedule_shift at an r × r image, times √(H·W)/r elsewhere (SD3's rule)."""
    assert SamplerSettings(schedule_shift=0.5, shift_reference_size=32).shift_at(64, 64) == 1.0
    assert SamplerSettings(schedule_shift=2.0, shift_reference_size=0).shift_at(64, 64) == 2.0  # 0: off
    pipe = pipeline(tokenizer)

    def generate(size, **settings):
        return pipe.generate([T2I], [[]], size, size, 3, generator=torch.Generator().manual_seed(0), **settings)

    assert torch.equal(generate(32, schedule_shift=0.5, shift_reference_size=32), generate(32, schedule_shift=0.5))
    assert torch.equal(generate(64, schedule_shift=0.5, shift_reference_size=32), generate(64))
    assert torch.equal(generate(16, schedule_shift=0.5, shift_reference_size=32), generate(16, schedule_shift=0.25))
    with pytest.raises(UserError, match="shift_reference_size must be a side in pixels"):
        generate(32, shift_reference_size=-32)
