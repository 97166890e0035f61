"""Shapes-X2I world: determinism, render/spec agreement, every family's semantics (ground truth
checked against the rendered pixels), schema conformance, tokenizer coverage."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image
from shapes_utils import CHAT, MIX, edit_sample, make_scene, outside

from omnigen.data import schema
from omnigen.data.shapes import (
    BACKGROUND_COLOURS,
    EDIT_KINDS,
    FAMILIES,
    FAMILY_TASKS,
    MASK_COLOUR,
    POSITIONS,
    SEGMENTATION_COLOURS,
    SHAPE_COLOURS,
    SHAPE_KINDS,
    SIZES,
    SPECIAL_TOKENS,
    TOKENIZER_PATH,
    Scene,
    ShapeSpec,
    ShapesSample,
    build_tokenizer,
    cell_centre,
    cell_slices,
    describe,
    load_shapes_tokenizer,
    make_sample,
    render,
    sample_at,
    sample_scene,
    shape_mask,
    vocabulary,
)
from omnigen.data.shapes.tasks import INSTRUCTION_TEMPLATES
from omnigen.processor import placeholder_ids

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
    assert (
        set(SEGMENTATION_COLOURS) == {"background", *SHAPE_KINDS}
        and dists[~np.eye(len(classes), dtype=bool)].min() > 200
    )
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
        (lambda: make_scene(("circle", "red", "small", "top"), background="pink"), "background"),
        (lambda: make_scene(("circle", "red", "small", "top"), ("square", "blue", "small", "top")), "shapes"),
        (lambda: make_scene(("circle", "red", "small", "top"), ("circle", "red", "large", "left")), "shapes"),
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
        render(make_scene(("circle", "red", "small", "top")), size)


def test_describe():
    scene = make_scene(("circle", "red", "large", "top left"), ("square", "blue", "small", "center"))
    assert (
        describe(scene)
        == "a large red circle at the top left and a small blue square at the center on a white background"
    )
    three = make_scene(
        *[("triangle", c, "small", p) for c, p in [("red", "top"), ("green", "left"), ("cyan", "right")]]
    )
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
    sample = edit_sample("recolour", size)
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
    sample = edit_sample("remove", size)
    source, target, edit, before, after = _check_edit_common(sample, size)
    obj = ShapeSpec.from_dict(edit["object"])
    assert sample.instruction.endswith(f"remove the {obj.colour} {obj.kind}")
    assert len(target.shapes) == len(source.shapes) - 1 >= 1
    mask = shape_mask(obj, size)
    assert np.all(before[mask] == SHAPE_COLOURS[obj.colour])
    assert np.all(after[mask] == BACKGROUND_COLOURS[source.background])
    assert outside(mask, before, after)


@pytest.mark.parametrize("size", [32, 64])
def test_edit_add(size):
    sample = edit_sample("add", size)
    source, target, edit, before, after = _check_edit_common(sample, size)
    new = ShapeSpec.from_dict(edit["object"])
    assert sample.instruction.endswith(f"add a {new.size} {new.colour} {new.kind} at the {new.position}")
    assert new.position not in {s.position for s in source.shapes}
    assert tuple(after[cell_centre(new.position, size)]) == SHAPE_COLOURS[new.colour]
    rows, cols = cell_slices(new.position, size)
    assert np.all(before[rows, cols] == BACKGROUND_COLOURS[source.background])
    cell = np.zeros((size, size), dtype=bool)
    cell[rows, cols] = True
    assert outside(cell, before, after)


@pytest.mark.parametrize("size", [32, 64])
def test_edit_move(size):
    sample = edit_sample("move", size)
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
    assert outside(cells, before, after)


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
