"""Fine-tuning: LoRA trains only adapters, merges exactly, travels in checkpoints/exports/adapter files;
freezing by pattern; initial weights from a local LLM, an OmniGen-v1 release and an omnigen checkpoint."""

import copy
import json
import logging

import pytest
import torch
from conftest import TINY_PHI3, make_module
from hydra.utils import instantiate
from hydra_utils import FAST, compose_fit
from omegaconf import OmegaConf
from safetensors.torch import save_file
from test_convert import KL8, RELEASE_CONFIG, release_weights
from test_module import shapes_batch

from omnigen.checkpoints.native import load_module, read_checkpoint
from omnigen.fit import build
from omnigen.module import build_module
from omnigen.pipeline import OmniGenPipeline
from omnigen.training.finetune import FineTune, adapter_state, has_lora, is_adapter, warn_config_mismatch

T2I = "a large red circle at the center on a white background"
EDIT = "<img><|image_1|></img> make the red circle green"
LORA = ["model/finetune=lora", "logger=csv", "callbacks.sample_grid=null"]


def lora_module(tokenizer, seed=0, **finetune):
    """A tiny LoRA module whose adapters and output layer are not zero, so both change the output."""
    torch.manual_seed(seed)
    module = make_module(tokenizer, finetune=FineTune(mode="lora", **finetune))
    with torch.no_grad():
        for name, p in module.transformer.named_parameters():
            if "lora_B" in name or name.startswith("final_layer."):
                p.normal_(std=0.05)
    return module.eval()


def images(pipe, seed=0):
    """Two prompts (text only and an edit), three guidance branches, the kv-cache: every path."""
    edit_input = [torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1]
    return pipe.generate(
        [T2I, EDIT],
        [[], edit_input],
        32,
        32,
        num_inference_steps=3,
        guidance_scale=2.5,
        img_guidance_scale=1.5,
        generator=torch.Generator().manual_seed(seed),
    )


def base_state(module):
    return {k: v.clone() for k, v in module.state_dict().items() if not is_adapter(k)}


def test_lora_training_changes_only_adapter_weights(tokenizer):
    torch.manual_seed(0)
    module = make_module(tokenizer, lr=1e-2, finetune=FineTune(mode="lora", lora_rank=4, lora_alpha=8))
    with torch.no_grad():  # as after pre-training: a zero (fresh) final layer passes no gradient back
        module.transformer.final_layer.linear.weight.normal_(std=0.05)
    before_base, before_lora = base_state(module), {k: v.clone() for k, v in adapter_state(module).items()}
    optimizer = module.configure_optimizers()
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for n, p in module.named_parameters() if is_adapter(n)}
    module.log = lambda *args, **kwargs: None
    batch = shapes_batch()
    for step in range(3):  # lora_B starts at 0: step 1 moves B, then A gets a gradient too
        loss = module.training_step(batch, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = module.state_dict()
    assert len(before_lora) == 2 * 2 * 2  # 2 layers × (qkv_proj, o_proj) × (A, B)
    for name, value in before_base.items():
        assert torch.equal(after[name], value), f"{name} changed"
    for name, value in before_lora.items():
        assert not torch.equal(after[name], value), f"{name} did not train"


def test_merged_lora_reproduces_unmerged_images(tokenizer):
    pipe = OmniGenPipeline(lora_module(tokenizer))
    unmerged = images(pipe)
    base = OmniGenPipeline(lora_module(tokenizer))
    with torch.no_grad():
        for name, p in base.module.transformer.named_parameters():
            if "lora_B" in name:
                p.zero_()
    assert (unmerged - images(base)).abs().max() > 1e-2  # the adapters matter
    pipe.merge_lora()
    assert not has_lora(pipe.module.transformer) and pipe.module.finetune is None
    assert not [k for k in pipe.module.state_dict() if "lora" in k or "base_layer" in k]
    diff = (images(pipe) - unmerged).abs().max().item()
    logging.getLogger(__name__).info("merged vs unmerged max abs diff %.3g", diff)
    assert diff <= 1e-5
    with pytest.raises(ValueError, match="no LoRA"):
        pipe.merge_lora()


def test_lora_fit_through_hydra_writes_checkpoints_and_exports_that_load(fitted_checkpoint, tmp_path):
    cfg = compose_fit(FAST + LORA + [f"model.finetune.init_from={fitted_checkpoint}"], tmp_path)
    objects = build(cfg)
    module = objects["module"]
    initial, adapters = base_state(module), {k: v.clone() for k, v in adapter_state(module).items()}
    assert torch.equal(
        initial["transformer.x_embedder.proj.weight"],
        read_checkpoint(fitted_checkpoint)["state_dict"]["transformer.x_embedder.proj.weight"],
    )  # init_from landed
    objects["trainer"].fit(module, datamodule=objects["datamodule"])
    assert objects["trainer"].global_step == 4
    trained = module.state_dict()
    for name, value in initial.items():
        assert torch.equal(trained[name], value), f"{name} changed"
    for name, value in adapters.items():
        assert not torch.equal(trained[name], value), f"{name} did not train"

    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    meta = read_checkpoint(ckpt)["omnigen"]
    assert meta["model_config"]["finetune"]["mode"] == "lora" and meta["model_config"]["finetune"]["init_from"] is None
    loaded = load_module(ckpt)
    assert loaded.state_dict().keys() == trained.keys()
    assert all(torch.equal(v, trained[k]) for k, v in loaded.state_dict().items())
    module.eval()
    expected = images(OmniGenPipeline(module))
    pipe = OmniGenPipeline.from_checkpoint(ckpt)
    assert torch.equal(images(pipe), expected)
    merged = OmniGenPipeline.from_checkpoint(ckpt, merge_lora=True)
    assert (images(merged) - expected).abs().max() <= 1e-5
    # exports keep the adapters (exact round trip); a merged pipeline exports a plain model
    again = OmniGenPipeline.from_checkpoint(pipe.save_pretrained(tmp_path / "lora_export"))
    assert has_lora(again.module.transformer) and torch.equal(images(again), expected)
    plain = OmniGenPipeline.from_checkpoint(merged.save_pretrained(tmp_path / "merged_export"))
    assert not has_lora(plain.module.transformer)
    assert (
        json.loads((tmp_path / "merged_export" / "omnigen_config.json").read_text())["model_config"]["finetune"] is None
    )
    assert torch.equal(images(plain), images(merged))


def test_adapters_alone_save_and_load_onto_the_base(tokenizer, tmp_path):
    from peft import PeftModel

    torch.manual_seed(0)
    base = make_module(tokenizer).eval()
    with torch.no_grad():
        base.transformer.final_layer.linear.weight.normal_(std=0.05)
    tuned, finetune = copy.deepcopy(base), FineTune(mode="lora", trainable=["x_embedder.*"])
    finetune.apply(tuned.transformer)
    tuned.finetune = finetune
    with torch.no_grad():
        tuned.transformer.x_embedder.proj.bias.normal_()
        for name, p in tuned.transformer.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    bare_llm = copy.deepcopy(base.transformer.llm)
    out = OmniGenPipeline(tuned).save_lora(tmp_path / "adapter")
    assert {p.name for p in out.iterdir()} == {
        "adapter_config.json",
        "adapter_model.safetensors",
        "omnigen_trainable.safetensors",
    }
    expected = images(OmniGenPipeline(tuned))
    pipe = OmniGenPipeline(copy.deepcopy(base)).load_lora(out)
    assert pipe.module.finetune.mode == "lora" and pipe.module.finetune.trainable == [
        "x_embedder.proj.bias",
        "x_embedder.proj.weight",
    ]
    assert torch.equal(images(pipe), expected)
    merged = OmniGenPipeline(copy.deepcopy(base)).load_lora(out, merge=True)
    assert not has_lora(merged.module.transformer) and (images(merged) - expected).abs().max() <= 1e-5
    # peft's own loader reads the adapter onto the bare LLM
    peft_llm = PeftModel.from_pretrained(bare_llm, str(out)).eval()
    x = torch.randn(1, 5, TINY_PHI3["hidden_size"])
    kwargs = dict(inputs_embeds=x, position_ids=torch.arange(5)[None])
    with torch.no_grad():
        torch.testing.assert_close(
            peft_llm(**kwargs).last_hidden_state, tuned.transformer.llm(**kwargs).last_hidden_state
        )
    with pytest.raises(ValueError, match="already has LoRA"):
        pipe.load_lora(out)


def test_freeze_patterns_freeze_exactly_the_matched_parameters(tokenizer, caplog):
    with caplog.at_level(logging.INFO, logger="omnigen.training.finetune"):
        module = make_module(tokenizer, finetune=FineTune(freeze=["llm.layers.0.*", "x_embedder.*"]))
    names = dict(module.transformer.named_parameters())
    frozen = {n for n, p in names.items() if not p.requires_grad}
    assert frozen == {n for n in names if n.startswith(("llm.layers.0.", "x_embedder."))} and len(frozen) == 6 + 2
    assert "'x_embedder.*' matches 2 parameter tensors" in caplog.text
    # LoRA: adapters + `trainable`, minus `freeze` (which also knows a wrapped layer by its plain name)
    lora = make_module(
        tokenizer,
        finetune=FineTune(mode="lora", trainable=["final_layer.*"], freeze=["llm.layers.1.self_attn.qkv_proj.*"]),
    )
    trained = {n for n, p in lora.transformer.named_parameters() if p.requires_grad}
    assert trained == {
        n
        for n in dict(lora.transformer.named_parameters())
        if n.startswith("final_layer.") or (is_adapter(n) and "layers.1.self_attn.qkv_proj" not in n)
    }
    with pytest.raises(ValueError, match="'llm.layer.*' matches no transformer parameter"):
        make_module(tokenizer, finetune=FineTune(freeze=["llm.layer.*"]))
    with pytest.raises(ValueError, match="mode=lora"):
        FineTune(trainable=["x_embedder.*"])
    with pytest.raises(ValueError, match="mode must be one of"):
        FineTune(mode="qlora")


def test_target_modules_resolve_per_architecture(tokenizer):
    llama = dict(TINY_PHI3, model_type="llama")
    module = make_module(tokenizer, backbone_config=llama, finetune=FineTune(mode="lora"))
    assert module.transformer.llm.peft_config["default"].target_modules == {"q_proj", "k_proj", "v_proj", "o_proj"}
    mlp = make_module(tokenizer, finetune=FineTune(mode="lora", target_modules=["gate_up_proj", "down_proj"]))
    assert {n.split(".")[-4] for n in dict(mlp.transformer.named_parameters()) if is_adapter(n)} == {
        "gate_up_proj",
        "down_proj",
    }


def test_init_from_a_local_llm_directory(tmp_path):
    from transformers import AutoConfig, Phi3ForCausalLM

    torch.manual_seed(3)
    llm = Phi3ForCausalLM(AutoConfig.for_model(**TINY_PHI3))
    llm.save_pretrained(tmp_path / "phi3")
    cfg = compose_fit(
        ["model/backbone=pretrained", f"model.backbone.pretrained_path={tmp_path / 'phi3'}", "model/finetune=lora"],
        tmp_path / "run",
    )
    module = instantiate(cfg.model, _convert_="all")
    module.model_config = OmegaConf.to_container(cfg.model, resolve=True)
    ours = module.transformer.llm.layers[1].self_attn.qkv_proj.base_layer.weight
    assert torch.equal(ours, llm.model.layers[1].self_attn.qkv_proj.weight)
    assert torch.equal(module.transformer.llm.embed_tokens.weight, llm.model.embed_tokens.weight)
    backbone = module.architecture_config()["backbone"]
    assert backbone["config"]["hidden_size"] == TINY_PHI3["hidden_size"] and "pretrained_path" not in backbone


@pytest.fixture
def release_dir(tmp_path, tokenizer):
    """An OmniGen-v1 release as published (config.json, tokenizer files, model.safetensors) plus vae/."""
    from diffusers import AutoencoderKL

    root = tmp_path / "OmniGen-v1"
    root.mkdir()
    (root / "config.json").write_text(json.dumps(RELEASE_CONFIG))
    tokenizer.save_pretrained(root)
    AutoencoderKL(**KL8).save_pretrained(root / "vae")
    weights = release_weights(seed=5)
    save_file(weights, str(root / "model.safetensors"))
    return root, weights


def test_init_from_a_release_directory_with_the_omnigen_v1_preset(release_dir, tokenizer, tmp_path, caplog):
    root, weights = release_dir
    cfg = compose_fit(
        ["model=omnigen_v1", f"model.finetune.init_from={root}", f"model.vae.pretrained_path={root / 'vae'}"],
        tmp_path / "run",
    )
    with caplog.at_level(logging.WARNING):
        module = instantiate(cfg.model, _convert_="all")
    assert "differs from" not in caplog.text  # the release's own rope factors
    module.model_config = OmegaConf.to_container(cfg.model, resolve=True)
    llm = module.transformer.llm
    assert torch.equal(
        llm.layers[0].self_attn.qkv_proj.base_layer.weight, weights["llm.layers.0.self_attn.qkv_proj.weight"]
    )
    assert torch.equal(module.transformer.final_layer.linear.weight, weights["final_layer.linear.weight"])
    assert (
        has_lora(module.transformer)
        and list(llm.config.rope_parameters["long_factor"]) == RELEASE_CONFIG["rope_scaling"]["long_factor"]
    )
    # the checkpoint's config rebuilds the structure without the release (init_from is not re-read)
    config = module.architecture_config()
    assert config["finetune"]["init_from"] is None and "release_dir" not in config["backbone"]
    rebuilt = build_module(config, tokenizer=tokenizer)
    rebuilt.load_state_dict(module.state_dict(), strict=True)
    # a backbone built from another config gets a warning naming the differences
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        warn_config_mismatch(make_module(tokenizer).transformer, root)
    assert "rope_parameters" in caplog.text


def test_init_from_an_omnigen_checkpoint(fitted_checkpoint, tokenizer):
    meta = read_checkpoint(fitted_checkpoint)["omnigen"]
    config = copy.deepcopy(meta["model_config"])
    config["finetune"] = {
        "_target_": "omnigen.training.finetune.FineTune",
        "mode": "lora",
        "init_from": str(fitted_checkpoint),
    }
    module = build_module(config, tokenizer=tokenizer)
    source = load_module(fitted_checkpoint).transformer
    assert torch.equal(
        module.transformer.llm.layers[0].self_attn.o_proj.base_layer.weight,
        source.llm.layers[0].self_attn.o_proj.weight,
    )
    assert torch.equal(module.transformer.x_embedder.proj.weight, source.x_embedder.proj.weight)
