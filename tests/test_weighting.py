"""Edit-region weighting (paper Eq. 2): 1 where the edit leaves the latent unchanged, the stated
value where it changes it; uniform everywhere else."""

import pytest
import torch

from omnigen.flow.weighting import EditRegionWeighting, ForegroundWeighting, UniformWeighting


def edited_pair():
    reference = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(0))
    target = reference.clone()
    target[:, 2:4, 5:7] += 0.5  # an edit of 4 of 64 positions, all channels
    return target, reference


def test_edit_weight_is_one_on_unchanged_and_clipped_inverse_distance_on_changed():
    target, reference = edited_pair()
    w = EditRegionWeighting(threshold=0.1, clip_min=1.0, clip_max=1000.0, norm="l2").weights(target[None], [reference])[
        0
    ]
    d = (0.5**2) * 4 / 64  # mean squared latent difference of the sample
    changed = torch.zeros(8, 8, dtype=torch.bool)
    changed[2:4, 5:7] = True
    assert torch.all(w[:, ~changed] == 1.0)
    torch.testing.assert_close(w[:, changed], torch.full_like(w[:, changed], 1 / d), rtol=1e-5, atol=0)


def test_edit_weight_l1_norm_and_clip_range():
    target, reference = edited_pair()
    d_l1 = 0.5 * 4 / 64
    w = EditRegionWeighting(threshold=0.1, clip_min=1.0, clip_max=1000.0, norm="l1").weights(target[None], [reference])[
        0
    ]
    assert w.max().item() == pytest.approx(1 / d_l1, rel=1e-5)
    clipped = EditRegionWeighting(threshold=0.1, clip_min=5.0, clip_max=20.0).weights(target[None], [reference])[0]
    assert clipped.max().item() == 20.0 and clipped.min().item() == 1.0  # 1/d = 64 clipped to 20
    tiny_edit = reference.clone()
    tiny_edit[:, 0, 0] += 10.0  # a large difference: 1/d below clip_min
    floor = EditRegionWeighting(threshold=0.1, clip_min=5.0, clip_max=64.0).weights(tiny_edit[None], [reference])[0]
    assert floor.max().item() == 5.0


def test_margin_weights_the_positions_beside_a_change_as_the_change():
    target, reference = edited_pair()
    paper = EditRegionWeighting(threshold=0.1, clip_min=1.0, clip_max=1000.0).weights(target[None], [reference])[0]
    grown = EditRegionWeighting(threshold=0.1, clip_min=1.0, clip_max=1000.0, margin=1).weights(
        target[None], [reference]
    )[0]
    around = torch.zeros(8, 8, dtype=torch.bool)
    around[1:5, 4:8] = True  # the 2x2 change at [2:4, 5:7] grown by one position, cut at the right edge
    assert torch.all(grown[:, ~around] == 1.0)
    torch.testing.assert_close(
        grown[:, around], torch.full_like(grown[:, around], paper.max().item())
    )  # d is unchanged
    weighting = ForegroundWeighting(threshold=0.1, clip_min=1.0, clip_max=1000.0, margin=2)
    scene = torch.zeros(3, 8, 8)
    scene[:, 0, 0] = 1.0  # a one-position shape in the corner of a flat canvas
    w = weighting.weights(scene[None], [None])[0]
    assert torch.all(w[:, :3, :3] > 1.0) and torch.all(w[:, 3:, :] == 1.0) and torch.all(w[:, :, 3:] == 1.0)
    with pytest.raises(ValueError, match="margin"):
        EditRegionWeighting(margin=-1)


def test_threshold_decides_what_counts_as_changed():
    target, reference = edited_pair()
    w = EditRegionWeighting(threshold=0.6).weights(target[None], [reference])  # 0.5 change is under it
    assert torch.all(w == 1.0)


def test_samples_without_a_reference_get_weight_one():
    target, reference = edited_pair()
    batch = torch.stack([target, target])
    w = EditRegionWeighting(threshold=0.1).weights(batch, [None, reference])
    assert torch.all(w[0] == 1.0) and w[1].max() > 1.0
    assert torch.all(UniformWeighting().weights(batch, [reference, reference]) == 1.0)


def test_foreground_weighting_reads_a_plain_sample_as_an_edit_of_its_background():
    canvas = torch.tensor([0.9, -0.2, 0.4])[:, None, None].expand(3, 8, 8)  # a flat background, per channel
    scene = canvas.clone()
    scene[:, 1:3, 4:6] = torch.tensor([-0.8, 0.7, 0.1])[:, None, None]  # one shape: 4 of 64 positions
    weighting = ForegroundWeighting(threshold=0.1, clip_min=1.0, clip_max=1000.0)
    w = weighting.weights(scene[None], [None])[0]
    shape = torch.zeros(8, 8, dtype=torch.bool)
    shape[1:3, 4:6] = True
    d = (scene - canvas).pow(2).mean()  # the sample's mean squared distance to its background
    assert torch.all(w[:, ~shape] == 1.0)
    torch.testing.assert_close(w[:, shape], torch.full_like(w[:, shape], float(1 / d)), rtol=1e-5, atol=0)
    # a sample that edits an input image is weighted against it, as by the edit weighting
    target, reference = edited_pair()
    torch.testing.assert_close(
        weighting.weights(target[None], [reference]),
        EditRegionWeighting(threshold=0.1, clip_min=1.0, clip_max=1000.0).weights(target[None], [reference]),
    )
    assert torch.all(weighting.weights(canvas[None].clone(), [None]) == 1.0)  # nothing but background: weight 1
    # edits=False: the edit gets weight 1, the scene beside it in the batch is still weighted
    plain = ForegroundWeighting(threshold=0.1, clip_min=1.0, clip_max=1000.0, edits=False)
    both = plain.weights(torch.stack([target, target]), [None, reference])
    alone = weighting.weights(target[None], [None])[0]
    assert alone.max() > 1.0
    torch.testing.assert_close(both[0], alone)
    assert torch.all(both[1] == 1.0)
    with pytest.raises(ValueError, match="references"):
        weighting.weights(scene[None], [])


def test_foreground_weighting_clips_edits_and_scenes_apart():
    """edit_clip_max moves the edits' clip without the scenes': one weighting, two clip ranges."""
    target, reference = edited_pair()
    batch, references = torch.stack([target, target]), [None, reference]
    same = ForegroundWeighting(threshold=0.1, clip_min=1.0, clip_max=2.0).weights(batch, references)
    apart = ForegroundWeighting(threshold=0.1, clip_min=1.0, clip_max=2.0, edit_clip_max=1000.0).weights(
        batch, references
    )
    torch.testing.assert_close(apart[0], same[0])  # the scene: clip 2 either way
    assert same[1].max() == 2.0 and apart[1].max() > 2.0  # the edit: unclipped at 1000
    torch.testing.assert_close(
        apart[1:], EditRegionWeighting(threshold=0.1, clip_min=1.0, clip_max=1000.0).weights(target[None], [reference])
    )
    with pytest.raises(ValueError, match="edit_clip_max"):
        ForegroundWeighting(clip_min=5.0, clip_max=16.0, edit_clip_max=2.0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="norm"):
        EditRegionWeighting(norm="l3")
    with pytest.raises(ValueError, match="clip_min"):
        EditRegionWeighting(clip_min=10, clip_max=5)
    with pytest.raises(ValueError, match="references"):
        EditRegionWeighting().weights(torch.zeros(2, 4, 8, 8), [None])
