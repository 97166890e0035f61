"""The backbone plugin: any HF decoder-only LM, from a config or a local directory."""

import pytest
import torch
from conftest import TINY_PHI3
from transformers import AutoConfig, AutoModelForCausalLM

from omnigen.model.backbone import backbone_architecture_config, build_hf_backbone, check_backbone
from omnigen.model.masks import OmniGenMask
from omnigen.model.omnigen import OmniGen
from omnigen.processor import OmniGenProcessor

FAMILIES = {
    "phi3": TINY_PHI3,
    "llama": dict(
        model_type="llama",
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
    ),
    "qwen2": dict(
        model_type="qwen2",
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
    ),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_any_decoder_lm_drives_omnigen_and_trains(family, tokenizer):
    torch.manual_seed(0)
    model = OmniGen(
        build_hf_backbone(config=FAMILIES[family]), OmniGenMask(), in_channels=3, patch_size=4, pos_embed_max_size=8
    )
    torch.nn.init.normal_(model.final_layer.linear.weight, std=0.02)
    processor = OmniGenProcessor(tokenizer)
    image = torch.randn(3, 16, 16)
    batch = processor.batch([processor.tokenize("<img><|image_1|></img> make the red circle green", [16])], 16)
    out = model(
        torch.randn(1, 3, 16, 16), torch.tensor([0.5]), batch.input_ids, batch.image_token_mask, [image], batch.layout
    )
    out.pow(2).mean().backward()
    assert out.shape == (1, 3, 16, 16)
    assert model.llm.layers[0].self_attn.o_proj.weight.grad.abs().sum() > 0  # gradients reach the LLM
    assert model.input_x_embedder.proj.weight.grad.abs().sum() > 0  # and the input-image embedder


def test_local_directory_drops_the_lm_head_and_keeps_the_weights(tmp_path):
    torch.manual_seed(0)
    config = dict(TINY_PHI3)
    lm = AutoModelForCausalLM.from_config(AutoConfig.for_model(config.pop("model_type"), **config))
    lm.save_pretrained(tmp_path / "phi3")
    backbone = build_hf_backbone(pretrained_path=str(tmp_path / "phi3"))
    assert not hasattr(backbone, "lm_head")
    for name, value in backbone.state_dict().items():
        assert torch.equal(value, lm.state_dict()[f"model.{name}"]), name


def test_a_bf16_directory_loads_as_fp32_and_runs(tmp_path, tokenizer):
    config = dict(TINY_PHI3)
    lm = AutoModelForCausalLM.from_config(AutoConfig.for_model(config.pop("model_type"), **config)).to(torch.bfloat16)
    lm.save_pretrained(tmp_path / "phi3")  # as Phi-3 and OmniGen-v1 ship
    backbone = build_hf_backbone(pretrained_path=str(tmp_path / "phi3"))
    assert {p.dtype for p in backbone.parameters()} == {torch.float32}
    model = OmniGen(backbone, OmniGenMask(), in_channels=3, patch_size=4, pos_embed_max_size=8)
    processor = OmniGenProcessor(tokenizer)
    batch = processor.batch([processor.tokenize("a red circle", [])], 4)
    assert (
        model(
            torch.randn(1, 3, 8, 8), torch.tensor([0.5]), batch.input_ids, batch.image_token_mask, [], batch.layout
        ).dtype
        == torch.float32
    )


def test_gradient_checkpointing_flag_and_bad_arguments():
    checkpointed = build_hf_backbone(config=TINY_PHI3, gradient_checkpointing=True)
    assert checkpointed.is_activation_checkpointing
    assert backbone_architecture_config(checkpointed)["gradient_checkpointing"] is True
    assert backbone_architecture_config(build_hf_backbone(config=TINY_PHI3))["gradient_checkpointing"] is False
    with pytest.raises(ValueError, match="exactly one"):
        build_hf_backbone()
    with pytest.raises(ValueError, match="model_type"):
        build_hf_backbone(config={"hidden_size": 8})
    with pytest.raises(FileNotFoundError, match="local paths only"):
        build_hf_backbone(pretrained_path="/nonexistent/llm")
    with pytest.raises(TypeError, match="not a backbone"):
        check_backbone(torch.nn.Linear(2, 2))


def test_embedding_std_redraws_only_the_token_embeddings():
    torch.manual_seed(0)
    default = build_hf_backbone(config=TINY_PHI3)
    torch.manual_seed(0)
    wide = build_hf_backbone(config=TINY_PHI3, embedding_std=1.0)
    table = wide.get_input_embeddings().weight
    pad = wide.get_input_embeddings().padding_idx
    assert pad is not None and torch.all(table[pad] == 0)
    rest = torch.cat([table[:pad], table[pad + 1 :]])
    assert rest.std().item() == pytest.approx(1.0, abs=0.1)
    assert default.get_input_embeddings().weight.std().item() < 0.05  # initializer_range
    for (name, a), b in zip(default.named_parameters(), wide.parameters(), strict=True):  # same draws elsewhere
        if "embed_tokens" not in name:
            torch.testing.assert_close(a, b, msg=name)
    with pytest.raises(ValueError, match="embedding_std"):
        build_hf_backbone(config=TINY_PHI3, embedding_std=0.0)
    with pytest.raises(ValueError, match="embedding_std"):
        build_hf_backbone(pretrained_path="/nonexistent/llm", embedding_std=1.0)
