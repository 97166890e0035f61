"""Bad input through the whole data layer: every kind a released-format JSONL corpus or a shard can
hold is a counted skip with its own reason and a message naming file, line and field (or, with
on_bad=error, an error naming it); no path outside the image root is read, nothing hangs, and a data
set with nothing usable stops the run instead of spinning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omnigen.data.modules import MixedModalDataModule, MixtureDataModule, TextToImageDataModule
from omnigen.data.resolution import Resolution
from omnigen.data.schema import BadSample, Skipped, X2ISample
from omnigen.data.sources import JsonlSource, WebDatasetSource
from omnigen.data.sources import webdataset as webdataset_module
from omnigen.data.write_shards import main as pack_main
from omnigen.data.write_shards import pack

IMG1 = "<img><|image_1|></img>"


def noise_png(path: Path, size: tuple[int, int] = (16, 16), seed: int = 0) -> Path:
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return path


def bomb_png(path: Path, side: int) -> Path:
    """A side × side black PNG written without PIL, so a 12000² image costs a few hundred KB, not 400 MB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    rows = zlib.compressobj(9)
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + one bit per pixel (1-bit greyscale)
    data = b"".join(rows.compress(row) for _ in range(side)) + rows.flush()
    header = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def corpus(tmp_path):
    """A data root with good and bad images, and an outside directory with a readable secret."""
    root, outside = tmp_path / "data", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    noise_png(root / "good.png")
    noise_png(outside / "secret.png", seed=1)
    (root / "subdir").mkdir()
    (root / "escape.png").symlink_to(outside / "secret.png")
    (root / "inside_link.png").symlink_to(root / "good.png")
    (root / "loop.png").symlink_to(root / "loop.png")
    os.mkfifo(root / "fifo.png")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (root / "empty.png").write_bytes(b"")
    (root / "text.png").write_bytes(b"hello, not an image\n")
    bomb_png(root / "bomb.png", 12000)
    Image.new("RGB", (8, 8)).save(root / "image.tga")  # a format PIL reads but sources refuse
    return root, outside


# (record, expected reason, fragment of the message). The family is mixed_modal unless the line says.
def edit(path: str, instruction: str = f"{IMG1} make it red") -> dict:
    return {"instruction": instruction, "input_images": [path], "output_image": "good.png"}


def t2i(path: str, instruction: str = "a red circle") -> dict:
    return {"instruction": instruction, "output_image": path, "family": "text_to_image"}


KINDS: list[tuple[str, object, str, str]] = [
    ("not JSON", "{not json", "bad_json", "not valid JSON"),
    ("invalid UTF-8", b'{"instruction": "\xff\xfe"}', "bad_json", "not valid JSON"),
    ("JSON nested too deep", "[" * 100_000, "bad_json", "RecursionError"),
    ("JSON array, not an object", [1, 2], "bad_json", "not an object"),
    (
        "duplicate key",
        '{"instruction": "a", "instruction": "b", "output_image": "good.png", "family": "text_to_image"}',
        "bad_json",
        "key 'instruction' twice",
    ),
    ("missing output_image", {"instruction": "x", "family": "text_to_image"}, "bad_json", "'output_image' is missing"),
    ("instruction not a string", {"instruction": 5, "output_image": "good.png"}, "bad_json", "must be a str"),
    ("input_images not a list", {**edit("good.png"), "input_images": "good.png"}, "bad_json", "'input_images'"),
    ("empty instruction", t2i("good.png", ""), "empty_instruction", "instruction is empty"),
    ("whitespace instruction", t2i("good.png", " \t "), "empty_instruction", "instruction is empty"),
    ("placeholders ≠ images", edit("good.png", f"{IMG1} <img><|image_2|></img> x"), "image_count", "1 input image"),
    ("malformed placeholder", edit("good.png", "<img><|image_one|></img> x"), "image_count", "placeholder"),
    ("unknown family", {**t2i("good.png"), "family": "painting"}, "unknown_task", "'painting'"),
    ("unknown task", {**t2i("good.png"), "task": "juggle"}, "unknown_task", "'juggle'"),
    ("missing file", edit("nope.png"), "missing_image", "input_images[0] 'nope.png'"),
    ("NUL byte in a path", edit("go\0od.png"), "missing_image", "cannot be resolved"),
    ("symlink loop", edit("loop.png"), "missing_image", "loop.png"),
    (
        "../ out of the root",
        edit("../outside/secret.png"),
        "path_outside_root",
        "input_images[0] '../outside/secret.png'",
    ),
    ("absolute path", "ABSOLUTE", "path_outside_root", "resolves outside the image root"),
    ("symlink out of the root", t2i("escape.png"), "path_outside_root", "output_image 'escape.png'"),
    ("FIFO", edit("fifo.png"), "not_a_file", "not a regular file"),
    ("directory", t2i("subdir"), "not_a_file", "not a regular file"),
    ("corrupt PNG", t2i("corrupt.png"), "corrupt_image", "output_image 'corrupt.png'"),
    ("text file named .png", t2i("text.png"), "corrupt_image", "'text.png' (/"),  # PIL's message names a BytesIO
    ("empty file", t2i("empty.png"), "empty_image", "0 bytes"),
    ("12000² PNG in a small file", t2i("bomb.png"), "image_too_large", "12000×12000"),
    ("format not read here (TGA)", t2i("image.tga"), "corrupt_image", "not an image in a format read here"),
]


def write_lines(root: Path, outside: Path, lines: list[object]) -> Path:
    path = root / "data.jsonl"
    with path.open("wb") as file:
        for line in lines:
            if line == "ABSOLUTE":
                line = t2i(str(outside / "secret.png"))
            text = line if isinstance(line, bytes) else (line if isinstance(line, str) else json.dumps(line)).encode()
            file.write(text + b"\n")
    return path


def test_every_kind_of_bad_jsonl_record_is_a_counted_skip_naming_its_place(corpus):
    root, outside = corpus
    path = write_lines(root, outside, [line for _, line, _, _ in KINDS])
    started = time.monotonic()
    records = list(JsonlSource(path).read())
    assert time.monotonic() - started < 10  # the FIFO is never opened, the 12000² PNG never decoded
    assert len(records) == len(KINDS)
    for number, (record, (kind, _, reason, fragment)) in enumerate(zip(records, KINDS, strict=True), start=1):
        assert isinstance(record, Skipped), kind
        assert (record.reason, record.key) == (reason, f"data.jsonl:{number}"), (kind, record.message)
        assert record.message.startswith(f"data.jsonl:{number}: ") and fragment in record.message, (
            kind,
            record.message,
        )
        assert record.message.count("data.jsonl:") == 1 and "object at 0x" not in record.message, record.message


def test_paths_outside_the_root_are_read_only_with_the_opt_in(corpus):
    root, outside = corpus
    path = write_lines(
        root, outside, [edit("../outside/secret.png"), "ABSOLUTE", t2i("escape.png"), t2i("inside_link.png")]
    )
    confined = list(JsonlSource(path).read())
    assert [getattr(r, "reason", None) for r in confined] == ["path_outside_root"] * 3 + [None]  # a link inside is fine
    opened = list(JsonlSource(path, allow_paths_outside_root=True).read())
    assert all(isinstance(r, X2ISample) for r in opened)
    secret = np.asarray(Image.open(outside / "secret.png"))
    assert np.array_equal(np.asarray(opened[0].input_images[0]), secret)
    assert np.array_equal(np.asarray(opened[2].output_image), secret)
    # an image root below the JSONL's folder: the folder itself is outside it now
    below = write_lines(root, outside, [t2i("../good.png")])
    assert JsonlSource(below, image_root=root / "subdir").get(0).reason == "path_outside_root"
    assert isinstance(JsonlSource(below, image_root=root / "subdir", allow_paths_outside_root=True).get(0), X2ISample)


def test_devices_are_never_opened_even_with_the_opt_in(corpus):
    root, outside = corpus
    path = write_lines(root, outside, [t2i("/dev/zero"), edit("fifo.png")])
    records = list(JsonlSource(path, allow_paths_outside_root=True).read())
    assert [r.reason for r in records] == ["not_a_file", "not_a_file"]


def test_the_pixel_limit_is_configurable_and_pil_bombs_are_skips_too(corpus):
    root, outside = corpus
    bomb_png(root / "huge.png", 20000)  # 400 M pixels: over twice PIL's own limit
    path = write_lines(root, outside, [t2i("good.png"), t2i("huge.png")])
    small = list(JsonlSource(path, max_image_pixels=15 * 15).read())
    assert [getattr(r, "reason", None) for r in small] == ["image_too_large"] * 2
    assert "16×16 = 256 pixels, over max_image_pixels=225" in small[0].message
    unlimited = list(JsonlSource(path, max_image_pixels=None).read())
    assert isinstance(unlimited[0], X2ISample)
    assert unlimited[1].reason == "image_too_large" and "decompression bomb" in unlimited[1].message
    with pytest.raises(ValueError, match="max_image_pixels"):
        JsonlSource(path, max_image_pixels=0)


def test_any_error_reading_a_record_is_a_skip_not_a_crash(corpus, monkeypatch):
    """/dev/zero once leaked a MemoryError out of the source: whatever one record raises is its skip."""
    root, outside = corpus
    path = write_lines(root, outside, [t2i("good.png"), t2i("good.png")])

    def exhausted(*args, **kwargs):
        raise MemoryError("out of memory")

    monkeypatch.setattr("omnigen.data.sources.jsonl.decode_image", exhausted)
    records = list(JsonlSource(path).read())
    assert [r.reason for r in records] == ["read_error"] * 2
    assert records[0].message == "data.jsonl:1: MemoryError while reading the record: out of memory"


def stream_of(module, limit=50):
    out = []
    for batch in module.train_dataloader():
        out.append(batch)
        if len(out) == limit:
            break
    return out


def test_a_valid_record_of_another_family_says_so(corpus):
    """A text-only line read by the mixed_modal DataModule is fine data for text_to_image, not corrupt."""
    root, outside = corpus
    path = write_lines(root, outside, [edit("good.png"), {"instruction": "a red circle", "output_image": "good.png"}])
    strict = MixedModalDataModule(
        [JsonlSource(path)],
        batch_size=4,
        shuffle=False,
        on_bad="error",
        resolution=Resolution("square", 16, multiple=4),
    )
    with pytest.raises(BadSample) as error:
        stream_of(strict)
    message = str(error.value)
    assert message.startswith("data.jsonl:2: a valid record, but it needs ≥1 input image(s) for mixed_modal and has 0")
    assert "text_to_image" in message and "cannot use" in message and message.count("data.jsonl:2") == 1
    lenient = MixedModalDataModule(
        [JsonlSource(path)], batch_size=4, shuffle=False, resolution=Resolution("square", 16, multiple=4)
    )
    batches = stream_of(lenient)
    assert batches[-1]["key"] == ["data.jsonl:1"]
    assert batches[-1]["data_stats"]["counts"]["skipped_wrong_family"] == 1


def test_on_bad_error_names_the_record_once(corpus):
    root, outside = corpus
    path = write_lines(root, outside, [t2i("corrupt.png")])
    strict = TextToImageDataModule(
        [JsonlSource(path)], batch_size=4, on_bad="error", resolution=Resolution("square", 16, multiple=4)
    )
    with pytest.raises(BadSample, match=r"^data.jsonl:1: output_image 'corrupt.png' .* cannot be decoded") as error:
        stream_of(strict)
    assert str(error.value).count("data.jsonl:1") == 1


def test_a_pass_with_no_usable_record_stops_with_the_counts(corpus):
    """Single family: the pass ends with no batch; the loader says why instead of starting another."""
    root, outside = corpus
    lines = [{"instruction": f"a red circle {i}", "output_image": "good.png"} for i in range(3)] + ["{bad"]
    module = MixedModalDataModule(
        [JsonlSource(write_lines(root, outside, lines))], batch_size=2, resolution=Resolution("square", 16, multiple=4)
    )
    with pytest.raises(
        RuntimeError,
        match=r"no batch: 4 record\(s\) skipped and 0 usable .*bad_json: 1, wrong_family: 3"
        r".*latest: .*data.jsonl:\d",
    ):
        stream_of(module)


def test_a_mixture_of_nothing_usable_stops_instead_of_spinning(corpus):
    """A mixture never ends a pass: the counts travel without a batch and the skip limit fires,
    even with max_skip_fraction=1 (nothing usable at all)."""
    root, outside = corpus
    path = write_lines(root, outside, ["{bad", t2i("nope.png")])
    members = {"a": TextToImageDataModule([JsonlSource(path)]), "b": TextToImageDataModule([JsonlSource(path)])}
    module = MixtureDataModule(
        members,
        {"a": 0.5, "b": 0.5},
        batch_size=2,
        max_skip_fraction=1.0,
        resolution=Resolution("square", 16, multiple=4),
    )
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"records skipped \(100.0%\).*bad_json: \d+, missing_image: \d+"):
        stream_of(module)
    assert time.monotonic() - started < 30


def test_fit_on_an_all_bad_jsonl_exits_within_seconds_with_the_counts(corpus, tmp_path):
    """`python -m omnigen.fit` on a JSONL whose every line is rejected (text-only lines for the
    mixed_modal DataModule) used to run empty epochs forever."""
    root, outside = corpus
    path = write_lines(
        root, outside, [{"instruction": f"a red circle {i}", "output_image": "good.png"} for i in range(5)]
    )
    overrides = [
        "data=mixed_modal",
        f"data.sources=[{{_target_: omnigen.data.sources.JsonlSource, path: '{path}'}}]",
        "data.batch_size=2",
        "logger=csv",
        "callbacks.sample_grid=null",
        "trainer.max_steps=5",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    env = {**os.environ, "WANDB_MODE": "offline"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "omnigen.fit", *overrides], capture_output=True, text=True, env=env, timeout=300
    )
    elapsed = time.monotonic() - started
    assert result.returncode != 0, result.stdout[-2000:]
    assert "a whole pass over the data formed no batch: 5 record(s) skipped" in result.stderr, result.stderr[-3000:]
    assert "wrong_family: 5" in result.stderr and "data.jsonl:5" in result.stderr
    assert elapsed < 120, elapsed  # seconds past start-up (imports and model build), not a spin
    metrics = list((tmp_path / "run").glob("**/metrics.csv"))
    assert all(len(p.read_text().splitlines()) <= 2 for p in metrics)  # no epochs of logs


def packed(tmp_path: Path, records: dict[str, dict[str, bytes]], name: str = "shard-000000.tar") -> Path:
    """A shard written member by member (not by pack), so it can hold what pack never writes."""
    path = tmp_path / name
    with tarfile.open(path, "w") as tar:
        for key, members in records.items():
            for suffix, data in members.items():
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tar.addfile(info, fileobj=__import__("io").BytesIO(data))
    return path


def meta(**fields) -> bytes:
    base = {
        "instruction": "a red circle",
        "family": "text_to_image",
        "task": "t2i",
        "num_inputs": 0,
        "source_key": "train.jsonl:7",
    }
    return json.dumps({**base, **fields}).encode()


def test_shards_apply_the_same_rules_and_name_the_original_record(tmp_path, monkeypatch):
    good = tmp_path / "good.png"
    noise_png(good)
    png = good.read_bytes()
    bomb = bomb_png(tmp_path / "bomb.png", 12000).read_bytes()
    shard = packed(
        tmp_path,
        {
            "000000000": {"json": meta(), "output.png": png},
            "000000001": {"json": meta(), "output.png": bomb},
            "000000002": {"json": b'{"instruction": "a", "instruction": "b"}', "output.png": png},
            "000000003": {"json": meta(instruction="  "), "output.png": png},
            "000000004": {"json": meta(), "output.png": png[:40]},
            "000000005": {"json": meta(), "output.png": png, "input_0.png": png},
        },
    )
    records = list(WebDatasetSource(str(shard)).read())
    assert isinstance(records[0], X2ISample) and records[0].key == "shard-000000.tar:000000000 (from train.jsonl:7)"
    reasons = [(r.reason, r.message) for r in records[1:]]
    assert [reason for reason, _ in reasons] == [
        "image_too_large",
        "bad_json",
        "empty_instruction",
        "corrupt_image",
        "image_count",
    ]
    for _reason, message in reasons:
        assert "shard-000000.tar:00000000" in message, message
        assert "object at 0x" not in message, message
    assert "(from train.jsonl:7)" in reasons[0][1] and "12000×12000" in reasons[0][1]
    monkeypatch.setattr(webdataset_module, "MAX_MEMBER_BYTES", 100)
    oversized = list(WebDatasetSource(str(shard)).read())[0]
    assert oversized.reason == "image_too_large" and "000000000.output.png" in oversized.message


def test_any_error_reading_a_shard_is_a_skip(tmp_path, monkeypatch):
    """Whatever the stream under a shard raises (here a MemoryError mid-read) ends the shard in a skip."""
    good = noise_png(tmp_path / "good.png").read_bytes()
    shard = packed(tmp_path, {"000000000": {"json": meta(), "output.png": good}})
    data = shard.read_bytes()

    class Failing(__import__("io").BytesIO):
        def read(self, size=-1):
            if self.tell() >= 512:  # past the first member's header
                raise MemoryError("out of memory")
            return super().read(size)

    monkeypatch.setattr(webdataset_module.webdataset, "gopen", lambda url, mode: Failing(data))
    records = list(WebDatasetSource(str(shard)).read())
    assert len(records) == 1 and records[0].reason in ("bad_json", "corrupt_image")
    assert "MemoryError" in records[0].message and "shard-000000.tar" in records[0].message


def test_pack_skips_records_outside_their_family_and_outside_the_root(corpus, tmp_path, capsys):
    root, outside = corpus
    path = write_lines(
        root,
        outside,
        [
            edit("good.png"),  # an edit given to pack as text_to_image: wrong_family, not a t2i record
            {"instruction": "a red circle", "output_image": "good.png"},
            {"instruction": "a red circle", "output_image": "../outside/secret.png"},
            {"instruction": "", "output_image": "good.png"},
        ],
    )
    result = pack(JsonlSource(path, family="text_to_image"), str(tmp_path / "out" / "shard-%06d.tar"))
    assert result["written"] == 1
    assert result["skipped"] == {"wrong_family": 1, "path_outside_root": 1, "empty_instruction": 1}
    assert [r.key for r in WebDatasetSource(result["shards"][0]).read()] == [
        "shard-000000.tar:000000000 (from data.jsonl:2)"
    ]
    out = tmp_path / "cli" / "shard-%06d.tar"
    code = pack_main(
        [f"jsonl={path}", "family=text_to_image", f"out={out}", "allow_paths_outside_root=true", "max_image_pixels=0"]
    )
    assert code == 0 and "wrote 2 records" in capsys.readouterr().out  # the secret too, once allowed


def test_the_realised_mix_is_logged_at_start_up(tmp_path, caplog):
    """`data.families={mixed_modal: 1.0}` merges into the quickstart's dict: the log says what is read."""
    from hydra_utils import FAST, compose_fit

    from omnigen.fit import train

    cfg = compose_fit(
        FAST + ["data.families={mixed_modal: 1.0}", "trainer.max_steps=1", "logger=csv", "callbacks.sample_grid=null"],
        tmp_path,
    )
    assert dict(cfg.data.families) == {"text_to_image": 0.5, "mixed_modal": 1.0}  # Hydra's merge, the trap
    with caplog.at_level("INFO", logger="omnigen.data"):
        train(cfg)
    assert "Shapes-X2I mix (share of samples by family): text_to_image 0.333, mixed_modal 0.667" in caplog.text


def test_counts_travel_without_a_batch(corpus):
    """The count-only path: worker 1's part holds only bad records and forms no batch; its counts
    still reach DataAccounting in the main process (worker 0's batch carries its own counts)."""
    root, outside = corpus
    path = write_lines(root, outside, [t2i("good.png"), "{bad", t2i("good.png"), t2i("nope.png")])
    module = TextToImageDataModule(
        [JsonlSource(path)], batch_size=2, shuffle=False, num_workers=2, resolution=Resolution("square", 16, multiple=4)
    )
    batches = list(module.train_dataloader())
    assert [b["key"] for b in batches] == [["data.jsonl:1", "data.jsonl:3"]]
    assert batches[0]["data_stats"]["counts"] == {"samples": 2, "family/text_to_image": 2}
    assert {k: v for k, v in module.accounting.totals.items()} == {"skipped_bad_json": 1, "skipped_missing_image": 1}
