"""key=value command lines checked against a dataclass: the style of every `python -m omnigen.*` command
(fit's Hydra overrides are the same style), `--help` listing the keys."""

import dataclasses
import inspect
import re
import sys
from typing import Any, TypeVar

from omegaconf import OmegaConf

T = TypeVar("T")
FIELD_COMMENT = re.compile(r"^\s+(\w+):[^#]*#\s*(.+)$")


def parse_cli(schema: type[T], argv: list[str] | None, prog: str, example: str, doc: str = "") -> T:
    """`argv` (default: sys.argv[1:]) as an instance of the dataclass `schema`: unknown keys and wrong
    types fail by name; missing required keys exit with `example` as a hint; `--help` (or `-h`) prints
    `doc` and every key with its type, default and the comment beside it in `schema`."""
    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:
        print(usage(schema, prog, example, doc))
        raise SystemExit(0)
    if flags := [a for a in argv if a.startswith("--")]:
        raise SystemExit(f"{prog}: arguments are key=value, got {' '.join(flags)} (--help lists the keys)")
    cfg = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_cli(argv))
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise SystemExit(f"{prog}: missing {', '.join(missing)} (e.g. {example})")
    return OmegaConf.to_object(cfg)


def usage(schema: type, prog: str, example: str, doc: str) -> str:
    comments = dict(m.groups() for line in inspect.getsource(schema).splitlines() if (m := FIELD_COMMENT.match(line)))
    lines = [f"usage: python -m {prog} key=value ...   e.g. {example}", "", doc.strip(), "", "keys:"]
    for field in dataclasses.fields(schema):
        lines.append(f"  {field.name} ({type_name(field.type)}) = {default_of(field)}")
        if field.name in comments:
            lines.append(f"      {comments[field.name]}")
    return "\n".join(lines)


def default_of(field: dataclasses.Field) -> str:
    if field.default_factory is not dataclasses.MISSING:
        return repr(field.default_factory())
    if field.default is dataclasses.MISSING or field.default == "???":
        return "(required)"
    return repr(field.default)


def type_name(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
