"""mkdocs hooks: the docs/ pages link into the rest of the repository (`../experiments/README.md`),
as they must to work on GitHub; here those files join the site under `repo/`, so mkdocs checks every
such link, and the linked write-ups' own links, as strictly as links between pages.

Every file git tracks outside docs/ is added as `repo/<path>` (Markdown as pages, the rest copied),
and each page's relative links are rewritten from repository paths to site paths: a link that
resolves to `docs/x.md` goes to the page `x.md`, any other to `repo/<path>`. Nothing is downloaded.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "repo/"
LINK = re.compile(r"(!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?)([^)\s>]+)")
REF_DEF = re.compile(r"^(\s{0,3}\[[^\]]+\]:\s*<?)(\S+?)(>?)$", re.MULTILINE)


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and not p.startswith("docs/") and (ROOT / p).is_file()]


def on_files(files: Files, config) -> Files:
    for path in _tracked():
        files.append(File.generated(config, PREFIX + path, abs_src_path=str(ROOT / path)))
    return files


def _repo_path(src_uri: str) -> str:
    """The repository path of a site file."""
    return src_uri[len(PREFIX) :] if src_uri.startswith(PREFIX) else "docs/" + src_uri


def _site_path(repo_path: str) -> str:
    return repo_path[len("docs/") :] if repo_path.startswith("docs/") else PREFIX + repo_path


def _rewrite(url: str, src_uri: str) -> str:
    if re.match(r"^([a-z][a-z0-9+.-]*:|#|/)", url):
        return url  # external, an anchor on the same page, or absolute
    path, hash_, fragment = url.partition("#")
    here = _repo_path(src_uri)
    target = posixpath.normpath(posixpath.join(posixpath.dirname(here), path))
    if target.startswith("../"):
        return url  # outside the repository: left for mkdocs to report
    new = posixpath.relpath(_site_path(target), posixpath.dirname(src_uri) or ".")
    if path.endswith("/") and not new.endswith("/"):
        new += "/"
    return new + hash_ + fragment


FENCE = re.compile(r"^( {0,8})(`{3,}|~{3,}).*?^\1\2[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)


def _outside_code(markdown: str, edit) -> str:
    """edit applied to the text between fenced blocks, which stay as written."""
    out, last = [], 0
    for block in FENCE.finditer(markdown):
        out.append(edit(markdown[last : block.start()]) + block.group(0))
        last = block.end()
    return "".join(out) + edit(markdown[last:])


def _sub_outside_spans(pattern: re.Pattern, replace, text: str) -> str:
    """pattern.sub(replace, text) for the matches whose link target is not inside a code span."""
    spans = [m.span() for m in CODE_SPAN.finditer(text)]

    def keep_code(m: re.Match) -> str:
        start = m.start(2)
        return m.group(0) if any(a <= start < b for a, b in spans) else replace(m)

    return pattern.sub(keep_code, text)


def on_page_markdown(markdown: str, page, config, files) -> str:
    src_uri = page.file.src_uri

    def edit(text: str) -> str:
        text = _sub_outside_spans(LINK, lambda m: m.group(1) + _rewrite(m.group(2), src_uri), text)
        return _sub_outside_spans(REF_DEF, lambda m: m.group(1) + _rewrite(m.group(2), src_uri) + m.group(3), text)

    return _outside_code(markdown, edit)
