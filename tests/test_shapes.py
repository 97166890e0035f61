"""Shapes-X2I world: determinism, render/spec agreement, edit semantics, tokenizer coverage."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from omnigen.data.shapes import (
    BACKGROUND_COLOURS,
    EDIT_KINDS,
    FAMILIES,
    IMAGE_PREFIX,
    POSITIONS,
    SHAPE_COLOURS,
    SIZES,
    SPECIAL_TOKENS,
    TOKENIZER_PATH,
    Scene,
    ShapesSample,
    ShapeSpec,
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
)

MIX = {"t2i": 0.5, "edit": 0.5}
CHAT = "<|user|>\n{instruction}<|end|>\n<|assistant|>\n"


def _scene(*shapes: tuple[str, str, str, str], background: str = "white") -> Scene:
    return Scene(background=background, shapes=tuple(ShapeSpec(*s) for s in shapes))


def _edit_sample(kind: str, size: int) -> ShapesSample:
    """First sample of the given edit kind in a fixed edit-only stream."""
    for index in itertools.count():
        sample = sample_at(index, 3, {"edit": 1.0}, size)
        if sample.task == f"edit/{kind}":
            return sample
    raise AssertionError("unreachable")


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
    tasks = [sample_at(i, 0, {"t2i": 0.7, "edit": 0.3}, 32).family for i in range(2000)]
    assert abs(tasks.count("t2i") / len(tasks) - 0.7) < 0.05
    # Unnormalised weights mean the same thing; a zero weight never fires.
    assert {sample_at(i, 0, {"t2i": 0.0, "edit": 5.0}, 32).family for i in range(50)} == {"edit"}


def test_unknown_family_and_bad_ratios_raise():
    with pytest.raises(ValueError, match="t2i"):
        make_sample("inpaint", np.random.default_rng(0), 32)
    with pytest.raises(ValueError, match="edit"):
        sample_at(0, 0, {"inpaint": 1.0}, 32)
    with pytest.raises(ValueError, match="non-negative"):
        sample_at(0, 0, {"t2i": -1.0, "edit": 2.0}, 32)


# --- world and rendering -------------------------------------------------------------------


def test_palettes_are_disjoint_and_well_separated():
    colours = np.array([*SHAPE_COLOURS.values(), *BACKGROUND_COLOURS.values()], dtype=float)
    dists = np.linalg.norm(colours[:, None] - colours[None, :], axis=-1)
    assert dists[~np.eye(len(colours), dtype=bool)].min() > 60
    assert len(POSITIONS) == 9 and sorted(POSITIONS.values()) == [(r, c) for r in range(3) for c in range(3)]
    # A large shape fits inside one third of the side with a margin.
    assert max(SIZES.values()) < 1 / 3 - 0.05


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
    samples = [sample_at(i, 1, {"edit": 1.0}, 32) for i in range(200)]
    assert {s.task for s in samples} == {f"edit/{k}" for k in EDIT_KINDS}
    assert all(not np.array_equal(s.input_images[0], s.output_image) for s in samples)
    assert all(s.family in FAMILIES for s in samples)


# --- tokenizer -----------------------------------------------------------------------------


def test_shipped_tokenizer_is_up_to_date():
    shipped = json.loads(TOKENIZER_PATH.read_text())
    assert shipped == json.loads(build_tokenizer().to_str()), "run `python -m omnigen.data.shapes.vocab`"


def test_instructions_tokenise_without_unk():
    tok = load_shapes_tokenizer()
    assert tok.pad_token_id == 0 and tok.convert_tokens_to_ids(SPECIAL_TOKENS) == list(range(len(SPECIAL_TOKENS)))
    for index in range(500):
        sample = sample_at(index, 2, MIX, 32)
        text = CHAT.format(instruction=sample.instruction.replace("<|image_1|>", ""))
        ids = tok(text, add_special_tokens=False).input_ids
        assert tok.unk_token_id not in ids, text
        # Word-level: the non-special tokens are exactly the instruction's words.
        words = [t for t in tok.convert_ids_to_tokens(ids) if t not in SPECIAL_TOKENS]
        assert words == sample.instruction.removeprefix(IMAGE_PREFIX).replace(",", " ,").split()


def test_special_tokens_are_atomic():
    tok = load_shapes_tokenizer()
    tokens = tok.convert_ids_to_tokens(tok("<|user|>\na red circle<|end|>\n<|assistant|>\n<img></img>").input_ids)
    assert tokens == ["<|user|>", "a", "red", "circle", "<|end|>", "<|assistant|>", "<img>", "</img>"]
    assert tok.convert_ids_to_tokens(tok("the Red circle, 12").input_ids) == ["the", "red", "circle", ",", "1", "2"]
    assert tok.decode(tok("a red circle, a blue square").input_ids) == "a red circle, a blue square"
