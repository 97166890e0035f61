"""Numbers in the docs against the committed files they cite.

    python tools/docs_claims.py [FILE.md ...]      # default: README.md, docs/, experiments/ write-ups

The convention (docs/experiments.md, "Citing numbers"):

1. Every row of a Markdown table whose cells hold a measured-looking number (a decimal such as 0.52,
   or a number with %, × or dB) cites a committed file: a link (`[records](records.json)`, or a
   reference link `[records][r]` with `[r]: records.json` anywhere in the page) or a code span naming
   a committed file (`` `results.md` ``, relative to the page or to the repository root), in the row
   itself, in the table's header, or in the paragraph right above or right below the table (a source
   for the whole table).
2. A link into a JSON file with a key path checks its numbers: `[0.52 / 22.4 dB](records.json#KEY)`,
   where KEY is a dotted path into the file (`baseline.at_30.text_to_image/object`; list items by
   index; the longest key that matches wins, so keys may hold dots or slashes; `%20` or `<…>` for
   spaces) and `{a,b}` expands to one path per item, in order. The link text's numbers, in order,
   must equal the values at those paths at the rounding shown (0.52 stands for [0.515, 0.525]).
   Anywhere in a checked page, in tables or prose.

Code spans and fenced code are not read for numbers (commands, overrides, versions). Generated
tables (`results.md`, `records.md`) are not checked: they are the sources.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
DOC_GLOBS = ("README.md", "docs/**/*.md", "experiments/*.md", "experiments/*/*.md")
# written by omnigen.report / omnigen.speedrun / experiments/fast_sampling/frontier.py: sources, not claims
GENERATED = {"results.md", "records.md", "frontier.md", "screen.md"}

MINUS = "\u2212"
# A measured-looking number: a decimal, or a number with a unit that marks a measurement.
MEASURED = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])|(?<![\w.])\d+(?:\.\d+)?\s?(?:%|×|dB\b)")
# Every number of a link text, signed (U+2212 or a hyphen not after a digit); an en dash separates a range.
NUMBER = re.compile(r"(?:(?<![\d.])[-\u2212+])?\d+(?:\.\d+)?")
TEXT = r"\[((?:[^\[\]]|\[[^\[\]]*\])*)\]"  # a link text, which may hold one level of brackets: [+0.26 [+0.04, +0.49]]
INLINE_LINK = re.compile(r"!?" + TEXT + r"\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
REF_LINK = re.compile(r"!?" + TEXT + r"\[([^\]]*)\]")
REF_DEF = re.compile(r"^\s{0,3}\[([^\]]+)\]:\s*(<[^>]*>|\S+)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)+\|?\s*$")


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def tracked_files(root: Path) -> set[str]:
    """Paths git tracks under root, relative to it (the committed files a doc may cite)."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    return {p for p in out.decode().split("\0") if p}


def doc_files(root: Path) -> list[Path]:
    found = {p for pattern in DOC_GLOBS for p in root.glob(pattern)}
    return sorted(p for p in found if p.name not in GENERATED)


def _rel(path: Path, root: Path) -> str | None:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def _unfenced(lines: list[str]) -> list[str]:
    """The page with fenced code blocks blanked (line numbers kept)."""
    out, fence = [], None
    for line in lines:
        marker = re.match(r"^\s*(`{3,}|~{3,})", line)
        if fence is None and marker:
            fence = marker.group(1)[0] * 3
            out.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            out.append("")
        else:
            out.append(line)
    return out


class Page:
    def __init__(self, path: Path, root: Path, tracked: set[str]):
        self.path, self.root, self.tracked = path, root, tracked
        self.rel = _rel(path, root) or str(path)
        self.lines = _unfenced(path.read_text(encoding="utf-8").splitlines())
        self.refs = {}
        for line in self.lines:
            match = REF_DEF.match(line)
            if match:
                self.refs[match.group(1).lower()] = match.group(2).strip("<>")

    def committed(self, target: str, from_root: bool = False) -> str | None:
        """The repository path of a committed file `target` names (relative to the page, or the root)."""
        target = unquote(target.split("#", 1)[0])
        if not target or re.match(r"^[a-z]+:", target):
            return None
        bases = [self.path.parent] + ([self.root] if from_root else [])
        for base in bases:
            rel = _rel(base / target, self.root)
            if rel in self.tracked:
                return rel
        return None

    def links(self, text: str) -> list[tuple[str, str]]:
        """(link text, destination) of the inline and reference links in text, outside code spans."""
        text = CODE_SPAN.sub(" ", text)
        found = [(m.group(1), m.group(2).strip("<>")) for m in INLINE_LINK.finditer(text)]
        for m in REF_LINK.finditer(text):
            dest = self.refs.get((m.group(2) or m.group(1)).lower())
            if dest:
                found.append((m.group(1), dest))
        return found

    def cites(self, text: str) -> bool:
        """Whether text names a committed file, by a link or a code span."""
        if any(self.committed(dest) for _, dest in self.links(text)):
            return True
        return any(self.committed(span.strip(), from_root=True) for _, span in CODE_SPAN.findall(text))


def measured_numbers(text: str) -> list[str]:
    """The measured-looking numbers of a table cell, outside code spans and link destinations."""
    text = CODE_SPAN.sub(" ", text)
    text = INLINE_LINK.sub(lambda m: " " + m.group(1) + " ", text)
    text = re.sub(r"<[^>]+>", " ", text)
    return MEASURED.findall(text)


def _tables(lines: list[str]):
    """(header line index, [body line indexes]) of every pipe table."""
    i = 0
    while i < len(lines) - 1:
        if lines[i].lstrip().startswith("|") and SEPARATOR.match(lines[i + 1]):
            body, j = [], i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                body.append(j)
                j += 1
            yield i, body
            i = j
        else:
            i += 1


def _paragraph(lines: list[str], start: int, step: int) -> str:
    """The paragraph next to a table, walking from line start by step (-1: above, +1: below), one blank
    line between them allowed."""
    j = start
    if 0 <= j < len(lines) and not lines[j].strip():
        j += step
    text = []
    while 0 <= j < len(lines) and lines[j].strip() and not lines[j].lstrip().startswith("|"):
        text.append(lines[j])
        j += step
    return "\n".join(text[::step])


def uncited_rows(page: Page) -> list[Problem]:
    problems = []
    for header, body in _tables(page.lines):
        end = body[-1] + 1 if body else header + 2
        around = (_paragraph(page.lines, header - 1, -1), page.lines[header], _paragraph(page.lines, end, 1))
        table_cited = any(page.cites(text) for text in around)
        for i in body:
            numbers = measured_numbers(page.lines[i])
            if numbers and not table_cited and not page.cites(page.lines[i]):
                shown = ", ".join(numbers[:3])
                problems.append(Problem(page.rel, i + 1, f"table row with numbers ({shown}) cites no committed file"))
    return problems


def expand(path: str) -> list[str]:
    """`a.{b,c}.d` -> [a.b.d, a.c.d] (every brace group, in order)."""
    parts = re.split(r"\{([^{}]*)\}", path)
    choices = [[p] if k % 2 == 0 else p.split(",") for k, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def lookup(data, path: str):
    """The value at a dotted key path; at each level the longest key that matches wins."""
    if path == "":
        return data
    if isinstance(data, list):
        head, _, rest = path.partition(".")
        if not head.isdigit() or int(head) >= len(data):
            raise KeyError(path)
        return lookup(data[int(head)], rest)
    if isinstance(data, dict):
        for key in sorted(data, key=len, reverse=True):
            if path == key or path.startswith(key + "."):
                try:
                    return lookup(data[key], path[len(key) + 1 :])
                except KeyError:
                    continue
    raise KeyError(path)


def _as_float(token: str) -> float:
    return float(token.replace(MINUS, "-"))


def _agrees(shown: str, value) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    decimals = len(shown.split(".", 1)[1]) if "." in shown else 0
    return abs(_as_float(shown) - value) <= 0.5 * 10**-decimals + 1e-9


def wrong_values(page: Page, cache: dict[str, object]) -> list[Problem]:
    problems = []
    for n, line in enumerate(page.lines):
        for text, dest in page.links(line):
            if "#" not in dest:
                continue
            target, fragment = dest.split("#", 1)
            if not target.endswith(".json"):
                continue
            where = f"[{text}]({dest})"
            rel = page.committed(target)
            if rel is None:
                problems.append(Problem(page.rel, n + 1, f"{where}: {target} is not a committed file"))
                continue
            if rel not in cache:
                cache[rel] = json.loads((page.root / rel).read_text(encoding="utf-8"))
            keys = expand(unquote(fragment))
            shown = NUMBER.findall(CODE_SPAN.sub(" ", text))
            if len(shown) != len(keys):
                problems.append(Problem(page.rel, n + 1, f"{where}: {len(shown)} numbers for {len(keys)} key paths"))
                continue
            for number, key in zip(shown, keys, strict=True):
                try:
                    value = lookup(cache[rel], key)
                except KeyError:
                    problems.append(Problem(page.rel, n + 1, f"{where}: no key {key!r} in {rel}"))
                    continue
                if not _agrees(number, value):
                    problems.append(Problem(page.rel, n + 1, f"{where}: shows {number}, {rel} has {key} = {value!r}"))
    return problems


def check(paths: list[Path] | None = None, root: Path = ROOT, tracked: set[str] | None = None) -> list[Problem]:
    """Every problem of the given pages (default: the docs of the repository at root)."""
    tracked = tracked_files(root) if tracked is None else tracked
    cache: dict[str, object] = {}
    problems = []
    for path in paths if paths is not None else doc_files(root):
        page = Page(Path(path), root, tracked)
        problems += uncited_rows(page) + wrong_values(page, cache)
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    problems = check([Path(a).resolve() for a in args] or None)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s)" if problems else "every cited number agrees; every table row cites a file")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
