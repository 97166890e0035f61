"""omnigen.convert: the OmniGen-v1 release layout in, the diffusers 0.42 layout out, same velocities."""

import json
import logging
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TINY_PHI3, make_module
from safetensors.torch import save_file

from omnigen.checkpoints.diffusers import diffusers_inputs, export_diffusers, write_diffusers_transformer
from omnigen.checkpoints.format import CheckpointError
from omnigen.checkpoints.native import load_module
from omnigen.checkpoints.release import import_release
from omnigen.convert import main
from omnigen.flow.sampler import euler_timesteps
from omnigen.model.masks import OmniGenMask, PrefixLMMask
from omnigen.model.vae import AutoencoderKLVAE
from omnigen.pipeline import OmniGenPipeline
from omnigen.processor import RELEASE_TEMPLATE
from omnigen.utils.cli import run_main

H, FFN, LAYERS, VOCAB = 64, 128, 2, 128  # the tiny release's Phi-3 sizes
# config.json as Phi-3-mini-128k (and so OmniGen-v1) writes it: legacy "su" rope_scaling with
# original_max_position_embeddings at the top level, plus bookkeeping keys.
RELEASE_CONFIG = {
    "architectures": ["Phi3ForCausalLM"],
    "model_type": "phi3",
    "vocab_size": VOCAB,
    "hidden_size": H,
    "intermediate_size": FFN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "hidden_act": "silu",
    "max_position_embeddings": 1024,
    "original_max_position_embeddings": 64,
    "rms_norm_eps": 1e-5,
    "rope_scaling": {
        "type": "su",
        "short_factor": [1.0, 1.0, 1.1, 1.2, 1.5, 2.0, 2.5, 3.0],
        "long_factor": [1.0] * 4 + [4.0] * 4,
    },
    "rope_theta": 10000.0,
    "bos_token_id": 1,
    "eos_token_id": 3,
    "pad_token_id": 0,
    "sliding_window": 262144,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.45.2",
}
# An 8x AutoencoderKL (as SDXL's), tiny: with patch 2 it gives the 16 px per token diffusers assumes.
KL8 = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[4, 4, 8, 8],
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=4,
    sample_size=32,
    scaling_factor=0.5,
)


def release_pos_embed(grid: int, dim: int = H) -> torch.Tensor:
    """The release's 2D sin-cos table, computed its way (numpy, float32 grid, coordinates i·64/grid,
    first half from the column coordinate, each half [sin, cos])."""
    coords = np.arange(grid, dtype=np.float32) / (grid / 64)
    cols, rows = np.meshgrid(coords, coords)  # (grid, grid), cols varies along a row

    def one_d(pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))
        angles = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return torch.from_numpy(np.concatenate([one_d(cols), one_d(rows)], axis=1)).float()[None]  # (1, grid², dim)


def release_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    """Every tensor of an OmniGen-v1 checkpoint under the release's own names, written out here
    (not read from our model) so that a drift in our names fails the import."""
    shapes = {
        "x_embedder.proj.weight": (H, 4, 2, 2),
        "x_embedder.proj.bias": (H,),
        "input_x_embedder.proj.weight": (H, 4, 2, 2),
        "input_x_embedder.proj.bias": (H,),
        "time_token.mlp.0.weight": (H, 256),
        "time_token.mlp.0.bias": (H,),
        "time_token.mlp.2.weight": (H, H),
        "time_token.mlp.2.bias": (H,),
        "t_embedder.mlp.0.weight": (H, 256),
        "t_embedder.mlp.0.bias": (H,),
        "t_embedder.mlp.2.weight": (H, H),
        "t_embedder.mlp.2.bias": (H,),
        "final_layer.adaLN_modulation.1.weight": (2 * H, H),
        "final_layer.adaLN_modulation.1.bias": (2 * H,),
        "final_layer.linear.weight": (2 * 2 * 4, H),
        "final_layer.linear.bias": (2 * 2 * 4,),
        "llm.embed_tokens.weight": (VOCAB, H),
        "llm.norm.weight": (H,),
    }
    for i in range(LAYERS):
        shapes |= {
            f"llm.layers.{i}.self_attn.qkv_proj.weight": (3 * H, H),
            f"llm.layers.{i}.self_attn.o_proj.weight": (H, H),
            f"llm.layers.{i}.mlp.gate_up_proj.weight": (2 * FFN, H),
            f"llm.layers.{i}.mlp.down_proj.weight": (H, FFN),
            f"llm.layers.{i}.input_layernorm.weight": (H,),
            f"llm.layers.{i}.post_attention_layernorm.weight": (H,),
        }
    g = torch.Generator().manual_seed(seed)
    weights = {k: 0.1 * torch.randn(shape, generator=g) for k, shape in shapes.items()}
    return weights | {"pos_embed": release_pos_embed(192)}


@pytest.fixture(scope="module")
def release(tmp_path_factory, tokenizer):
    """A tiny OmniGen-v1 release directory: config.json, tokenizer, vae/, model.safetensors."""
    root = tmp_path_factory.mktemp("release")
    (root / "config.json").write_text(json.dumps(RELEASE_CONFIG))
    tokenizer.save_pretrained(root)
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(**KL8).save_pretrained(root / "vae")
    weights = release_weights()
    save_file(weights, str(root / "model.safetensors"))
    return root, weights


def copy_release(release, tmp_path, weights=None, name="model.safetensors", vae=True):
    root = tmp_path / "release"
    shutil.copytree(release[0], root, ignore=None if vae else shutil.ignore_patterns("vae"))
    if weights is not None:
        (root / "model.safetensors").unlink()
        save_file(weights, str(root / name)) if name.endswith(".safetensors") else torch.save(weights, root / name)
    return root


def run(module, texts, images, x, t):
    """Our velocity plus the same inputs in diffusers' format."""
    batch, latents = module.prepare(texts, images, x)
    ours = module.transformer(x, t, batch.input_ids, batch.image_token_mask, latents, batch.layout)
    return ours, diffusers_inputs(module, batch, latents, x, t)


def randomise(module, seed=0, std=0.2):
    """Random weights everywhere (the final layer starts at zero), norms near 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.transformer.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if "norm" in name else std * noise)
    return module.eval()


# ---- release -> native -------------------------------------------------------------------------
def test_import_release_lands_every_tensor_and_runs(release):
    root, weights = release
    module = import_release(root)
    own = module.transformer.state_dict()
    for name, value in weights.items():
        assert torch.equal(own[name], value), name  # float32 in, float32 kept bit for bit (pos_embed too)
    assert (module.transformer.patch_size, module.transformer.pos_embed_max_size, module.pixels_per_token) == (
        2,
        192,
        16,
    )
    assert module.processor.template == RELEASE_TEMPLATE and isinstance(module.vae, AutoencoderKLVAE)
    recommended = OmniGenPipeline(module).recommended  # the release's sampling: 50 steps at guidance 3.0 / 1.6
    assert (recommended.num_inference_steps, recommended.guidance_scale, recommended.img_guidance_scale) == (50, 3, 1.6)
    rope = module.transformer.llm.config.rope_parameters
    assert rope["rope_type"] == "longrope" and rope["original_max_position_embeddings"] == 64
    g = torch.Generator().manual_seed(0)
    x, image = torch.randn(1, 4, 4, 4, generator=g), torch.randn(4, 4, 6, generator=g)
    with torch.no_grad():
        batch, latents = module.prepare(["<img><|image_1|></img> make the red circle green"], [[image]], x)
        v = module.transformer(x, torch.tensor([0.3]), batch.input_ids, batch.image_token_mask, latents, batch.layout)
    assert v.shape == x.shape and torch.isfinite(v).all() and v.abs().sum() > 0


def test_bf16_model_pt_loads_as_float32_with_the_exact_position_table(release, tmp_path):
    """A fine-tune's model.pt (torch.save of a bf16 state dict, pos_embed rounded to bf16 too)."""
    bf16 = {k: v.bfloat16() for k, v in release[1].items()}
    module = import_release(copy_release(release, tmp_path, bf16, name="model.pt"))
    own = module.transformer.state_dict()
    assert all(torch.equal(own[k], v.float()) for k, v in bf16.items() if k != "pos_embed")
    assert own["pos_embed"].dtype == torch.float32
    torch.testing.assert_close(own["pos_embed"], release[1]["pos_embed"], atol=1e-5, rtol=0)  # not the bf16 copy


def test_import_without_pos_embed_uses_the_release_grid_and_vae_path_replaces_vae_dir(release, tmp_path):
    weights = {k: v for k, v in release[1].items() if k != "pos_embed"}
    root = copy_release(release, tmp_path, weights, vae=False)
    with pytest.raises(FileNotFoundError, match="no vae/ subfolder.*--vae"):
        import_release(root)
    uniform = {"_target_": "omnigen.flow.weighting.uniform.UniformWeighting"}
    module = import_release(root, vae_path=release[0] / "vae", overrides={"weighting": uniform})
    assert module.transformer.pos_embed_max_size == 192 and type(module.weighting).__name__ == "UniformWeighting"
    torch.testing.assert_close(module.transformer.pos_embed, release[1]["pos_embed"], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda w: w.pop("llm.layers.1.self_attn.o_proj.weight"),
            r"missing 1: llm\.layers\.1\.self_attn\.o_proj\.weight",
        ),
        (
            lambda w: w.update({f"lora_{i}.weight": torch.zeros(1) for i in range(7)}),
            r"unexpected 7: lora_0\.weight.*\(7 in all\)",
        ),
        (
            lambda w: w.update({"llm.norm.weight": torch.ones(H + 1)}),
            r"shape mismatch.*llm\.norm\.weight \(65,\) vs \(64,\)",
        ),
        (lambda w: w.update({"pos_embed": w["pos_embed"] * 2}), "not the release's"),
    ],
)
def test_import_names_what_does_not_match(release, tmp_path, change, message):
    weights = dict(release[1])
    change(weights)
    with pytest.raises(ValueError, match=message):
        import_release(copy_release(release, tmp_path, weights))


def test_cli_from_release_then_to_diffusers(release, tmp_path, caplog):
    ckpt = tmp_path / "omnigen"
    main(["from-release", str(release[0]), str(ckpt)])
    assert (ckpt / "model.safetensors").is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    loaded, imported = load_module(ckpt), import_release(release[0])  # rebuilt from the exported directory alone
    assert loaded.model_config["prompt_template"] == RELEASE_TEMPLATE
    for name, value in imported.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    with pytest.raises(FileExistsError, match="--overwrite"):
        main(["from-release", str(release[0]), str(ckpt)])

    with caplog.at_level(logging.WARNING, logger="omnigen.checkpoints.diffusers"):
        main(["to-diffusers", str(ckpt), str(tmp_path / "diffusers")])
    assert "BOS id 1" in caplog.text and "pads with id 2" in caplog.text  # the shapes tokenizer breaks both
    assert "pixels per token" not in caplog.text and "template" not in caplog.text
    index = json.loads((tmp_path / "diffusers" / "model_index.json").read_text())
    assert index["transformer"] == ["diffusers", "OmniGenTransformer2DModel"] and index["vae"] == [
        "diffusers",
        "AutoencoderKL",
    ]
    from diffusers import OmniGenTransformer2DModel

    transformer = OmniGenTransformer2DModel.from_pretrained(tmp_path / "diffusers" / "transformer")
    assert torch.equal(
        transformer.state_dict()["layers.1.self_attn.to_k.weight"],
        release[1]["llm.layers.1.self_attn.qkv_proj.weight"][H : 2 * H],
    )
    assert transformer.config.rope_scaling["long_factor"] == RELEASE_CONFIG["rope_scaling"]["long_factor"]


def test_each_direction_names_what_it_was_given_instead(release, tmp_path, capsys):
    """What the other direction reads or writes is named, with the command that takes it (one line each)."""
    exported, diffusers = tmp_path / "omnigen", tmp_path / "diffusers"
    main(["from-release", str(release[0]), str(exported)])
    main(["to-diffusers", str(exported), str(diffusers)])
    with pytest.raises(CheckpointError, match="is a diffusers export"):
        load_module(diffusers)  # a real export, found by its model_index.json
    with pytest.raises(CheckpointError, match="exported directory already"):
        main(["from-release", str(exported), str(tmp_path / "again")])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: main(["to-diffusers", str(release[0]), str(tmp_path / "out")]), "omnigen.convert")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"python -m omnigen.convert from-release {release[0]} OUT_DIR" in err
    assert not (tmp_path / "again").exists() and not (tmp_path / "out").exists()


# ---- native -> diffusers: the same velocity ---------------------------------------------------------
# transformers 5 takes the top-level original_max_position_embeddings over the one in rope_scaling.
LONGROPE = TINY_PHI3 | {
    "original_max_position_embeddings": 24,
    "rope_scaling": {
        "rope_type": "longrope",
        "short_factor": [1.0, 1.2, 1.5, 2.0, 2.0, 3.0, 4.0, 5.0],
        "long_factor": [1.0] * 4 + [8.0] * 4,
    },
}


@pytest.mark.parametrize("prompt", ["text", "image"])
@pytest.mark.parametrize("backbone", [TINY_PHI3, LONGROPE], ids=["default-rope", "longrope"])
def test_diffusers_transformer_predicts_our_velocity(tokenizer, tmp_path, backbone, prompt):
    """fp32, unpadded rows. Measured max |diff|: 0.0 (bit-identical on CPU, |v| up to ~16); the
    1e-6 tolerance leaves room for other kernels. The longrope text prompt (24 positions) stays at
    its original length (short factors), the image prompt (44) crosses it (long factors), and the
    max/original ratio scales cos/sin: exporting any of these wrong gives diffs of ~8."""
    from diffusers import OmniGenTransformer2DModel

    module = randomise(make_module(tokenizer, patch_size=2, backbone_config=backbone))
    theirs_model = OmniGenTransformer2DModel.from_pretrained(
        write_diffusers_transformer(module.transformer, tmp_path)
    ).eval()
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(2, 3, 8, 8, generator=g), torch.tensor([0.25, 0.8])
    texts, images = ["a red circle"] * 2, [[], []]
    if prompt == "image":
        texts, images = (
            ["<img><|image_1|></img> make the red circle green"] * 2,
            [[torch.randn(3, 8, 8, generator=g)]] * 2,
        )
    with torch.no_grad():
        ours, inputs = run(module, texts, images, x, t)
        theirs = theirs_model(**inputs).sample
    assert ours.abs().mean() > 0.1  # a real signal, not a zero-initialised layer
    assert (theirs - ours).abs().max() <= 1e-6


def test_export_refuses_what_diffusers_cannot_express(tokenizer, tmp_path):
    pixel = make_module(tokenizer, patch_size=2)
    with pytest.raises(ValueError, match="needs an AutoencoderKL.*transformer_only"):
        export_diffusers(pixel, tmp_path / "a")
    assert (export_diffusers(pixel, tmp_path / "b", transformer_only=True) / "transformer" / "config.json").is_file()
    llama = dict(
        model_type="llama",
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        pad_token_id=0,
    )
    with pytest.raises(ValueError, match="Phi-3 architecture.*'llama'"):
        export_diffusers(make_module(tokenizer, backbone_config=llama), tmp_path / "c", transformer_only=True)
    with pytest.raises(ValueError, match="grouped-query attention"):
        export_diffusers(
            make_module(tokenizer, backbone_config=TINY_PHI3 | {"num_key_value_heads": 2}),
            tmp_path / "d",
            transformer_only=True,
        )
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


# ---- the whole diffusers OmniGenPipeline -------------------------------------------------------------
def pipeline_tokenizer():
    """A word-level tokenizer meeting the pipeline's id assumptions: BOS 1 added when called, pad 2."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    special = [
        "<unk>",
        "<s>",
        "<pad>",
        "</s>",
        "<|user|>",
        "<|end|>",
        "<|assistant|>",
        "<|diffusion|>",
        "<img>",
        "</img>",
    ]
    words = sorted(
        set("generate an image according to the following instructions a red blue circle square make it".split())
    )
    raw = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(special + words)}, unk_token="<unk>"))
    raw.normalizer = normalizers.Lowercase()
    raw.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    raw.add_special_tokens(special)
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


@pytest.fixture(scope="module")
def pipeline_export(tmp_path_factory):
    torch.manual_seed(0)
    module = make_module(pipeline_tokenizer(), vae=AutoencoderKLVAE(config=KL8), patch_size=2)
    module.processor.template = RELEASE_TEMPLATE
    return randomise(module), export_diffusers(module, tmp_path_factory.mktemp("pipe") / "omnigen")


def test_exported_pipeline_meets_the_assumptions_and_its_scheduler_walks_our_grid(pipeline_export, tmp_path, caplog):
    from diffusers import FlowMatchEulerDiscreteScheduler

    module, out = pipeline_export
    with caplog.at_level(logging.WARNING, logger="omnigen.checkpoints.diffusers"):
        export_diffusers(module, tmp_path / "again")
    assert "will not reproduce" not in caplog.text
    module.transformer.mask = PrefixLMMask()  # the transformer takes any mask; the pipeline builds the paper's
    try:
        with caplog.at_level(logging.WARNING, logger="omnigen.checkpoints.diffusers"):
            export_diffusers(module, tmp_path / "prefix_lm")
        assert "trained with PrefixLMMask()" in caplog.text
    finally:
        module.transformer.mask = OmniGenMask()
    with pytest.raises(FileExistsError, match="overwrite"):
        export_diffusers(module, tmp_path / "again")
    assert export_diffusers(module, tmp_path / "again", overwrite=True).is_dir()
    assert {p.name for p in out.iterdir()} == {"transformer", "vae", "tokenizer", "scheduler", "model_index.json"}
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(out / "scheduler")
    scheduler.set_timesteps(sigmas=np.linspace(1, 0, 5)[:4])  # what the pipeline asks for, 4 steps
    torch.testing.assert_close(scheduler.sigmas, euler_timesteps(4))
    torch.testing.assert_close(scheduler.timesteps, euler_timesteps(4)[:-1])


def omnigen_pipeline_class(monkeypatch, with_images: bool):
    """diffusers.OmniGenPipeline. Its processor needs torchvision only to transform input images;
    for text-only prompts, where torchvision is missing, its transforms are stubbed (never called)."""
    from diffusers.pipelines.omnigen import pipeline_omnigen, processor_omnigen

    try:
        import torchvision  # noqa: F401
    except Exception as error:  # absent, or a build that does not match torch
        if with_images:
            pytest.skip(
                f"torchvision unusable ({error!r}): see omnigen.checkpoints.diffusers's docstring to install it"
            )
        stub = SimpleNamespace(
            Compose=lambda steps: None, Lambda=lambda f: None, ToTensor=lambda: None, Normalize=lambda **kw: None
        )
        monkeypatch.setattr(processor_omnigen, "transforms", stub, raising=False)
        monkeypatch.setattr(
            pipeline_omnigen, "OmniGenMultiModalProcessor", processor_omnigen.OmniGenMultiModalProcessor, raising=False
        )
    return pipeline_omnigen.OmniGenPipeline


@pytest.mark.parametrize("with_images", [False, True], ids=["text", "image"])
def test_diffusers_pipeline_samples_what_our_sampler_samples(pipeline_export, monkeypatch, with_images):
    """OmniGenPipeline.from_pretrained(export) with guidance 1 (so its CFG combination is the conditional
    branch) gives our Euler latents. The prompt is longer than the pipeline's built-in negative prompt,
    so the conditional row is unpadded (diffusers' rotary takes row 0's positions for all rows).
    Measured max |diff| 1.1e-5 on latents up to ~10 (1e-6 relative): fp32 rounding of the
    pipeline's u + 1·(c − u) over 3 steps; hence 2e-5."""
    from PIL import Image

    module, out = pipeline_export
    pipe = omnigen_pipeline_class(monkeypatch, with_images).from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    text, images, pil = "a red circle and a blue square " * 16, [], None
    g = torch.Generator().manual_seed(2)
    if with_images:
        pixels = torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8)
        pil, text = Image.fromarray(pixels.numpy()), "<img><|image_1|></img> make it blue " + text
        images = [module.moments((pixels.permute(2, 0, 1).float() / 255 * 2 - 1)[None])[0][0]]
        # diffusers samples the input image's posterior; omnigen conditions on its mean.
        scale = pipe.vae.config.scaling_factor
        pipe.encode_input_images = lambda pixel_values, **kw: [
            pipe.vae.encode(p).latent_dist.mean * scale for p in pixel_values
        ]
    noise = torch.randn(1, 4, 4, 4, generator=g)
    theirs = pipe(
        text,
        input_images=[pil] if pil else None,
        height=32,
        width=32,
        num_inference_steps=3,
        guidance_scale=1.0,
        img_guidance_scale=1.0,
        latents=noise.clone(),
        output_type="latent",
    ).images
    x, times = noise, euler_timesteps(3)
    with torch.no_grad():
        batch, latents = module.prepare([text], [images], x)
        for t0, t1 in zip(times[:-1], times[1:], strict=True):
            x = x + (t1 - t0) * module.transformer(
                x, t0[None], batch.input_ids, batch.image_token_mask, latents, batch.layout
            )
    assert (x - noise).abs().mean() > 0.1
    assert (theirs - x).abs().max() <= 2e-5
