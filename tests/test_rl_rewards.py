"""Rewards from the programmatic metrics: the ground truth scores 1, and an edit reward pays for neither
copying the input nor wiping the scene (the two ways edits were gamed)."""

import numpy as np
import pytest

from omnigen.data.shapes.tasks import sample_at
from omnigen.data.shapes.world import BACKGROUND_COLOURS, Scene
from omnigen.rl.rewards import ShapesReward
from omnigen.utils.cli import UserError

EDIT = {
    "mixed_modal": [
        {"weight": 1.0, "product": ["edit_correct", "unchanged_score"]},
        {"weight": 0.5, "product": ["target_exact_scene"]},
    ]
}
EVERY_FAMILY = EDIT | {
    "text_to_image": [{"weight": 1.0, "product": ["exact_scene"]}, {"weight": 0.5, "product": ["position"]}],
    "subject_driven": [{"weight": 1.0, "product": ["subject_fidelity"]}],
    "visual_condition": [{"weight": 1.0, "product": ["foreground_iou"]}],  # every condition task has it
    "visual_condition/canny": [{"weight": 1.0, "product": ["edge_f1", "exact_scene"]}],  # wins over the family
    "cv_tasks/deblur": [{"weight": 1.0, "product": ["psnr_score"]}],
    "cv_tasks/denoise": [{"weight": 1.0, "product": ["psnr_score"]}],
    "cv_tasks/colourise": [{"weight": 1.0, "product": ["psnr_score"]}],
    "cv_tasks/inpaint": [{"weight": 1.0, "product": ["psnr_score"]}],
    "cv_tasks/segmentation": [{"weight": 1.0, "product": ["seg_miou"]}],
    "cv_tasks/referring": [{"weight": 1.0, "product": ["mask_iou"]}],
    "cv_tasks/edges": [{"weight": 1.0, "product": ["edge_f1"]}],
    "cv_tasks/depth": [{"weight": 1.0, "product": ["depth_score"]}],
}


def edits(n: int = 48):
    return [sample_at(i, 11, {"mixed_modal": 1.0}, 32) for i in range(n)]


def mean_reward(reward, samples, image_of) -> float:
    return float(np.mean([reward("mixed_modal", s.task, s.spec, image_of(s))[0] for s in samples]))


def test_the_ground_truth_scores_one_in_every_family_and_task():
    reward = ShapesReward(EVERY_FAMILY)
    for family in ("text_to_image", "mixed_modal", "subject_driven", "visual_condition", "cv_tasks"):
        for i in range(24):
            sample = sample_at(i, 5, {family: 1.0}, 32)
            value, metrics = reward(family, sample.task, sample.spec, np.asarray(sample.output_image))
            assert value == pytest.approx(1.0), (family, sample.task, metrics)


def test_an_edit_reward_pays_neither_for_the_copy_nor_for_a_wiped_scene():
    reward, samples = ShapesReward(EDIT), edits()
    truth = mean_reward(reward, samples, lambda s: np.asarray(s.output_image))
    copy = mean_reward(reward, samples, lambda s: np.asarray(s.input_images[0]))
    # an untrained model's floor: noise (the evaluation's floor row reads edit correctness 0.14 on it)
    rng = np.random.default_rng(0)
    noise = mean_reward(reward, samples, lambda s: rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))

    def wiped(sample):  # the target's background alone: every "remove" is then correct
        background = BACKGROUND_COLOURS[Scene.from_dict(sample.spec["target"]).background]
        return np.broadcast_to(np.array(background, dtype=np.uint8), (32, 32, 3)).copy()

    assert truth == pytest.approx(1.0)
    assert copy <= noise < 0.1  # returning the input unchanged earns no more than noise
    assert mean_reward(reward, samples, wiped) < 0.15  # 0.08: removes pay, but the scene around them is gone


def test_a_misspelt_metric_a_psnr_and_an_unknown_family_or_task_are_named():
    with pytest.raises(UserError, match=r"mixed_modal has no metric 'edit_corect' \(did you mean 'edit_correct'\?\)"):
        ShapesReward({"mixed_modal": [{"product": ["edit_corect"]}]})
    with pytest.raises(UserError, match=r"'unchanged_psnr' is in dB.*use 'unchanged_score'"):
        ShapesReward({"mixed_modal": [{"product": ["unchanged_psnr"]}]})
    with pytest.raises(UserError, match=r"unknown family 'mixed_modl' \(did you mean 'mixed_modal'\?\)"):
        ShapesReward({"mixed_modl": [{"product": ["edit_correct"]}]})
    with pytest.raises(UserError, match=r"cv_tasks has no task 'segmentaton'"):
        ShapesReward({"cv_tasks/segmentaton": [{"product": ["seg_miou"]}]})
    with pytest.raises(UserError, match="cv_tasks has no metric 'seg_miou'"):  # not every CV task has it
        ShapesReward({"cv_tasks": [{"product": ["seg_miou"]}]})
    with pytest.raises(UserError, match="weight > 0"):
        ShapesReward({"text_to_image": [{"weight": 0, "product": ["object"]}]})
    reward = ShapesReward(EDIT)
    sample = sample_at(0, 5, {"text_to_image": 1.0}, 32)
    with pytest.raises(UserError, match="no terms for text_to_image/t2i"):
        reward("text_to_image", sample.task, sample.spec, np.asarray(sample.output_image))


@pytest.mark.parametrize("name", ["edit", "mini_paper"])
def test_each_shipped_reward_config_scores_the_ground_truth_one_in_every_family_it_rewards(name):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from omnigen.config import CONFIG_DIR

    reward = instantiate(OmegaConf.load(f"{CONFIG_DIR}/rl/reward/{name}.yaml"), _convert_="all")
    families = {key.partition("/")[0] for key in reward.terms}
    assert name != "mini_paper" or families == {
        "text_to_image", "mixed_modal", "subject_driven", "visual_condition", "cv_tasks"
    }  # fmt: skip
    for family in sorted(families):
        for i in range(40):  # every task of the family turns up in 40 draws
            sample = sample_at(i, 3, {family: 1.0}, 32)
            value, _ = reward(family, sample.task, sample.spec, np.asarray(sample.output_image))
            assert value == pytest.approx(1.0), (name, family, sample.task)
