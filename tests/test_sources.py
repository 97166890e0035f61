"""Data sources: JSONL (released OmniGen format), Shapes-X2I and webdataset shards as `Source`s."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omnigen.data.schema import Skipped, X2ISample
from omnigen.data.shapes.tasks import FAMILIES, sample_at
from omnigen.data.sources import JsonlSource, ShapesSource, Source, WebDatasetSource

IMG1, IMG2 = "<img><|image_1|></img>", "<img><|image_2|></img>"
# Whatever Shapes families exist (read, not named, so renames do not break these tests).
SHAPES_FAMILIES = {family: 1.0 for family in FAMILIES}


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def noise(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    # Noise, so PNGs do not compress to a few bytes and truncating one cuts into pixel data.
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode)


def zero_width_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 0, 4, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# (line, expected) in file order; None is a blank line. Good lines expect (family, task, notes).
GOOD = "good"
LINES: list[tuple[object, object]] = [
    (
        {"instruction": "a red circle", "output_image": "rgb.png", "family": "text_to_image"},
        (GOOD, "text_to_image", "t2i", []),
    ),
    (
        {"instruction": f"{IMG1} make it blue", "input_images": ["rgb.png"], "output_image": "square.png"},
        (GOOD, "mixed_modal", "edit", []),
    ),
    (None, None),
    (
        {
            "instruction": f"{IMG1} colourise",
            "input_images": ["gray.png"],
            "output_image": "img/rgba.png",
            "family": "cv_tasks",
            "task": "colourise",
        },
        (GOOD, "cv_tasks", "colourise", ["mode_L", "mode_RGBA"]),
    ),
    (
        {
            "task_type": "text_to_iamge",
            "instruction": "a cat",
            "input_images": [],
            "output_image": "square.png",
            "family": "text_to_image",
        },
        (GOOD, "text_to_image", "t2i", []),
    ),
    (
        {
            "instruction": f"{IMG1} and {IMG2} together",
            "input_images": ["rgb.png", "gray.png"],
            "output_image": "rgb.png",
            "task": "mixed",
        },
        (GOOD, "mixed_modal", "mixed", ["mode_L"]),
    ),
    ("{not json", ("bad_json", "not valid JSON")),
    ({"instruction": "no output"}, ("bad_json", "'output_image' is missing")),
    (
        {"instruction": f"{IMG1} x", "input_images": "rgb.png", "output_image": "rgb.png"},
        ("bad_json", "'input_images'"),
    ),
    ("   ", None),
    ([1, 2], ("bad_json", "not an object")),
    ({"instruction": 5, "output_image": "rgb.png"}, ("bad_json", "'instruction' must be a str")),
    (
        {"instruction": f"{IMG1} x", "input_images": ["nope.png"], "output_image": "rgb.png"},
        ("missing_image", "input_images[0] 'nope.png'"),
    ),
    (
        {"instruction": "x", "output_image": "corrupt.png", "family": "text_to_image"},
        ("corrupt_image", "output_image 'corrupt.png'"),
    ),
    (
        {"instruction": f"{IMG1} x", "input_images": ["truncated.png"], "output_image": "rgb.png"},
        ("corrupt_image", "input_images[0] 'truncated.png'"),
    ),
    (
        {"instruction": "x", "output_image": "empty.png", "family": "text_to_image"},
        ("empty_image", "output_image 'empty.png'"),
    ),
    (
        {"instruction": "x", "output_image": "zero_width.png", "family": "text_to_image"},
        ("corrupt_image", "output_image 'zero_width.png'"),
    ),  # PIL refuses to open any 0-pixel-wide image
    (
        {"instruction": f"{IMG1} and {IMG2}", "input_images": ["rgb.png"], "output_image": "rgb.png"},
        ("image_count", "1 input image"),
    ),
    ({"instruction": "move it", "input_images": ["rgb.png"], "output_image": "rgb.png"}, ("image_count", "[]")),
    ({"instruction": "x", "output_image": "rgb.png", "task": "juggle"}, ("unknown_task", "'juggle'")),
    ({"instruction": "x", "output_image": "rgb.png", "family": "painting"}, ("unknown_task", "'painting'")),
    (
        {"instruction": "x", "output_image": "empty.png", "family": "text_to_image", "task": "juggle"},
        ("unknown_task", "'juggle'"),
    ),  # task checked before any image is decoded
]


def write_jsonl(root: Path) -> tuple[Path, list[tuple[str, object]]]:
    """The fixture data set under root; returns the JSONL path and (key, expected) for each record."""
    (root / "img").mkdir(parents=True)
    noise("RGB", (40, 30), 0).save(root / "rgb.png")
    noise("RGB", (24, 24), 1).save(root / "square.png")
    noise("L", (16, 20), 2).save(root / "gray.png")
    noise("RGBA", (12, 12), 3).save(root / "img" / "rgba.png")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (root / "truncated.png").write_bytes(png(noise("RGB", (64, 64), 4))[:3000])
    (root / "empty.png").write_bytes(b"")
    (root / "zero_width.png").write_bytes(zero_width_png())
    path, records = root / "train.jsonl", []
    with path.open("w") as file:
        for number, (line, expected) in enumerate(LINES, start=1):
            if line is None or expected is None:
                file.write(f"{line or ''}\n")
                continue
            file.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
            records.append((f"train.jsonl:{number}", expected))
    return path, records


@pytest.fixture
def jsonl(tmp_path: Path) -> tuple[Path, list[tuple[str, object]]]:
    return write_jsonl(tmp_path / "data")


def test_jsonl_good_records(jsonl):
    path, expected = jsonl
    source = JsonlSource(path)
    assert len(source) == len(expected)  # blank lines are not records
    records = list(source.read())
    assert [r.key for r in records] == [key for key, _ in expected]
    good = [(r, e) for r, (_, e) in zip(records, expected, strict=True) if e[0] == GOOD]
    assert len(good) == 5 and all(isinstance(r, X2ISample) for r, _ in good)
    for record, (_, family, task, notes) in good:
        assert (record.family, record.task, record.notes) == (family, task, notes)
        assert all(im.mode == "RGB" for im in [*record.input_images, record.output_image])
    first, edit, colourise = good[0][0], good[1][0], good[2][0]
    assert first.input_images == [] and first.output_image.size == (40, 30)
    assert edit.instruction == f"{IMG1} make it blue" and edit.input_images[0].size == (40, 30)
    assert colourise.input_images[0].size == (16, 20) and colourise.output_image.size == (12, 12)
    rgb = np.asarray(Image.open(path.parent / "rgb.png"))
    assert np.array_equal(np.asarray(edit.input_images[0]), rgb)
    assert np.array_equal(
        np.asarray(colourise.input_images[0]), np.asarray(Image.open(path.parent / "gray.png").convert("RGB"))
    )
    assert source.get(1).key == "train.jsonl:2"


def test_jsonl_bad_inputs_are_skipped_with_reason_and_place(jsonl):
    path, expected = jsonl
    records = list(JsonlSource(path).read())
    bad = [(r, key, e) for r, (key, e) in zip(records, expected, strict=True) if e[0] != GOOD]
    assert len(bad) == len(expected) - 5
    for record, key, (reason, fragment) in bad:
        assert isinstance(record, Skipped), key
        assert (record.reason, record.key) == (reason, key), record.message
        assert record.message.startswith(f"{key}: ") and fragment in record.message, record.message


def test_jsonl_image_root_and_defaults(jsonl, tmp_path):
    path, _ = jsonl
    moved = tmp_path / "elsewhere.jsonl"
    moved.write_text(path.read_text())
    source = JsonlSource(moved, image_root=path.parent, family="text_to_image", name="mine")
    first = source.get(0)
    assert isinstance(first, X2ISample) and first.key == "mine:1"
    assert JsonlSource(moved, image_root=path.parent, task="style").get(1).task == "style"
    assert isinstance(JsonlSource(moved).get(0), Skipped)  # images not beside this copy -> missing_image


def test_configuration_errors_raise(jsonl, tmp_path):
    path, _ = jsonl
    with pytest.raises(FileNotFoundError, match="absent.jsonl"):
        JsonlSource(tmp_path / "absent.jsonl")
    with pytest.raises(NotADirectoryError, match="image root"):
        JsonlSource(path, image_root=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown family"):
        JsonlSource(path, family="painting")
    with pytest.raises(ValueError, match="juggle"):
        JsonlSource(path, task="juggle")
    with pytest.raises(ValueError, match="part"):
        next(JsonlSource(path).read(part=4, num_parts=4))
    with pytest.raises(ValueError, match="family"):
        ShapesSource({"no_such_family": 1.0})
    with pytest.raises(FileNotFoundError, match="no shards"):
        WebDatasetSource(str(tmp_path / "shards-*.tar"))
    with pytest.raises(FileNotFoundError, match="not found"):
        WebDatasetSource(str(tmp_path / "shard-{000..003}.tar"))


def test_shapes_source_matches_sample_at():
    source = ShapesSource(SHAPES_FAMILIES, image_size=16, seed=3, length=12)
    records = list(source.read())
    assert [r.key for r in records] == [f"shapes:{i}" for i in range(12)] and len(source) == 12
    for i, record in enumerate(records):
        raw = sample_at(i, 3, SHAPES_FAMILIES, 16)
        assert isinstance(record, X2ISample) and record.instruction == raw.instruction
        assert (record.task, record.spec, record.edit_source) == (raw.task, raw.spec, raw.edit_source)
        assert np.array_equal(np.asarray(record.output_image), raw.output_image)
        assert [np.asarray(im).tolist() for im in record.input_images] == [im.tolist() for im in raw.input_images]
    assert source.get(7).instruction == records[7].instruction
    with pytest.raises(IndexError):
        source.get(12)


def packed_shapes(directory: Path, count: int = 22, maxcount: int = 4) -> str:
    """Shapes records packed into ceil(count / maxcount) shards; returns the glob of the shards."""
    from omnigen.data.write_shards import pack

    pack(
        ShapesSource(SHAPES_FAMILIES, image_size=16, seed=1, length=count), str(directory / "shard-%06d.tar"), maxcount
    )
    return str(directory / "shard-*.tar")


def keys_of(source: Source, **kwargs) -> list[str]:
    return [record.key for record in source.read(**kwargs)]


@pytest.fixture
def sources(jsonl, tmp_path) -> dict[str, Source]:
    return {
        "jsonl": JsonlSource(jsonl[0]),
        "shapes": ShapesSource(SHAPES_FAMILIES, image_size=16, length=23),
        "webdataset": WebDatasetSource(packed_shapes(tmp_path / "shards"), shuffle_buffer=5),
    }


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("kind", ["jsonl", "shapes", "webdataset"])
def test_parts_read_every_record_exactly_once(sources, kind, shuffle):
    source = sources[kind]
    everything = keys_of(source)
    assert len(everything) == len(set(everything)) == len(source)
    for epoch in (0, 1):
        # 2 ranks × 2 workers: part = rank * 2 + worker.
        parts = [keys_of(source, part=p, num_parts=4, epoch=epoch, shuffle=shuffle, seed=5) for p in range(4)]
        assert all(parts), "every part gets records"
        assert sorted(k for part in parts for k in part) == sorted(everything)  # union = all, no duplicates
        if kind == "webdataset":  # split by shard: a shard's records stay in one part
            shards = [{k.split(":")[0] for k in part} for part in parts]
            assert all(a.isdisjoint(b) for i, a in enumerate(shards) for b in shards[i + 1 :])


@pytest.mark.parametrize("kind", ["jsonl", "shapes", "webdataset"])
def test_shuffle_changes_order_between_epochs_not_the_set(sources, kind):
    source = sources[kind]
    plain = keys_of(source)
    epoch0 = keys_of(source, shuffle=True, seed=5, epoch=0)
    assert keys_of(source, shuffle=True, seed=5, epoch=0) == epoch0  # deterministic
    epoch1 = keys_of(source, shuffle=True, seed=5, epoch=1)
    assert epoch0 != epoch1 and epoch0 != plain
    assert sorted(epoch0) == sorted(epoch1) == sorted(plain)
    assert keys_of(source, epoch=1) == plain  # no shuffle: epoch does not matter


def test_webdataset_fewer_shards_than_parts_warns(tmp_path):
    source = WebDatasetSource(packed_shapes(tmp_path, count=6, maxcount=4))  # 2 shards
    with pytest.warns(UserWarning, match="gets no shard"):
        assert keys_of(source, part=3, num_parts=4) == []
    assert len(keys_of(source, part=0, num_parts=4)) == 4
