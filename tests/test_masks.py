"""Mask properties on a batch with text, two input images, the time token, the output and padding."""

import pytest
import torch

from omnigen.model.masks import CausalMask, FullMask, OmniGenMask, PrefixLMMask, SequenceLayout

IMG1, IMG2 = range(3, 7), range(9, 12)  # input-image spans of row 0 (after 2 padding tokens)
TIME, OUT = 14, range(15, 19)  # time token, output image (the last 4 positions)


def layout() -> SequenceLayout:
    # row 0: [pad pad | t | img1 x4 | t t | img2 x3 | t t | time | out x4]  (L = 19)
    # row 1: [t x14 | time | out x4], no input images, no padding
    span = torch.zeros(2, 19, dtype=torch.long)
    span[0, 3:7], span[0, 9:12], span[0, 15:] = 1, 2, 3
    span[1, 15:] = 1
    valid = torch.ones(2, 19, dtype=torch.bool)
    valid[0, :2] = False
    return SequenceLayout(span, valid, num_output_tokens=4)


def allowed(strategy):
    mask = strategy.dense(layout())
    assert mask.shape == (2, 1, 19, 19)
    assert set(mask.unique().tolist()) <= {0.0, torch.finfo(torch.float32).min}
    return mask[:, 0] == 0  # (B, L, L) bool


@pytest.mark.parametrize("strategy", [OmniGenMask(), CausalMask(), FullMask(), PrefixLMMask()])
def test_padding_is_never_attended(strategy):
    a = allowed(strategy)
    assert not a[0, :, :2][2:].any()  # no valid query sees a padding key
    assert a[0, 0, 0] and a[0, 1, 1] and not a[0, 0, 1]  # padding rows see only themselves (no empty softmax row)


def test_omnigen_mask_properties():
    a = allowed(OmniGenMask())[0]
    text = [2, 7, 8, 12, 13]
    # text never attends to a later image (and images never to later text)
    assert not a[2][list(IMG1)].any() and not a[8][list(IMG2)].any()
    assert not a[list(IMG1)][:, 7].any()
    # text attends causally to earlier text and images
    assert a[8][list(IMG1)].all() and a[8][[2, 7]].all() and a[13][text[:-1]].all()
    # tokens of one image see each other, both directions, but not the other image's later tokens
    assert a[list(IMG1)][:, list(IMG1)].all() and a[list(IMG2)][:, list(IMG2)].all()
    assert not a[list(IMG1)][:, list(IMG2)].any()
    # the output image sees every condition token, the time token and itself (bidirectionally)
    valid = list(range(2, 19))
    assert a[list(OUT)][:, valid].all()
    # nothing before the output image sees it
    assert not a[: TIME + 1][:, list(OUT)].any()
    # the time token is causal
    assert a[TIME][2 : TIME + 1].all()


def test_prefix_lm_mask_properties():
    a = allowed(PrefixLMMask())
    condition, generated = list(range(2, TIME)), list(range(TIME, 19))
    # every condition token (text and input images) sees the whole condition, both ways, and nothing later
    assert a[0][condition][:, condition].all() and not a[0][condition][:, generated].any()
    assert a[1][:TIME][:, :TIME].all() and not a[1][:TIME][:, TIME:].any()
    # the time token and the output image see the whole sample
    assert a[0][generated][:, 2:].all() and a[1][generated].all()


def test_generating_marks_the_time_token_and_output_of_every_sample():
    expected = torch.zeros(2, 19, dtype=torch.bool)
    expected[:, TIME:] = True
    assert torch.equal(layout().generating(), expected)
    assert not layout().prefix().generating().any()  # a kv-cache prefix is all condition
    # packed: [t t img(1) img(1) | time | out(2) out(2)] [t | time | out(3) out(3) out(3)] [pad]
    span = torch.tensor([[0, 0, 1, 1, 0, 2, 2, 0, 0, 3, 3, 3, 0]])
    segments = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 0]])
    packed = SequenceLayout(span, segments > 0, 0, segment_ids=segments)
    assert packed.generating()[0].tolist() == [False] * 4 + [True] * 3 + [False] + [True] * 4 + [False]


def test_causal_mask_is_lower_triangular_over_valid_tokens():
    a = allowed(CausalMask())[1]
    assert torch.equal(a, torch.ones(19, 19, dtype=torch.bool).tril())


def test_full_mask_sees_all_valid_tokens():
    a = allowed(FullMask())[0]
    assert a[2:, 2:].all()


@pytest.mark.parametrize("strategy", [OmniGenMask(), CausalMask(), FullMask(), PrefixLMMask()])
def test_prefix_independence_flag_matches_the_mask(strategy):
    a = allowed(strategy)
    prefix_sees_later = a[:, :TIME, TIME:].any().item()  # a condition token sees the time token or the output
    assert strategy.prefix_independent == (not prefix_sees_later)


def test_position_ids_skip_padding():
    pos = layout().position_ids()
    assert pos[0].tolist() == [0, 0] + list(range(17))
    assert pos[1].tolist() == list(range(19))


def test_layout_validates_shapes():
    with pytest.raises(ValueError, match="must all be"):
        SequenceLayout(torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 4, dtype=torch.bool), 1)
