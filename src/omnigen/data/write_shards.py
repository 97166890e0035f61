"""Pack any Source into webdataset shards (the format `WebDatasetSource` reads).

    python -m omnigen.data.write_shards --jsonl train.jsonl [--image-root DIR] [--family F] [--task T] \\
        --out shards/shard-%06d.tar [--maxcount 1000] [--overwrite]
    python -m omnigen.data.write_shards --shapes text_to_image=1 mixed_modal=1 --count 10000 --image-size 32 --seed 0 \\
        --out shards/shard-%06d.tar

Records are read in order (one part, no shuffle); images are stored as PNG re-encoded from the validated
RGB images (lossless and deterministic, so packed data trains like its source); `Skipped` records are
counted and listed, never written, and so are records whose input-image count their family does not take
(`wrong_family`, as the DataModules skip them). A JSONL's image paths obey its source's rules: inside the
image root unless --allow-paths-outside-root, regular files only, at most --max-image-pixels. Shards are written
into a hidden temporary directory beside the output
and moved into place (one atomic rename each) only after the last one is closed, so an interrupted pack
leaves no shard, and so no truncated shard that would read as valid. `index.json` beside the shards records
each shard's record count and size (WebDatasetSource's `len`).
"""

from __future__ import annotations

import argparse
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
from typing import Any

from PIL import Image
from webdataset import ShardWriter

from omnigen.data.schema import MAX_IMAGE_PIXELS, BadSample, X2ISample, check_family_inputs
from omnigen.data.sources.base import Source
from omnigen.data.sources.webdataset import INDEX_FILE, read_index

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
        raise ValueError(f"maxcount must be >= 1, got {maxcount}")
    try:
        if pattern % 0 == pattern % 1:
            raise TypeError
    except TypeError:
        raise ValueError(
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


def _parse_ratios(items: list[str]) -> dict[str, float]:
    ratios = {}
    for item in items:
        family, sep, ratio = item.partition("=")
        try:
            ratios[family] = float(ratio) if sep else 1.0
        except ValueError:
            raise ValueError(f"--shapes takes FAMILY=RATIO, got {item!r}") from None
    return ratios


def _source(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Source:
    if args.jsonl is not None:
        from omnigen.data.sources.jsonl import JsonlSource

        return JsonlSource(
            args.jsonl,
            image_root=args.image_root,
            family=args.family,
            task=args.task,
            allow_paths_outside_root=args.allow_paths_outside_root,
            max_image_pixels=args.max_image_pixels or None,
        )
    from omnigen.data.sources.shapes import ShapesSource

    if args.count is None:
        parser.error("--shapes needs --count")
    return ShapesSource(_parse_ratios(args.shapes), image_size=args.image_size, seed=args.seed, length=args.count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m omnigen.data.write_shards", description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--jsonl", help="a JSONL file in the released OmniGen format")
    what.add_argument("--shapes", nargs="+", metavar="FAMILY=RATIO", help="Shapes-X2I families and ratios")
    parser.add_argument("--image-root", help="JSONL image paths are relative to this (default: the JSONL's dir)")
    parser.add_argument(
        "--allow-paths-outside-root",
        action="store_true",
        help="read JSONL image paths that resolve outside the image root (absolute paths, ../)",
    )
    parser.add_argument(
        "--max-image-pixels",
        type=int,
        default=MAX_IMAGE_PIXELS,
        help=f"skip images with more pixels than this, from the header (default {MAX_IMAGE_PIXELS}; 0: no limit)",
    )
    parser.add_argument("--family", default="mixed_modal", help="JSONL family where a line names none")
    parser.add_argument("--task", help="JSONL task where a line names none (default: the family's first)")
    parser.add_argument("--count", type=int, help="Shapes-X2I: number of records")
    parser.add_argument("--image-size", type=int, default=32, help="Shapes-X2I: image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="Shapes-X2I: stream seed")
    parser.add_argument("--out", required=True, help="shard pattern, e.g. shards/shard-%%06d.tar")
    parser.add_argument("--maxcount", type=int, default=1000, help="records per shard")
    parser.add_argument("--overwrite", action="store_true", help="replace existing shards matching --out")
    args = parser.parse_args(argv)

    try:
        result = pack(
            _source(args, parser),
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
    sys.exit(main())
