"""Pack any Source into webdataset shards (the format `WebDatasetSource` reads).

    python -m omnigen.data.write_shards jsonl=train.jsonl [image_root=DIR] [family=F] [task=T] \\
        out=shards/shard-%06d.tar [maxcount=1000] [overwrite=true]
    python -m omnigen.data.write_shards shapes.text_to_image=1 shapes.mixed_modal=1 count=10000 image_size=32 \\
        seed=0 out=shards/shard-%06d.tar

Records are read in order (one part, no shuffle); images are stored as PNG re-encoded from the validated
RGB images (lossless and deterministic, so packed data trains like its source); `Skipped` records are
counted and listed, never written, and so are records whose input-image count their family does not take
(`wrong_family`, as the DataModules skip them). A JSONL's image paths obey its source's rules: inside the
image root unless allow_paths_outside_root=true, regular files only, at most max_image_pixels. Shards are written
into a hidden temporary directory beside the output
and moved into place (one atomic rename each) only after the last one is closed, so an interrupted pack
leaves no shard, and so no truncated shard that would read as valid. `index.json` beside the shards records
each shard's record count and size (WebDatasetSource's `len`).
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from webdataset import ShardWriter

from omnigen.data.schema import MAX_IMAGE_PIXELS, BadSample, X2ISample, check_family_inputs
from omnigen.data.sources.base import Source
from omnigen.data.sources.webdataset import INDEX_FILE, read_index
from omnigen.utils.cli import UserError, parse_cli, run_main

MAX_LISTED = 20  # skipped records listed with their messages


def pack(
    source: Source,
    pattern: str,
    maxcount: int = 1000,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    log_every: int = 10_000,
) -> dict[str, Any]:
    """Write `source` to shards `pattern % 0`, `pattern % 1`, ... of at most `maxcount` records each.

    Returns {"written": n, "skipped": {reason: count}, "skipped_messages": [first 20], "shards": [paths]}.
    Raises FileExistsError if shards matching the pattern exist already, unless `overwrite` (which deletes
    them once the new shards are complete).
    """
    if maxcount < 1:
        raise UserError(f"maxcount must be >= 1, got {maxcount}")
    try:
        if pattern % 0 == pattern % 1:
            raise TypeError
    except TypeError:
        raise UserError(
            f"output pattern needs one integer field for the shard number, e.g. "
            f"'shards/shard-%06d.tar'; got {pattern!r}"
        ) from None
    out_dir = os.path.dirname(pattern) or "."
    os.makedirs(out_dir, exist_ok=True)
    existing = sorted(
        glob.glob(
            os.path.join(glob.escape(out_dir), re.sub(r"%[-+ #0-9]*d", "*", glob.escape(os.path.basename(pattern))))
        )
    )
    if existing and not overwrite:
        raise FileExistsError(
            f"{len(existing)} shard(s) matching {pattern!r} exist already (e.g. {existing[0]}); "
            f"remove them or pass overwrite"
        )
    temp_dir = tempfile.mkdtemp(prefix=".pack-", dir=out_dir)
    try:
        counts, skipped, messages = _write(
            source, os.path.join(temp_dir, os.path.basename(pattern)), maxcount, log, log_every
        )
        for path in existing:  # only now: a failed pack keeps the old shards
            os.remove(path)
        index = {
            name: entry for name, entry in read_index(out_dir).items() if os.path.join(out_dir, name) not in existing
        }
        shards = []
        for temp_path, count in counts.items():
            path = os.path.join(out_dir, os.path.basename(temp_path))
            os.replace(temp_path, path)
            index[os.path.basename(path)] = {"count": count, "bytes": os.path.getsize(path)}
            shards.append(path)
        _write_json(os.path.join(out_dir, INDEX_FILE), {"shards": dict(sorted(index.items()))})
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    return {"written": sum(counts.values()), "skipped": dict(skipped), "skipped_messages": messages, "shards": shards}


def _write(
    source: Source, pattern: str, maxcount: int, log: Callable[[str], None] | None, log_every: int
) -> tuple[dict[str, int], Counter[str], list[str]]:
    counts: dict[str, int] = {}
    skipped: Counter[str] = Counter()
    messages: list[str] = []
    # mtime=0: the same source packs to byte-identical shards.
    writer = ShardWriter(pattern, maxcount=maxcount, verbose=0, mtime=0, encoder=False)
    try:
        for record in source.read():
            if isinstance(record, X2ISample):
                try:
                    check_family_inputs(record)
                except BadSample as bad:
                    record = bad.skipped()
            if isinstance(record, X2ISample):
                writer.write(to_record(record, f"{sum(counts.values()):09d}"))
                counts[writer.fname] = counts.get(writer.fname, 0) + 1
            else:
                skipped[record.reason] += 1
                if len(messages) < MAX_LISTED:
                    messages.append(f"[{record.reason}] {record.message}")
            done = sum(counts.values()) + sum(skipped.values())
            if log is not None and done % log_every == 0:
                log(f"{source.name}: {done} records read, {sum(skipped.values())} skipped")
    finally:
        writer.close()
    return counts, skipped, messages


def to_record(sample: X2ISample, key: str) -> dict[str, Any]:
    """The tar members of one sample (key must not contain a dot: webdataset splits names at the first)."""
    meta = {
        "instruction": sample.instruction,
        "family": sample.family,
        "task": sample.task,
        "spec": sample.spec,
        "edit_source": sample.edit_source,
        "num_inputs": len(sample.input_images),
        "source_key": sample.key,
        "notes": list(sample.notes),
    }
    record: dict[str, Any] = {
        "__key__": key,
        "json": json.dumps(meta, sort_keys=True).encode(),
        "output.png": png_bytes(sample.output_image),
    }
    for i, image in enumerate(sample.input_images):
        record[f"input_{i}.png"] = png_bytes(image)
    return record


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _write_json(path: str, value: Any) -> None:
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "w") as file:
        json.dump(value, file, indent=1)
    os.replace(temp, path)


@dataclass
class WriteShardsConfig:
    out: str = "???"  # shard pattern, e.g. shards/shard-%06d.tar
    jsonl: str | None = None  # a JSONL file in the released OmniGen format (or shapes)
    shapes: dict[str, float] = field(default_factory=dict)  # shapes.FAMILY=RATIO: Shapes-X2I families (or jsonl)
    image_root: str | None = None  # JSONL image paths are relative to this (default: the JSONL's dir)
    allow_paths_outside_root: bool = False  # read JSONL image paths outside the image root (absolute, ../)
    max_image_pixels: int = MAX_IMAGE_PIXELS  # skip images with more pixels than this, from the header (0: no limit)
    family: str = "mixed_modal"  # JSONL family where a line names none
    task: str | None = None  # JSONL task where a line names none (default: the family's first)
    count: int | None = None  # Shapes-X2I: number of records
    image_size: int = 32  # Shapes-X2I: image side in pixels
    seed: int = 0  # Shapes-X2I: stream seed
    maxcount: int = 1000  # records per shard
    overwrite: bool = False  # replace existing shards matching out


def source_of(cfg: WriteShardsConfig) -> Source:
    if (cfg.jsonl is None) == (not cfg.shapes):
        raise UserError("name one source: jsonl=FILE or shapes.FAMILY=RATIO ...")
    if cfg.jsonl is not None:
        from omnigen.data.sources.jsonl import JsonlSource

        return JsonlSource(
            cfg.jsonl,
            image_root=cfg.image_root,
            family=cfg.family,
            task=cfg.task,
            allow_paths_outside_root=cfg.allow_paths_outside_root,
            max_image_pixels=cfg.max_image_pixels or None,
        )
    from omnigen.data.sources.shapes import ShapesSource

    if cfg.count is None:
        raise UserError("shapes needs count=N (the number of records)")
    return ShapesSource(dict(cfg.shapes), image_size=cfg.image_size, seed=cfg.seed, length=cfg.count)


def main(argv: list[str] | None = None) -> int:
    args = parse_cli(
        WriteShardsConfig, argv, "omnigen.data.write_shards", "shapes.text_to_image=1 count=100 out=s-%06d.tar", __doc__
    )
    try:
        result = pack(
            source_of(args),
            args.out,
            maxcount=args.maxcount,
            overwrite=args.overwrite,
            log=lambda line: print(line, file=sys.stderr),
        )
    except (ValueError, OSError) as error:  # configuration problems: say what, without a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    total_skipped = sum(result["skipped"].values())
    print(
        f"wrote {result['written']} records to {len(result['shards'])} shard(s) in "
        f"{os.path.dirname(args.out) or '.'}; skipped {total_skipped}"
        + "".join(f", {reason}={n}" for reason, n in sorted(result["skipped"].items()))
    )
    for message in result["skipped_messages"]:
        print(f"  {message}")
    if total_skipped > len(result["skipped_messages"]):
        print(f"  ... and {total_skipped - len(result['skipped_messages'])} more")
    return 0 if result["written"] else 1


if __name__ == "__main__":
    sys.exit(run_main(main, "omnigen.data.write_shards"))
