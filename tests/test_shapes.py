"""Shapes-X2I world: determinism, render/spec agreement, every family's semantics (ground truth
checked against the rendered pixels), schema conformance, tokenizer coverage."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest
from PIL import Image

from omnigen.data import schema
from omnigen.data.shapes import (
    BACKGROUND_COLOURS,
    DEPTH_BACKGROUND,
    DEPTH_ROWS,
    EDIT_KINDS,
    FAMILIES,
    FAMILY_TASKS,
    IMAGE_PREFIX,
    MASK_COLOUR,
    PATTERNS,
    POSITIONS,
    SEGMENTATION_COLOURS,
    SHAPE_COLOURS,
    SHAPE_KINDS,
    SIZES,
    SPECIAL_TOKENS,
    TOKENIZER_PATH,
    VISUAL_CONDITIONS,
    Scene,
    ShapeSpec,
    ShapesSample,
    Subject,
    build_tokenizer,
    cell_centre,
    cell_slices,
    describe,
    describe_layout,
    gaussian_blur,
    greyscale,
    load_shapes_tokenizer,
    make_sample,
    render,
    sample_at,
    sample_scene,
    shape_mask,
    subject_pixels,
    vocabulary,
)
from omnigen.data.shapes.tasks import INSTRUCTION_TEMPLATES
from omnigen.processor import placeholder_ids

MIX = {family: 1.0 for family in FAMILIES}
CHAT = "<|user|>\n{instruction}<|end|>\n<|assistant|>\n"


def _scene(*shapes: tuple[str, str, str, str], background: str = "white") -> Scene:
    return Scene(background=background, shapes=tuple(ShapeSpec(*s) for s in shapes))


def _task_sample(family: str, task: str, size: int, seed: int = 3, skip: int = 0) -> ShapesSample:
    """The (skip + 1)-th sample of `task` in a fixed single-family stream."""
    for index in itertools.count():
        sample = sample_at(index, seed, {family: 1.0}, size)
        if sample.task == task:
            if skip == 0:
                return sample
            skip -= 1
    raise AssertionError("unreachable")


def _edit_sample(kind: str, size: int) -> ShapesSample:
    return _task_sample("mixed_modal", f"edit/{kind}", size)


def _outside(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a[~mask], b[~mask]))


# --- determinism ---------------------------------------------------------------------------


def test_sample_at_is_deterministic_and_order_independent():
    forward = [sample_at(i, 11, MIX, 32) for i in range(20)]
    backward = [sample_at(i, 11, MIX, 32) for i in reversed(range(20))][::-1]
    for a, b in zip(forward, backward, strict=True):
        assert a.instruction == b.instruction and a.task == b.task
        assert json.dumps(a.spec) == json.dumps(b.spec)
        assert np.array_equal(a.output_image, b.output_image)
        assert all(np.array_equal(x, y) for x, y in zip(a.input_images, b.input_images, strict=True))
    assert len({json.dumps(s.spec, sort_keys=True) for s in forward}) == len(forward)
    assert json.dumps(sample_at(0, 12, MIX, 32).spec) != json.dumps(forward[0].spec)


def test_family_ratios_are_realised():
    tasks = [sample_at(i, 0, {"text_to_image": 0.7, "mixed_modal": 0.3}, 32).family for i in range(2000)]
    assert abs(tasks.count("text_to_image") / len(tasks) - 0.7) < 0.05
    # Unnormalised weights mean the same thing; a zero weight never fires.
    assert {sample_at(i, 0, {"text_to_image": 0.0, "cv_tasks": 5.0}, 32).family for i in range(50)} == {"cv_tasks"}


def test_unknown_family_and_bad_ratios_raise():
    with pytest.raises(ValueError, match="text_to_image"):
        make_sample("inpaint", np.random.default_rng(0), 32)
    with pytest.raises(ValueError, match="mixed_modal"):
        sample_at(0, 0, {"t2i": 1.0}, 32)  # task names are not family names
    with pytest.raises(ValueError, match="non-negative"):
        sample_at(0, 0, {"text_to_image": -1.0, "mixed_modal": 2.0}, 32)


# --- world and rendering -------------------------------------------------------------------


def test_palettes_are_disjoint_and_well_separated():
    colours = np.array([*SHAPE_COLOURS.values(), *BACKGROUND_COLOURS.values()], dtype=float)
    dists = np.linalg.norm(colours[:, None] - colours[None, :], axis=-1)
    assert dists[~np.eye(len(colours), dtype=bool)].min() > 60
    assert len(POSITIONS) == 9 and sorted(POSITIONS.values()) == [(r, c) for r in range(3) for c in range(3)]
    # A large shape fits inside one third of the side with a margin.
    assert max(SIZES.values()) < 1 / 3 - 0.05
    # Segmentation classes are far apart too; the inpainting mask colour is no scene colour.
    classes = np.array(list(SEGMENTATION_COLOURS.values()), dtype=float)
    dists = np.linalg.norm(classes[:, None] - classes[None, :], axis=-1)
    assert set(SEGMENTATION_COLOURS) == {"background", *SHAPE_KINDS} and dists[~np.eye(len(classes), dtype=bool)].min() > 200
    assert np.linalg.norm(colours - np.array(MASK_COLOUR), axis=-1).min() > 60


def test_scene_invariants_hold_over_many_samples():
    rng = np.random.default_rng(0)
    for _ in range(500):
        scene = sample_scene(rng, 1, 9)
        assert len({s.position for s in scene.shapes}) == len(scene.shapes)
        assert len({(s.colour, s.kind) for s in scene.shapes}) == len(scene.shapes)
        assert Scene.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene
    for index in range(300):
        spec = sample_at(index, 5, MIX, 32).spec
        for scene in (spec.get("scene"), spec.get("source"), spec.get("target")):
            if scene is not None:
                Scene.from_dict(scene)  # re-validates every invariant


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: ShapeSpec("hexagon", "red", "small", "top"), "kind"),
        (lambda: ShapeSpec("circle", "white", "small", "top"), "colour"),
        (lambda: ShapeSpec("circle", "red", "huge", "top"), "size"),
        (lambda: ShapeSpec("circle", "red", "small", "middle"), "position"),
        (lambda: _scene(("circle", "red", "small", "top"), background="pink"), "background"),
        (lambda: _scene(("circle", "red", "small", "top"), ("square", "blue", "small", "top")), "shapes"),
        (lambda: _scene(("circle", "red", "small", "top"), ("circle", "red", "large", "left")), "shapes"),
        (lambda: Scene("white", ()), "shapes"),
    ],
)
def test_validation_errors_name_the_field(build, field):
    with pytest.raises(ValueError, match=rf"\.{field} "):
        build()


@pytest.mark.parametrize("size", [32, 64])
def test_render_agrees_with_spec(size):
    rng = np.random.default_rng(size)
    for _ in range(100):
        scene = sample_scene(rng, 1, 9)
        image = render(scene, size)
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
        union = np.zeros((size, size), dtype=bool)
        for shape in scene.shapes:
            colour = SHAPE_COLOURS[shape.colour]
            assert tuple(image[cell_centre(shape.position, size)]) == colour
            mask = shape_mask(shape, size)
            rows, cols = cell_slices(shape.position, size)
            # Exact palette colour exactly on the mask, and the mask lies inside its own cell.
            painted = np.all(image[rows, cols] == colour, axis=-1)
            assert painted.sum() > 0 and np.array_equal(painted, mask[rows, cols])
            assert mask[rows, cols].sum() == mask.sum()
            union |= mask
        for name, colour in SHAPE_COLOURS.items():
            # A colour appears nowhere but on the shapes that carry it (colours repeat across kinds).
            owners = [shape_mask(s, size) for s in scene.shapes if s.colour == name]
            expected = np.any(owners, axis=0) if owners else np.zeros((size, size), dtype=bool)
            assert np.array_equal(np.all(image == colour, axis=-1), expected)
        assert np.all(image[~union] == BACKGROUND_COLOURS[scene.background])


def test_shape_geometry():
    size = 96
    areas = {}
    for kind in ("circle", "square", "triangle"):
        mask = shape_mask(ShapeSpec(kind, "red", "large", "center"), size)
        areas[kind] = mask.sum() / (SIZES["large"] * size) ** 2
        rows = np.flatnonzero(mask.any(axis=1))
        widths = mask[rows].sum(axis=1)
        if kind == "triangle":  # apex up: rows widen monotonically downwards
            assert widths[0] < widths[-1] and np.all(np.diff(widths) >= 0)
    assert areas["square"] == pytest.approx(1.0, abs=0.1)
    assert areas["circle"] == pytest.approx(np.pi / 4, abs=0.1)
    assert areas["triangle"] == pytest.approx(0.5, abs=0.1)
    small = shape_mask(ShapeSpec("square", "red", "small", "center"), size).sum()
    assert small < 0.5 * shape_mask(ShapeSpec("square", "red", "large", "center"), size).sum()


@pytest.mark.parametrize("size", [0, -16, 24, 33, 100])
def test_render_rejects_sizes_not_multiple_of_16(size):
    with pytest.raises(ValueError, match="multiple of 16"):
        render(_scene(("circle", "red", "small", "top")), size)


def test_describe():
    scene = _scene(("circle", "red", "large", "top left"), ("square", "blue", "small", "center"))
    assert describe(scene) == "a large red circle at the top left and a small blue square at the center on a white background"
    three = _scene(*[("triangle", c, "small", p) for c, p in [("red", "top"), ("green", "left"), ("cyan", "right")]])
    assert describe(three).startswith("a small red triangle at the top, a small green triangle at the left and a")


# --- edits ---------------------------------------------------------------------------------


def _check_edit_common(sample: ShapesSample, size: int):
    spec = sample.spec
    source, target = Scene.from_dict(spec["source"]), Scene.from_dict(spec["target"])
    assert sample.instruction.startswith("<img><|image_1|></img> ")
    assert np.array_equal(sample.input_images[0], render(source, size))
    assert np.array_equal(sample.output_image, render(target, size))
    return source, target, spec["edit"], sample.input_images[0], sample.output_image


@pytest.mark.parametrize("size", [32, 64])
def test_edit_recolour(size):
    sample = _edit_sample("recolour", size)
    source, target, edit, before, after = _check_edit_common(sample, size)
    obj = ShapeSpec.from_dict(edit["object"])
    assert sample.instruction.endswith(f"make the {obj.colour} {obj.kind} {edit['colour']}")
    assert edit["colour"] != obj.colour
    mask = shape_mask(obj, size)
    changed = np.any(before != after, axis=-1)
    assert np.array_equal(changed, mask)
    assert np.all(after[mask] == SHAPE_COLOURS[edit["colour"]])


@pytest.mark.parametrize("size", [32, 64])
def test_edit_remove(size):
    sample = _edit_sample("remove", size)
    source, target, edit, before, after = _check_edit_common(sample, size)
    obj = ShapeSpec.from_dict(edit["object"])
    assert sample.instruction.endswith(f"remove the {obj.colour} {obj.kind}")
    assert len(target.shapes) == len(source.shapes) - 1 >= 1
    mask = shape_mask(obj, size)
    assert np.all(before[mask] == SHAPE_COLOURS[obj.colour])
    assert np.all(after[mask] == BACKGROUND_COLOURS[source.background])
    assert _outside(mask, before, after)


@pytest.mark.parametrize("size", [32, 64])
def test_edit_add(size):
    sample = _edit_sample("add", size)
    source, target, edit, before, after = _check_edit_common(sample, size)
    new = ShapeSpec.from_dict(edit["object"])
    assert sample.instruction.endswith(f"add a {new.size} {new.colour} {new.kind} at the {new.position}")
    assert new.position not in {s.position for s in source.shapes}
    assert tuple(after[cell_centre(new.position, size)]) == SHAPE_COLOURS[new.colour]
    rows, cols = cell_slices(new.position, size)
    assert np.all(before[rows, cols] == BACKGROUND_COLOURS[source.background])
    cell = np.zeros((size, size), dtype=bool)
    cell[rows, cols] = True
    assert _outside(cell, before, after)


@pytest.mark.parametrize("size", [32, 64])
def test_edit_move(size):
    sample = _edit_sample("move", size)
    source, target, edit, before, after = _check_edit_common(sample, size)
    obj = ShapeSpec.from_dict(edit["object"])
    assert sample.instruction.endswith(f"move the {obj.colour} {obj.kind} to the {edit['position']}")
    background = BACKGROUND_COLOURS[source.background]
    old_rows, old_cols = cell_slices(obj.position, size)
    new_rows, new_cols = cell_slices(edit["position"], size)
    assert np.all(after[old_rows, old_cols] == background)
    assert np.all(before[new_rows, new_cols] == background)
    assert tuple(after[cell_centre(edit["position"], size)]) == SHAPE_COLOURS[obj.colour]
    # Same shape, same size: identical pixel footprint in its new cell.
    assert np.array_equal(
        np.all(after[new_rows, new_cols] == SHAPE_COLOURS[obj.colour], axis=-1),
        np.all(before[old_rows, old_cols] == SHAPE_COLOURS[obj.colour], axis=-1),
    )
    cells = np.zeros((size, size), dtype=bool)
    cells[old_rows, old_cols] = cells[new_rows, new_cols] = True
    assert _outside(cells, before, after)


def test_every_edit_kind_occurs_and_edits_change_the_image():
    samples = [sample_at(i, 1, {"mixed_modal": 1.0}, 32) for i in range(200)]
    assert {s.task for s in samples} == {f"edit/{k}" for k in EDIT_KINDS}
    assert all(not np.array_equal(s.input_images[0], s.output_image) for s in samples)
    assert all(s.family in FAMILIES for s in samples)


# --- every family: registry, schema, rendering -----------------------------------------------


def test_families_and_tasks_match_the_schema_registry():
    assert FAMILIES == tuple(f for f in schema.TASKS if f != "few_shot") == tuple(FAMILY_TASKS)
    for family, tasks in FAMILY_TASKS.items():
        for task in tasks:
            schema.check_task(family, task, "shapes:test")
    with pytest.raises(schema.BadSample):
        schema.check_task("text_to_image", "edit/recolour", "shapes:test")


def _as_x2i(sample: ShapesSample, index: int) -> schema.X2ISample:
    return schema.X2ISample(
        instruction=sample.instruction,
        input_images=[Image.fromarray(im) for im in sample.input_images],
        output_image=Image.fromarray(sample.output_image),
        family=sample.family,
        task=sample.task,
        key=f"shapes:{index}",
        spec=sample.spec,
        edit_source=sample.edit_source,
    )


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_renders_and_validates(family, size):
    tasks = set()
    for index in range(60):
        sample = sample_at(index, 4, {family: 1.0}, size)
        tasks.add(sample.task)
        assert sample.family == family and sample.task in FAMILY_TASKS[family]
        for image in (*sample.input_images, sample.output_image):
            assert image.shape == (size, size, 3) and image.dtype == np.uint8
        # Placeholders <|image_1|> .. <|image_n|>, each once, wrapped, for the n input images.
        assert placeholder_ids(sample.instruction) == list(range(1, len(sample.input_images) + 1))
        assert (family == "text_to_image") == (not sample.input_images)
        assert sample.edit_source in (None, *range(len(sample.input_images)))
        assert json.loads(json.dumps(sample.spec)) == sample.spec  # JSON-serialisable, lists not tuples
        x2i = schema.validate(_as_x2i(sample, index))
        assert x2i.notes == [] and x2i.spec is sample.spec
    assert tasks == set(FAMILY_TASKS[family])


def test_all_families_are_deterministic_by_seed_and_index():
    for family in FAMILIES:
        for index in range(10):
            a, b = sample_at(index, 21, {family: 1.0}, 32), sample_at(index, 21, {family: 1.0}, 32)
            assert (a.instruction, a.task, a.edit_source) == (b.instruction, b.task, b.edit_source)
            assert json.dumps(a.spec) == json.dumps(b.spec) and np.array_equal(a.output_image, b.output_image)
            assert all(np.array_equal(x, y) for x, y in zip(a.input_images, b.input_images, strict=True))


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
    assert all(describe(Scene(scene.background, (s,))).removesuffix(f" on a {scene.background} background")
               in sample.instruction for s in scene.shapes)
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
    assert _outside(covered, output, render(scene, size))
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
            expected[r.min():r.max() + 1, [c.min(), c.max()]] = True
            expected[[r.min(), r.max()], c.min():c.max() + 1] = True
        assert np.array_equal(the_map[..., 0] == 255, expected) and np.all(the_map[~expected] == 0)
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("task", list(VISUAL_CONDITIONS))
def test_visual_condition_ground_truth(task, size):
    for skip in range(3):
        sample = _task_sample("visual_condition", task, size, skip=skip)
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
        sample = _task_sample("cv_tasks", task, size, skip=skip)
        scene = Scene.from_dict(sample.spec["scene"])
        assert sample.spec["map"]["type"] == task and sample.edit_source is None
        assert np.array_equal(sample.input_images[0], render(scene, size))
        _check_map(task, scene, sample.input_images[0], sample.output_image)


@pytest.mark.parametrize("size", [32, 64])
def test_cv_referring_mask_covers_exactly_the_named_object(size):
    for skip in range(5):
        sample = _task_sample("cv_tasks", "referring", size, skip=skip)
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
    sample = _task_sample("cv_tasks", task, size, skip=skip)
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
        assert np.all(masked[box] == MASK_COLOUR) and _outside(box, masked, clean)
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
    assert np.array_equal(grey, greyscale(clean)) and degradation == {"kind": "greyscale", "luma_weights": [299, 587, 114]}


# --- tokenizer -----------------------------------------------------------------------------


def test_shipped_tokenizer_is_up_to_date():
    shipped = json.loads(TOKENIZER_PATH.read_text())
    assert shipped == json.loads(build_tokenizer().to_str()), "run `python -m omnigen.data.shapes.vocab`"


def test_instructions_tokenise_without_unk():
    tok = load_shapes_tokenizer()
    assert tok.pad_token_id == 0 and tok.convert_tokens_to_ids(SPECIAL_TOKENS) == list(range(len(SPECIAL_TOKENS)))
    seen = set()
    for index in range(600):
        sample = sample_at(index, 2, MIX, 32)
        seen.add((sample.family, sample.task))
        # The processor splits the prompt at <|image_i|>; the <img> </img> around it stay text.
        text = CHAT.format(instruction=re.sub(r"<\|image_\d+\|>", "", sample.instruction))
        ids = tok(text, add_special_tokens=False).input_ids
        assert tok.unk_token_id not in ids, text
        # Word-level: the non-special tokens are exactly the instruction's words.
        words = [t for t in tok.convert_ids_to_tokens(ids) if t not in SPECIAL_TOKENS]
        assert words == re.sub(r"<img><\|image_\d+\|></img>", " ", sample.instruction).replace(",", " ,").split()
    assert seen == {(family, task) for family, tasks in FAMILY_TASKS.items() for task in tasks}


def test_grammar_templates_hold_no_placeholders_and_vocabulary_fits_the_tiny_backbone():
    # vocab.py reads words out of template literals; a literal placeholder would add "img", "|", ...
    assert not any("<" in t for t in INSTRUCTION_TEMPLATES)
    assert {"img", "image_1", "|"}.isdisjoint(vocabulary())
    assert len(SPECIAL_TOKENS) + len(vocabulary()) <= 128  # configs/model/backbone/phi3_tiny.yaml vocab_size


def test_special_tokens_are_atomic():
    tok = load_shapes_tokenizer()
    tokens = tok.convert_ids_to_tokens(tok("<|user|>\na red circle<|end|>\n<|assistant|>\n<img></img>").input_ids)
    assert tokens == ["<|user|>", "a", "red", "circle", "<|end|>", "<|assistant|>", "<img>", "</img>"]
    assert tok.convert_ids_to_tokens(tok("the Red circle, 12").input_ids) == ["the", "red", "circle", ",", "1", "2"]
    assert tok.decode(tok("a red circle, a blue square").input_ids) == "a red circle, a blue square"
