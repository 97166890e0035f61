"""Shapes-X2I metrics: the target scores perfectly, hand-built wrong images score the known wrong answer."""

from __future__ import annotations

import numpy as np
import pytest
from shapes_utils import make_scene, task_sample

from omnigen.data.shapes import (
    BACKGROUND_COLOURS,
    FAMILY_TASKS,
    POSITIONS,
    SHAPE_COLOURS,
    SHAPE_KINDS,
    SIZES,
    Scene,
    ShapeSpec,
    Subject,
    cell_slices,
    label_map,
    render,
    render_with_subject,
    shape_mask,
)
from omnigen.metrics import MAX_PSNR, score
from omnigen.metrics.base import classify_kind, components, detect, psnr, psnr_score
from omnigen.metrics.edit import edit_region

ALL_TASKS = [(family, task) for family, tasks in FAMILY_TASKS.items() for task in tasks]
SIZE = 64


def _perfect(scores: dict[str, float]) -> bool:
    return all(v == (MAX_PSNR if k.endswith("psnr") else 1.0) for k, v in scores.items())


def _scene_spec(scene: Scene) -> dict:
    return {"scene": scene.to_dict()}


def _blank(spec_scene: dict, size: int = SIZE) -> np.ndarray:
    return np.full((size, size, 3), BACKGROUND_COLOURS[spec_scene["background"]], dtype=np.uint8)


# --- every family: the target itself is perfect ------------------------------------------


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize(("family", "task"), ALL_TASKS)
def test_target_scores_perfectly(family, task, size):
    for skip in range(3):
        sample = task_sample(family, task, size, skip=skip)
        scores = score(family, task, sample.spec, sample.output_image)
        assert scores and _perfect(scores), scores
        assert all(np.isfinite(v) and (k.endswith("psnr") or 0 <= v <= 1) for k, v in scores.items())


def test_score_rejects_bad_inputs():
    sample = task_sample("text_to_image", "t2i", 32)
    with pytest.raises(ValueError, match="unknown family"):
        score("nope", "t2i", sample.spec, sample.output_image)
    with pytest.raises(ValueError, match="uint8"):
        score("text_to_image", "t2i", sample.spec, sample.output_image.astype(np.float32))


# --- base helpers ----------------------------------------------------------------------------


def test_components_are_4_connected_and_do_not_wrap():
    keep = np.zeros((6, 6), dtype=bool)
    keep[0, 0] = keep[1, 1] = True  # diagonal only: two components
    keep[3, 0] = keep[3, 5] = True  # opposite edges of one row: np.roll must not join them
    keep[5, 2:5] = True
    classes = np.zeros((6, 6), dtype=np.int64)
    classes[5, 4] = 1  # a different class splits the run
    ids = components(classes, keep)
    assert ids.max() == 6 and (ids[~keep] == 0).all()


@pytest.mark.parametrize("size", [64, 128])
def test_classify_kind_reads_every_rendered_shape(size):
    for kind in SHAPE_KINDS:
        for name in SIZES:
            for position in POSITIONS:
                assert classify_kind(shape_mask(ShapeSpec(kind, "red", name, position), size)) == kind


def test_detect_ignores_specks_and_blurred_rims():
    scene = make_scene(("square", "blue", "large", "center"))
    image = render(scene, SIZE)
    image[2, 2] = SHAPE_COLOURS["red"]  # an isolated speck
    rows, cols = np.nonzero(shape_mask(scene.shapes[0], SIZE))
    image[rows.min() - 1, cols.min() : cols.max() + 1] = SHAPE_COLOURS["cyan"]  # a rim touching the shape
    found = detect(image)
    assert [(d.colour, d.kind, d.position, d.size) for d in found] == [("blue", "square", "center", "large")]


def test_psnr_known_values():
    a = np.zeros((32, 32, 3), dtype=np.uint8)
    assert psnr(a, a) == MAX_PSNR and psnr_score(MAX_PSNR) == 1.0
    assert psnr(a, a + 1) == pytest.approx(20 * np.log10(255))
    assert psnr_score(20.0) == 0.5


# --- text_to_image -------------------------------------------------------------------------

BLUE = ("triangle", "blue", "small", "center")
SCENE = make_scene(("circle", "red", "large", "top left"), BLUE, background="gray")


def _t2i(scene: Scene) -> dict[str, float]:
    return score("text_to_image", "t2i", _scene_spec(SCENE), render(scene, SIZE))


def test_t2i_wrong_colour():
    scores = _t2i(make_scene(("circle", "green", "large", "top left"), BLUE, background="gray"))
    assert scores["colour"] == scores["placed"] == 0.5 and scores["exact_scene"] == 0.0
    assert scores["position"] == scores["object"] == scores["count"] == scores["size"] == 1.0


def test_t2i_moved_shape():
    scores = _t2i(make_scene(("circle", "red", "large", "bottom right"), BLUE, background="gray"))
    assert scores["position"] == 0.5 and scores["colour"] == scores["object"] == 1.0 and scores["exact_scene"] == 0.0
    assert scores["placed"] == 0.5


def test_t2i_missing_and_extra_shapes():
    missing = _t2i(Scene("gray", SCENE.shapes[:1]))
    assert missing["count"] == 0.0 and missing["object"] == 0.5 and missing["exact_scene"] == 0.0
    extra = _t2i(Scene("gray", SCENE.shapes + (ShapeSpec("square", "cyan", "small", "bottom"),)))
    assert extra["count"] == 0.0 and extra["object"] == 1.0 and extra["exact_scene"] == 0.0


def test_t2i_wrong_kind_size_background():
    wrong_kind = _t2i(make_scene(("square", "red", "large", "top left"), BLUE, background="gray"))
    assert wrong_kind["object"] == wrong_kind["position"] == 0.5 and wrong_kind["placed"] == 1.0
    assert _t2i(make_scene(("circle", "red", "small", "top left"), BLUE, background="gray"))["size"] == 0.5
    wrong_background = _t2i(Scene("white", SCENE.shapes))
    assert wrong_background["background"] == 0.0 and wrong_background["colour"] == 1.0


# --- mixed_modal ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["recolour", "remove", "add", "move"])
def test_edit_unchanged_copy_of_input(kind):
    sample = task_sample("mixed_modal", f"edit/{kind}", SIZE)
    scores = score("mixed_modal", sample.task, sample.spec, sample.input_images[0])
    assert scores["edit_correct"] == 0.0
    assert scores["unchanged_psnr"] == MAX_PSNR and scores["unchanged_score"] == 1.0


def test_edit_region_is_the_cells_of_changed_shapes():
    sample = task_sample("mixed_modal", "edit/move", SIZE)
    expected = np.zeros((SIZE, SIZE), dtype=bool)
    for position in (sample.spec["edit"]["object"]["position"], sample.spec["edit"]["position"]):
        expected[cell_slices(position, SIZE)] = True
    assert np.array_equal(edit_region(sample.spec, SIZE), expected)


def test_edit_damage_outside_the_region_lowers_psnr_only():
    sample = task_sample("mixed_modal", "edit/recolour", SIZE)
    damaged = sample.output_image.copy()
    outside = ~edit_region(sample.spec, SIZE)
    noise = np.random.default_rng(0).integers(0, 256, damaged.shape, dtype=np.uint8)
    damaged[outside] = noise[outside]
    scores = score("mixed_modal", sample.task, sample.spec, damaged)
    assert scores["edit_correct"] == 1.0 and scores["unchanged_psnr"] < 15 and scores["unchanged_score"] < 0.4


# --- subject_driven ------------------------------------------------------------------------


def _subject():
    sample = task_sample("subject_driven", "subject", SIZE)
    return sample, sample.spec["subject"]["position"]


def test_subject_missing_keeps_scene_scores():
    sample, position = _subject()
    image = sample.output_image.copy()
    image[cell_slices(position, SIZE)] = BACKGROUND_COLOURS[sample.spec["scene"]["background"]]
    scores = score("subject_driven", "subject", sample.spec, image)
    assert scores["subject_fidelity"] == scores["subject_colours"] == scores["subject_pattern"] == 0.0
    assert scores["exact_scene"] == 1.0


def test_subject_swapped_colours_and_wrong_cell():
    sample, position = _subject()
    first, second = (np.array(SHAPE_COLOURS[c]) for c in sample.spec["subject"]["colours"])
    swapped = sample.output_image.copy()
    cell = swapped[cell_slices(position, SIZE)]
    is_first, is_second = (cell == first).all(-1), (cell == second).all(-1)
    cell[is_first], cell[is_second] = second, first
    scores = score("subject_driven", "subject", sample.spec, swapped)
    assert scores["subject_pattern"] == 0.0 and scores["subject_fidelity"] == 0.0 and scores["subject_kind"] == 1.0
    # Drawn in another free cell: the subject is missing where asked, and an extra shape appears.
    free = next(
        p for p in POSITIONS if p != position and p not in {s["position"] for s in sample.spec["scene"]["shapes"]}
    )
    moved = render_with_subject(
        Scene.from_dict(sample.spec["scene"]), Subject.from_dict(sample.spec["subject"]), free, SIZE
    )
    scores = score("subject_driven", "subject", sample.spec, moved)
    assert scores["subject_fidelity"] == 0.0 and scores["count"] == 0.0


# --- visual_condition ----------------------------------------------------------------------


@pytest.mark.parametrize("task", list(FAMILY_TASKS["visual_condition"]))
def test_visual_condition_blank_image(task):
    sample = task_sample("visual_condition", task, SIZE)
    scores = score("visual_condition", task, sample.spec, _blank(sample.spec["scene"]))
    labels = label_map(Scene.from_dict(sample.spec["scene"]), SIZE)
    background = float((labels == 0).mean())
    assert scores["foreground_iou"] == 0.0 and scores["object"] == 0.0 and scores["count"] == 0.0
    kinds = len({s["kind"] for s in sample.spec["scene"]["shapes"]})
    expected = {
        "canny": ("edge_f1", 0.0),
        "bbox": ("box_iou", 0.0),
        "depth": ("depth_accuracy", background),
        "segmentation": ("seg_miou", background / (1 + kinds)),
    }[task]
    assert scores[expected[0]] == pytest.approx(expected[1])


# --- cv_tasks ------------------------------------------------------------------------------


def _cv(task: str, generated_from) -> tuple[dict[str, float], object]:
    sample = task_sample("cv_tasks", task, SIZE)
    return score("cv_tasks", task, sample.spec, generated_from(sample)), sample


def test_cv_maps_blank_images():
    def black(sample):
        return np.zeros((SIZE, SIZE, 3), dtype=np.uint8)

    assert _cv("edges", black)[0] == {"edge_f1": 0.0, "edge_f1_exact": 0.0}
    assert _cv("referring", black)[0]["mask_iou"] == 0.0
    seg, sample = _cv("segmentation", black)
    labels = label_map(Scene.from_dict(sample.spec["scene"]), SIZE)
    kinds = len({s["kind"] for s in sample.spec["scene"]["shapes"]})
    assert seg["pixel_accuracy"] == pytest.approx((labels == 0).mean())
    assert seg["seg_miou"] == pytest.approx((labels == 0).mean() / (1 + kinds))
    depth, sample = _cv("depth", black)
    assert depth["depth_accuracy"] == 0.0  # every depth grey is >= 16
    assert depth["depth_score"] == pytest.approx(1 - sample.output_image[..., 0].mean() / 255)


def test_cv_referring_wrong_object_and_whole_image():
    def white(sample):
        return np.full((SIZE, SIZE, 3), 255, dtype=np.uint8)

    scores, sample = _cv("referring", white)
    assert scores["mask_iou"] == pytest.approx((sample.output_image[..., 0] == 255).mean())


def test_cv_edges_tolerate_one_pixel_shift():
    def shifted(sample):
        return np.roll(sample.output_image, 1, axis=1)

    scores, _ = _cv("edges", shifted)
    assert scores["edge_f1"] == 1.0 and scores["edge_f1_exact"] < 0.9


@pytest.mark.parametrize("task", ["deblur", "denoise", "inpaint", "colourise"])
def test_cv_restoration_degraded_input_and_noise(task):
    scores, sample = _cv(task, lambda sample: sample.input_images[0])
    assert scores["psnr"] < 40 and scores["psnr_score"] == pytest.approx(scores["psnr"] / 40)
    if task == "inpaint":
        assert scores["masked_psnr"] < scores["psnr"]
    noise = np.random.default_rng(1).integers(0, 256, sample.output_image.shape, dtype=np.uint8)
    noisy = score("cv_tasks", task, sample.spec, noise)
    assert noisy["psnr"] < 12 and noisy["psnr_score"] < 0.3 and noisy["exact_scene"] == 0.0


def test_canny_missing_shape_loses_its_edges_only():
    sample = next(
        s
        for k in range(10)
        if len((s := task_sample("visual_condition", "canny", SIZE, skip=k)).spec["scene"]["shapes"]) > 1
    )
    scene = Scene.from_dict(sample.spec["scene"])
    scores = score("visual_condition", "canny", sample.spec, render(Scene(scene.background, scene.shapes[1:]), SIZE))
    edges = sample.input_images[0][..., 0] == 255
    recall = 1 - (edges & shape_mask(scene.shapes[0], SIZE)).sum() / edges.sum()  # precision stays 1
    assert scores["edge_f1"] == pytest.approx(2 * recall / (1 + recall))
    assert scores["count"] == 0.0 and scores["foreground_iou"] < 1.0
