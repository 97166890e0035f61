"""Packing sources into webdataset shards, and reading them back (local, "pipe:", damaged)."""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_sources import GOOD, SHAPES_FAMILIES, write_jsonl
from webdataset import TarWriter

from omnigen.data.schema import Skipped, X2ISample
from omnigen.data.sources import JsonlSource, ShapesSource, Source, WebDatasetSource
from omnigen.data.write_shards import main, pack, png_bytes


def same_samples(a: X2ISample, b: X2ISample) -> bool:
    return (
        (a.instruction, a.family, a.task, a.spec, a.edit_source, a.notes)
        == (b.instruction, b.family, b.task, b.spec, b.edit_source, b.notes)
        and len(a.input_images) == len(b.input_images)
        and all(
            np.array_equal(np.asarray(x), np.asarray(y))
            for x, y in zip([*a.input_images, a.output_image], [*b.input_images, b.output_image], strict=True)
        )
    )


def shapes(count: int = 6, seed: int = 1) -> ShapesSource:
    return ShapesSource(SHAPES_FAMILIES, image_size=16, seed=seed, length=count)


def test_jsonl_round_trip(tmp_path):
    path, expected = write_jsonl(tmp_path / "data")
    source = JsonlSource(path)
    result = pack(source, str(tmp_path / "out" / "shard-%06d.tar"), maxcount=2)
    good = [r for r in source.read() if isinstance(r, X2ISample)]
    assert result["written"] == len(good) == 5
    assert result["skipped"] == Counter(e[0] for _, e in expected if e[0] != GOOD)
    assert [Path(s).name for s in result["shards"]] == [f"shard-{i:06d}.tar" for i in range(3)]
    assert "train.jsonl:7" in result["skipped_messages"][0]
    packed = WebDatasetSource(str(tmp_path / "out" / "shard-{000000..000002}.tar"))
    back = list(packed.read())
    assert len(packed) == 5  # from index.json
    # each key names the shard record and the line pack read it from
    assert [r.key for r in back] == [f"shard-{i // 2:06d}.tar:{i:09d} (from {g.key})" for i, g in enumerate(good)]
    assert all(isinstance(r, X2ISample) and same_samples(r, g) for r, g in zip(back, good, strict=True))
    assert back[2].notes == ["mode_L", "mode_RGBA"]  # conversions made before packing still count


def test_pack_is_deterministic_and_refuses_to_overwrite(tmp_path):
    first = pack(shapes(), str(tmp_path / "a" / "s-%03d.tar"), maxcount=4)
    second = pack(shapes(), str(tmp_path / "b" / "s-%03d.tar"), maxcount=4)
    assert [Path(p).read_bytes() for p in first["shards"]] == [Path(p).read_bytes() for p in second["shards"]]
    with pytest.raises(FileExistsError, match="exist already"):
        pack(shapes(), str(tmp_path / "a" / "s-%03d.tar"))
    again = pack(shapes(3, seed=2), str(tmp_path / "a" / "s-%03d.tar"), overwrite=True)
    assert sorted(p.name for p in (tmp_path / "a").glob("s-*.tar")) == ["s-000.tar"]  # old s-001 gone
    assert again["written"] == len(WebDatasetSource(str(tmp_path / "a" / "s-*.tar"))) == 3
    with pytest.raises(ValueError, match="integer field"):
        pack(shapes(), str(tmp_path / "c" / "shard.tar"))


def test_cli_packs_shapes_and_jsonl(tmp_path, capsys):
    ratios = [f"shapes.{family}={ratio}" for family, ratio in SHAPES_FAMILIES.items()]
    out = tmp_path / "shapes" / "shard-%06d.tar"
    assert main([*ratios, "count=10", "image_size=16", "seed=2", f"out={out}", "maxcount=4"]) == 0
    assert "wrote 10 records to 3 shard(s)" in capsys.readouterr().out
    back = list(WebDatasetSource(str(tmp_path / "shapes" / "shard-*.tar")).read())
    assert all(same_samples(b, s) for b, s in zip(back, shapes(10, seed=2).read(), strict=True))

    assert main(["shapes.no_such_family=1", "count=3", f"out={out}"]) == 2
    assert "no_such_family" in capsys.readouterr().err
    assert main(["shapes.text_to_image=1", f"out={out}"]) == 2 and "count=N" in capsys.readouterr().err
    assert main([f"out={out}"]) == 2 and "name one source" in capsys.readouterr().err

    path, _ = write_jsonl(tmp_path / "data")
    assert main([f"jsonl={path}", f"out={tmp_path / 'j' / 'shard-%06d.tar'}"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 5 records to 1 shard(s)" in printed and "bad_json=5" in printed
    assert "[missing_image] train.jsonl:13: input_images[0] 'nope.png'" in printed


def test_pipe_urls_read_like_local_paths(tmp_path):
    result = pack(shapes(9), str(tmp_path / "shard-%06d.tar"), maxcount=4)
    local = list(WebDatasetSource(result["shards"]).read())
    piped = list(WebDatasetSource([f"pipe:cat {p}" for p in result["shards"]]).read())
    assert [r.key for r in piped] == [r.key for r in local] and len(local) == 9
    assert all(same_samples(a, b) for a, b in zip(piped, local, strict=True))
    # Partial reads close the pipe early without an error.
    records = WebDatasetSource(f"pipe:cat {result['shards'][0]}").read()
    assert isinstance(next(records), X2ISample)
    records.close()
    with pytest.raises(TypeError, match="non-local"):
        len(WebDatasetSource(f"pipe:cat {result['shards'][0]}"))
    with pytest.raises(OSError):
        list(WebDatasetSource(f"pipe:cat {tmp_path / 'absent.tar'}").read())


def member(path: Path, name: str) -> tarfile.TarInfo:
    with tarfile.open(path) as tar:
        return tar.getmember(name)


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        file.write(data)


def test_corrupt_members_are_skipped(tmp_path):
    shard = Path(pack(shapes(), str(tmp_path / "shard-%06d.tar"))["shards"][0])
    image = member(shard, "000000002.output.png")
    overwrite(shard, image.offset_data, b"\0" * 16)  # no PNG signature any more
    meta = member(shard, "000000004.json")
    overwrite(shard, meta.offset_data, b"{" * 8)
    records = list(WebDatasetSource(str(shard)).read())
    assert [type(r) for r in records] == [X2ISample, X2ISample, Skipped, X2ISample, Skipped, X2ISample]
    assert (records[2].reason, records[2].key) == ("corrupt_image", "shard-000000.tar:000000002 (from shapes:2)")
    assert "000000002.output.png" in records[2].message
    assert (records[4].reason, records[4].key) == ("bad_json", "shard-000000.tar:000000004")


def test_truncated_shard_ends_in_skipped(tmp_path):
    shard = Path(pack(shapes(), str(tmp_path / "shard-%06d.tar"))["shards"][0])
    data = shard.read_bytes()
    last = member(shard, "000000005.output.png")
    shard.write_bytes(data[: last.offset_data + last.size // 2])  # cut inside the last image
    records = list(WebDatasetSource(str(shard)).read())
    assert [type(r) for r in records] == [X2ISample] * 5 + [Skipped]
    assert records[5].reason == "corrupt_image" and "truncated" in records[5].message
    shard.write_bytes(data[: last.offset])  # cut between members: the tar looks complete
    records = list(WebDatasetSource(str(shard)).read())
    assert [type(r) for r in records] == [X2ISample] * 5 + [Skipped] and records[5].reason == "missing_image"
    with pytest.raises(TypeError, match="rewritten"):  # index.json no longer matches the file
        len(WebDatasetSource(str(shard)))
    shard.write_bytes(b"not a tar at all" * 40)
    (skipped,) = WebDatasetSource(str(shard)).read()
    assert skipped.reason == "bad_json" and "not a readable tar" in skipped.message


def test_hand_written_shard_checks(tmp_path):
    sample = next(shapes(1).read())
    png = png_bytes(sample.output_image)

    def meta(**fields) -> bytes:
        return json.dumps(
            {"instruction": "a cat", "family": "text_to_image", "task": "t2i", "num_inputs": 0, **fields}
        ).encode()

    path = tmp_path / "hand.tar"
    with TarWriter(str(path), encoder=False) as writer:
        writer.write({"__key__": "ok", "json": meta(), "output.png": png})
        writer.write(
            {
                "__key__": "noinput",
                "json": meta(instruction="<img><|image_1|></img> x", num_inputs=1, family="mixed_modal", task="edit"),
                "output.png": png,
            }
        )
        writer.write({"__key__": "nojson", "output.png": png})
        writer.write({"__key__": "extra", "json": meta(), "output.png": png, "input_0.png": png})
        writer.write({"__key__": "notype", "json": meta(num_inputs="0"), "output.png": png})
        writer.write({"__key__": "badtask", "json": meta(task="juggle"), "output.png": png})
        writer.write({"__key__": "empty", "json": meta(), "output.png": b""})
    records = list(WebDatasetSource(str(path)).read())
    assert isinstance(records[0], X2ISample) and records[0].key == "hand.tar:ok"
    assert [(r.key.split(":")[1], r.reason) for r in records[1:]] == [
        ("noinput", "missing_image"),
        ("nojson", "bad_json"),
        ("extra", "image_count"),
        ("notype", "bad_json"),
        ("badtask", "unknown_task"),
        ("empty", "empty_image"),
    ]
    with pytest.raises(TypeError, match="index.json"):
        len(WebDatasetSource(str(path)))


class Interrupted(Source):
    name = "interrupted"

    def read(
        self, part: int = 0, num_parts: int = 1, epoch: int = 0, shuffle: bool = False, seed: int = 0
    ) -> Iterator[X2ISample | Skipped]:
        yield from shapes(5).read()
        raise KeyboardInterrupt


def test_interrupted_pack_leaves_no_shards(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        pack(Interrupted(), str(tmp_path / "shard-%06d.tar"), maxcount=2)
    assert list(tmp_path.iterdir()) == []  # neither shards nor the temporary directory
