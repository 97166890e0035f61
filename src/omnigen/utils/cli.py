"""key=value command lines checked against a dataclass: the style of every `python -m omnigen.*` command
(fit's Hydra overrides are the same style), `--help` listing the keys. And how every command reports a
mistake of its user: one line naming the key, file or sample and the fix, not a traceback.

    if __name__ == "__main__":
        run_main(main, "omnigen.generate")

`UserError` (a ValueError, so library callers can catch it as before) is a mistake in what the user
passed, found while running; `UsageError` (a SystemExit, as argparse's) is a command line that does not
parse. `run_main` prints either as `prog: message` on stderr and exits 2; any other exception is a bug and
keeps its traceback. OMNIGEN_DEBUG=1 shows the traceback of a user error too.
"""

import dataclasses
import difflib
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")
FIELD_COMMENT = re.compile(r"^\s+(\w+):[^#]*#\s*(.+)$")
USAGE_EXIT = 2  # what argparse exits with on a bad command line


class UserError(ValueError):
    """A mistake in what the user passed (a path, a file, an input); the message is one line that names it
    and says what to do."""


class MissingPath(UserError, FileNotFoundError):
    """A path the user named does not exist."""


class OutputExists(UserError, FileExistsError):
    """An output path that exists and may not be overwritten."""


class UsageError(SystemExit):
    """A command line that does not parse; the message starts with the command's name. A SystemExit, so a
    command not wrapped in run_main still exits with the message alone."""


def run_main(main: Callable[[], Any], prog: str) -> Any:
    """`main()`, with a user's mistake printed as one line on stderr (exit status 2) instead of a traceback."""
    try:
        return main()
    except (UserError, UsageError) as error:
        if os.environ.get("OMNIGEN_DEBUG") == "1":
            raise
        message = str(error) if isinstance(error, UsageError) else f"{prog}: {error}"
        print(" ".join(message.split()), file=sys.stderr)  # one line, whatever the message held
        raise SystemExit(USAGE_EXIT) from None


def closest(name: str, known: Iterable[str], cutoff: float = 0.0) -> str | None:
    """The entry of `known` most like `name`, also comparing with each `_`-separated word of it (so `stepz`
    finds `num_inference_steps`); None when none is at least `cutoff` alike (0 to 1)."""
    scored = [((max(likeness(name, w) for w in [k, *k.split("_")]), likeness(name, k)), k) for k in known]
    best = max(scored, default=None)
    return best[1] if best is not None and best[0][0] >= cutoff else None


def likeness(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a.lower(), b.lower()).ratio()


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest of `known`, or ''."""
    guess = closest(name, known)
    return f" (did you mean {guess!r}?)" if guess is not None else ""


def missing_path(path: str | Path, fix: str = "", what: str = "") -> MissingPath:
    """The error for a path that does not exist: `what` it was for, the name beside it that it is likely a
    typo of, and `fix` (what the command expects there)."""
    path = Path(path)
    siblings = [p.name for p in path.parent.iterdir()] if path.parent.is_dir() else []
    guess = closest(path.name, siblings, cutoff=0.85)
    hint = f" (did you mean {path.parent / guess}?)" if guess else ""
    return MissingPath(f"{what}{': ' if what else ''}{path}: no such file or directory{hint}{'; ' if fix else ''}{fix}")


def check_paths(paths: Iterable[str | Path | None], fix: str = "") -> None:
    """A MissingPath for the first of `paths` (None: not given) that does not exist."""
    for path in paths:
        if path is not None and not Path(path).exists():
            raise missing_path(path, fix)


def check_choice(value: str, known: Iterable[str], what: str, prog: str) -> None:
    """A value that must name one of `known` (a suite, an arm): a UsageError naming the closest one."""
    known = list(known)
    if value not in known:
        raise UsageError(f"{prog}: unknown {what} {value!r}{did_you_mean(value, known)}; known: {', '.join(known)}")


def parse_cli(schema: type[T], argv: list[str] | None, prog: str, example: str, doc: str = "") -> T:
    """`argv` (default: sys.argv[1:]) as an instance of the dataclass `schema`: unknown keys (with the
    closest known one), unparsable values, wrong types and missing required keys (with `example` as a
    hint) raise UsageError; `--help` (or `-h`) prints `doc` and every key with its type, default and the
    comment beside it in `schema`."""
    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:
        print(usage(schema, prog, example, doc))
        raise SystemExit(0)
    if flags := [a for a in argv if a.startswith("--")]:
        raise UsageError(f"{prog}: arguments are key=value, got {' '.join(flags)} (--help lists the keys)")
    keys, given = [f.name for f in dataclasses.fields(schema)], [OmegaConf.structured(schema)]
    for arg in argv:
        key = arg.partition("=")[0]
        if "=" not in arg:
            raise UsageError(f"{prog}: arguments are key=value, got {arg!r} (--help lists the keys)")
        if (top := key.split(".")[0]) not in keys:
            raise UsageError(f"{prog}: unknown key {top!r}{did_you_mean(top, keys)}; --help lists the keys")
        try:  # one argument at a time, to name the one that does not parse
            given.append(OmegaConf.from_cli([arg]))
        except yaml.YAMLError as error:
            raise UsageError(f"{prog}: cannot parse {arg!r} ({getattr(error, 'problem', None) or error})") from None
    try:
        cfg = OmegaConf.merge(*given)
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise UsageError(f"{prog}: missing {', '.join(missing)} (e.g. {example})")
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as error:  # a value of the wrong type, or a nested key under a plain one
        key = getattr(error, "full_key", None) or "?"
        raise UsageError(f"{prog}: {key}: {str(error).splitlines()[0]}") from None


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
