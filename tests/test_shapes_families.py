"""Shapes-X2I ground truth of the subject, visual-condition and CV-task families, checked against pixels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from shapes_utils import outside, task_sample

from omnigen.data.shapes import (
    BACKGROUND_COLOURS,
    DEPTH_BACKGROUND,
    DEPTH_ROWS,
    IMAGE_PREFIX,
    MASK_COLOUR,
    PATTERNS,
    POSITIONS,
    SEGMENTATION_COLOURS,
    SHAPE_COLOURS,
    SIZES,
    VISUAL_CONDITIONS,
    Scene,
    ShapeSpec,
    ShapesSample,
    Subject,
    cell_centre,
    cell_slices,
    describe,
    describe_layout,
    gaussian_blur,
    greyscale,
    render,
    sample_at,
    shape_mask,
    subject_pixels,
)

# --- subject_driven ------------------------------------------------------------------------


def _subject_sample(pattern: str, size: int) -> ShapesSample:
    for index in itertools.count():
        sample = sample_at(index, 6, {"subject_driven": 1.0}, size)
        if sample.spec["subject"]["pattern"] == pattern:
            return sample
    raise AssertionError("unreachable")


def _pattern_checks(colours: np.ndarray, pattern: str) -> None:
    """Independent reading of the pattern from pixel classes (0 other, 1 first colour, 2 second)."""
    rows, cols = np.nonzero(colours)
    first, second = colours[rows, cols] == 1, colours[rows, cols] == 2
    assert first.any() and second.any()
    if pattern == "split":  # first colour on the left, second on the right
        assert cols[first].max() < cols[second].min()
    elif pattern == "striped":  # four horizontal bands, first colour on top
        column = colours[:, int(np.median(cols))]
        assert [k for k, _ in itertools.groupby(column[column > 0])] == [1, 2, 1, 2]
        assert all(len(set(colours[r][colours[r] > 0])) == 1 for r in set(rows))
    else:  # dotted: a compact disc of the second colour, the first colour all around it
        assert rows[first].min() < rows[second].min() and rows[second].max() < rows[first].max()
        assert cols[first].min() < cols[second].min() and cols[second].max() < cols[first].max()
        r, c = int(np.median(rows[second])), int(np.median(cols[second]))
        assert colours[r, c] == 2 and second.sum() < first.sum()


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_subject_driven_ground_truth(pattern, size):
    sample = _subject_sample(pattern, size)
    spec = sample.spec
    subject = Subject.from_dict(spec["subject"])
    position, scene = spec["subject"]["position"], Scene.from_dict(spec["scene"])
    first, second = (SHAPE_COLOURS[c] for c in subject.colours)
    # The instruction names the subject's kind and cell, not its colours; the other shapes fully.
    assert f"the {subject.kind} from <img><|image_1|></img> at the {position}" in sample.instruction
    assert sample.instruction.endswith(f"on a {scene.background} background")
    assert all(
        describe(Scene(scene.background, (s,))).removesuffix(f" on a {scene.background} background")
        in sample.instruction
        for s in scene.shapes
    )
    assert sample.edit_source is None and position not in {s.position for s in scene.shapes}

    def classes(image: np.ndarray) -> np.ndarray:
        return np.all(image == first, axis=-1) * 1 + np.all(image == second, axis=-1) * 2

    # Reference: the subject, both colours, on a plain background and nothing else.
    reference = sample.input_images[0]
    ref_classes = classes(reference)
    plain = np.all(reference == BACKGROUND_COLOURS[spec["reference"]["background"]], axis=-1)
    assert np.all((ref_classes > 0) ^ plain)
    _pattern_checks(ref_classes, pattern)
    # Output: the described scene plus the subject, in its cell, with the same pattern.
    output, covered = sample.output_image, subject_pixels(subject, position, size)[0]
    assert outside(covered, output, render(scene, size))
    out_classes = np.where(covered, classes(output), 0)
    assert np.all(out_classes[covered] > 0)
    _pattern_checks(out_classes, pattern)
    rows, cols = cell_slices(position, size)
    assert covered[rows, cols].sum() == covered.sum()
    # Same footprint as a plain shape of that kind and size at that cell.
    assert np.array_equal(covered, shape_mask(ShapeSpec(subject.kind, "red", "large", position), size))


# --- condition maps (visual_condition inputs, cv_tasks outputs) -------------------------------


def _check_map(kind: str, scene: Scene, image: np.ndarray, the_map: np.ndarray) -> None:
    """A map read against the rendered scene's pixels (not against label_map)."""
    size = image.shape[0]
    assert np.all(the_map[..., 0:1] == the_map) or kind == "segmentation"
    shape_pixels = ~np.all(image == BACKGROUND_COLOURS[scene.background], axis=-1)
    if kind == "edges":
        # A shape pixel with a background (or off-image) 4-neighbour; shapes never touch.
        padded = np.pad(shape_pixels, 1)
        boundary = shape_pixels & ~(padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
        assert np.array_equal(the_map[..., 0] == 255, boundary) and np.all(the_map[~boundary] == 0)
        for shape in scene.shapes:
            assert (boundary & shape_mask(shape, size)).sum() >= 4
    elif kind == "segmentation":
        assert np.all(the_map[~shape_pixels] == SEGMENTATION_COLOURS["background"])
        for shape in scene.shapes:
            assert tuple(the_map[cell_centre(shape.position, size)]) == SEGMENTATION_COLOURS[shape.kind]
            assert np.all(the_map[shape_mask(shape, size)] == SEGMENTATION_COLOURS[shape.kind])
        assert {tuple(c) for c in the_map.reshape(-1, 3)} <= set(SEGMENTATION_COLOURS.values())
    elif kind == "depth":
        grey = the_map[..., 0].astype(int)
        for shape in scene.shapes:
            assert np.all(grey[shape_mask(shape, size)] == DEPTH_ROWS[POSITIONS[shape.position][0]])
        background = np.where(shape_pixels, -1, grey)
        ramp = background.max(axis=1)  # one grey per row on the ground plane, growing downwards
        assert np.all((background == ramp[:, None]) | shape_pixels)
        assert ramp[0] >= DEPTH_BACKGROUND[0] and ramp[-1] <= DEPTH_BACKGROUND[1] and np.all(np.diff(ramp) >= 0)
        assert grey[shape_pixels].min() > DEPTH_BACKGROUND[1]
    elif kind == "boxes":
        expected = np.zeros((size, size), dtype=bool)
        for shape in scene.shapes:
            r, c = np.nonzero(np.all(image == SHAPE_COLOURS[shape.colour], axis=-1) & shape_mask(shape, size))
            expected[r.min() : r.max() + 1, [c.min(), c.max()]] = True
            expected[[r.min(), r.max()], c.min() : c.max() + 1] = True
        assert np.array_equal(the_map[..., 0] == 255, expected) and np.all(the_map[~expected] == 0)
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("task", list(VISUAL_CONDITIONS))
def test_visual_condition_ground_truth(task, size):
    for skip in range(3):
        sample = task_sample("visual_condition", task, size, skip=skip)
        scene = Scene.from_dict(sample.spec["scene"])
        kind, name = VISUAL_CONDITIONS[task]
        assert sample.spec["condition"]["type"] == kind and sample.edit_source is None
        assert sample.instruction == f"{IMAGE_PREFIX}generate {describe_layout(scene)} following this {name}"
        assert not set(SIZES) & set(sample.instruction.split())  # sizes come from the map
        assert np.array_equal(sample.output_image, render(scene, size))
        _check_map(kind, scene, sample.output_image, sample.input_images[0])


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("task", ["edges", "segmentation", "depth"])
def test_cv_map_ground_truth(task, size):
    for skip in range(3):
        sample = task_sample("cv_tasks", task, size, skip=skip)
        scene = Scene.from_dict(sample.spec["scene"])
        assert sample.spec["map"]["type"] == task and sample.edit_source is None
        assert np.array_equal(sample.input_images[0], render(scene, size))
        _check_map(task, scene, sample.input_images[0], sample.output_image)


@pytest.mark.parametrize("size", [32, 64])
def test_cv_referring_mask_covers_exactly_the_named_object(size):
    for skip in range(5):
        sample = task_sample("cv_tasks", "referring", size, skip=skip)
        obj = ShapeSpec.from_dict(sample.spec["object"])
        assert sample.instruction == f"{IMAGE_PREFIX}highlight the {obj.colour} {obj.kind}"
        image, mask = sample.input_images[0], sample.output_image
        rows, cols = cell_slices(obj.position, size)
        in_cell = np.zeros((size, size), dtype=bool)
        in_cell[rows, cols] = True
        named = np.all(image == SHAPE_COLOURS[obj.colour], axis=-1) & in_cell
        assert named.sum() > 0 and np.array_equal(mask[..., 0] == 255, named) and np.all(mask[~named] == 0)


# --- cv_tasks restorations -----------------------------------------------------------------


def _restoration(task: str, size: int, skip: int = 0):
    sample = task_sample("cv_tasks", task, size, skip=skip)
    scene = Scene.from_dict(sample.spec["scene"])
    assert sample.edit_source == 0 and sample.spec["image_size"] == size
    assert np.array_equal(sample.output_image, render(scene, size))
    return sample, scene, sample.spec["degradation"], sample.input_images[0], sample.output_image


@pytest.mark.parametrize("size", [32, 64])
def test_cv_deblur_ground_truth(size):
    _, scene, degradation, blurred, clean = _restoration("deblur", size)
    sigma = degradation["sigma_px"]
    assert degradation["kind"] == "blur" and sigma >= 0.75 * size / 32
    assert np.array_equal(blurred, gaussian_blur(clean, sigma))
    # Flat neighbourhoods (radius ceil(3 sigma)) are untouched; every shape's edge is softened.
    radius = int(np.ceil(3 * sigma))
    padded = np.pad(clean, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * radius + 1, 2 * radius + 1), axis=(0, 1))
    flat = np.all(windows == clean[..., None, None], axis=(-1, -2)).all(axis=-1)
    assert np.array_equal(blurred[flat], clean[flat])
    changed = np.any(blurred != clean, axis=-1)
    assert all((changed & shape_mask(s, size)).any() for s in scene.shapes)


@pytest.mark.parametrize("size", [32, 64])
def test_cv_denoise_ground_truth(size):
    for skip in range(3):
        _, _, degradation, noisy, clean = _restoration("denoise", size, skip)
        residual = noisy.astype(float) - clean
        unclipped = (noisy > 0) & (noisy < 255)  # clipping at 0/255 loses the other half of the noise
        rms = np.sqrt(np.mean(residual[unclipped] ** 2))
        assert degradation["kind"] == "noise" and rms == pytest.approx(degradation["std"], rel=0.15)


@pytest.mark.parametrize("size", [32, 64])
def test_cv_inpaint_differs_only_in_the_box(size):
    for skip in range(20):
        _, scene, degradation, masked, clean = _restoration("inpaint", size, skip)
        top, left, bottom, right = degradation["box"]
        assert 0 <= top < bottom <= size and 0 <= left < right <= size
        box = np.zeros((size, size), dtype=bool)
        box[top:bottom, left:right] = True
        assert np.all(masked[box] == MASK_COLOUR) and outside(box, masked, clean)
        assert tuple(degradation["colour"]) == MASK_COLOUR and np.all(np.any(clean[box] != MASK_COLOUR, axis=-1))
        # Over some shape's centre, yet no shape is hidden entirely: the restoration is well posed.
        assert any(box[cell_centre(s.position, size)] for s in scene.shapes)
        assert all((shape_mask(s, size) & ~box).any() for s in scene.shapes)


@pytest.mark.parametrize("size", [32, 64])
def test_cv_colourise_ground_truth(size):
    sample, scene, degradation, grey, clean = _restoration("colourise", size)
    assert sample.instruction == f"{IMAGE_PREFIX}colourise this image with {describe_layout(scene)}"
    assert np.all(grey == grey[..., :1])
    luma = 0.299 * clean[..., 0] + 0.587 * clean[..., 1] + 0.114 * clean[..., 2]
    assert np.abs(grey[..., 0] - luma).max() <= 0.5 + 1e-9
    assert np.array_equal(grey, greyscale(clean)) and degradation == {
        "kind": "greyscale",
        "luma_weights": [299, 587, 114],
    }
