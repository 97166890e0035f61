"""tools/docs_claims.py: numbers in the docs cite committed files and agree with them."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("docs_claims", ROOT / "tools" / "docs_claims.py")
docs_claims = sys.modules.setdefault("docs_claims", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(docs_claims)

RESULTS = {
    "arm": {"at_30": {"text_to_image/object": 0.5177, "mixed_modal/unchanged_psnr": 31.5457}},
    "rows": [{"x %": 6.04}],
}


@pytest.fixture
def repo(tmp_path):
    """A git repository holding a committed results.json and an uncommitted draft.json."""
    (tmp_path / "results.json").write_text(json.dumps(RESULTS))
    (tmp_path / "draft.json").write_text(json.dumps(RESULTS))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "results.json"], cwd=tmp_path, check=True)
    return tmp_path


def problems(repo, text):
    page = repo / "page.md"
    page.write_text(text)
    return [p.message for p in docs_claims.check([page], root=repo)]


TABLE = "| arm | object | PSNR |\n|---|---|---|\n| arm | 0.52 | 31.5 dB |\n"


def test_a_table_row_with_numbers_and_no_source_fails(repo):
    assert problems(repo, "Results:\n\n" + TABLE) == ["table row with numbers (0.52, 31.5) cites no committed file"]
    # settings without a measured-looking number need no source, nor do numbers in code spans
    assert problems(repo, "| key | value |\n|---|---|\n| steps | 1000 |\n| lr | `1e-3` and `0.01` |\n") == []


def test_a_source_above_below_or_in_the_row_must_be_a_committed_file(repo):
    assert problems(repo, "From [results](results.json):\n\n" + TABLE) == []
    assert problems(repo, TABLE + "\nMeans over seeds (`results.json`).\n") == []
    assert problems(repo, TABLE.replace("31.5 dB |", "31.5 dB | [src][r] |") + "\n[r]: results.json\n") == []
    assert problems(repo, "From [a draft](draft.json):\n\n" + TABLE) == [
        "table row with numbers (0.52, 31.5) cites no committed file"
    ]
    assert problems(repo, "From [nothing](missing.json):\n\n" + TABLE)


def test_a_key_path_citation_checks_the_number_at_the_shown_rounding(repo):
    good = "[0.52 / 31.5 dB](results.json#arm.at_30.{text_to_image/object,mixed_modal/unchanged_psnr})"
    assert problems(repo, good) == []
    assert problems(repo, "[0.518](results.json#arm.at_30.text_to_image/object)") == []
    assert problems(repo, "padding [6.0 %](<results.json#rows.0.x %>)") == []
    wrong = problems(repo, "PSNR [31.6 dB](results.json#arm.at_30.mixed_modal/unchanged_psnr) at 30 min")
    assert wrong == [
        "[31.6 dB](results.json#arm.at_30.mixed_modal/unchanged_psnr): shows 31.6, "
        "results.json has arm.at_30.mixed_modal/unchanged_psnr = 31.5457"
    ]
    assert "shows −0.52" in problems(repo, "[−0.52](results.json#arm.at_30.text_to_image/object)")[0]  # signs count
    assert "no key" in problems(repo, "[0.52](results.json#arm.at_20.text_to_image/object)")[0]
    assert "2 numbers for 1 key paths" in problems(repo, "[0.52 / 0.3](results.json#arm.at_30.text_to_image/object)")[0]
    assert "not a committed file" in problems(repo, "[0.52](draft.json#arm.at_30.text_to_image/object)")[0]


def test_a_disagreeing_number_in_a_table_fails_even_with_a_source(repo):
    row = "| arm | [0.53](results.json#arm.at_30.text_to_image/object) |"
    assert problems(repo, "| arm | object |\n|---|---|\n" + row + "\n") == [
        "[0.53](results.json#arm.at_30.text_to_image/object): shows 0.53, "
        "results.json has arm.at_30.text_to_image/object = 0.5177"
    ]


def test_fenced_code_is_not_read(repo):
    assert problems(repo, "```\n" + TABLE + "```\n") == []


def test_lookup_takes_the_longest_matching_key():
    data = {"a": {"5.0": 1, "5": {"0": 2}}, "a.b": 3, "l": [{"k": 4}]}
    assert docs_claims.lookup(data, "a.5.0") == 1
    assert docs_claims.lookup(data, "a.b") == 3
    assert docs_claims.lookup(data, "l.0.k") == 4
    with pytest.raises(KeyError):
        docs_claims.lookup(data, "l.1.k")
    assert docs_claims.expand("x.{a,b}.{c,d}") == ["x.a.c", "x.a.d", "x.b.c", "x.b.d"]


def test_the_repository_docs_cite_their_numbers():
    assert [str(p) for p in docs_claims.check()] == []
