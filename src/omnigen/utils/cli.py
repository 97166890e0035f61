"""key=value command lines checked against a dataclass (the `generate` and `evaluate` entry points)."""

import sys
from typing import TypeVar

from omegaconf import OmegaConf

T = TypeVar("T")


def parse_cli(schema: type[T], argv: list[str] | None, prog: str, example: str) -> T:
    """`argv` (default: sys.argv[1:]) as an instance of the dataclass `schema`: unknown keys and wrong
    types fail by name; missing required keys exit with `example` as a hint."""
    cfg = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_cli(sys.argv[1:] if argv is None else argv))
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise SystemExit(f"{prog}: missing {', '.join(missing)} (e.g. {example})")
    return OmegaConf.to_object(cfg)
