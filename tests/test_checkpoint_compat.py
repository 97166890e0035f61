"""Checkpoints written by earlier code still load and sample the same images.

tests/fixtures/format1/ holds a format-1 Lightning checkpoint written before the package layout moved
(commit 'a format-1 checkpoint fixture'; how it was made: tests/fixtures/format1/README.md) and the
images it sampled then."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from omnigen.pipeline import OmniGenPipeline

FIXTURE = Path(__file__).parent / "fixtures" / "format1"


def test_format1_checkpoint_loads_and_samples_the_images_it_sampled_when_written():
    reference = load_file(FIXTURE / "reference.safetensors")
    pipe = OmniGenPipeline.from_checkpoint(FIXTURE / "last.ckpt")
    out = pipe(
        ["a red circle", "<img><|image_1|></img> make the circle blue"],
        [[], [reference["input"]]],
        height=32,
        width=32,
        num_inference_steps=3,
        guidance_scale=3.0,  # the pipeline's defaults when the images were sampled
        img_guidance_scale=1.6,
        seed=0,
        output_type="pt",
        progress=False,
    )
    assert out.shape == reference["output"].shape == (2, 3, 32, 32)
    torch.testing.assert_close(out, reference["output"], atol=1e-5, rtol=0)
    assert pipe.module.steps_trained == 2
