"""A user's mistake ends a command as one line on stderr (`prog: message`, exit status 2) that names the
path, key or sample and the fix, never a traceback; OMNIGEN_DEBUG=1 shows the traceback (issue 32).

Every kind of bad checkpoint goes through generate's real main and entry wrapper in this process (a
subprocess costs seconds of imports); each command then runs once as `python -m omnigen.<name>`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from omnigen import app, evaluate, generate, report, speedrun
from omnigen.checkpoints.format import CHECKPOINT_KEY, check_resume_checkpoint
from omnigen.utils.cli import closest, run_main

FROM_RELEASE = "python -m omnigen.convert from-release"


def bad_checkpoints(fitted: Path, root: Path) -> dict[str, tuple[Path, Path, str]]:
    """case -> (path to pass, path the message must name, what it must say)."""
    good = torch.load(fitted, weights_only=True)
    data = fitted.read_bytes()
    (root / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    (root / "junk.ckpt").write_bytes(b"\xff" * 100)
    torch.save({k: v for k, v in good.items() if k != CHECKPOINT_KEY}, root / "lightning.ckpt")
    torch.save({"state_dict": {}, "where": Path("x")}, root / "objects.ckpt")
    torch.save(good | {CHECKPOINT_KEY: good[CHECKPOINT_KEY] | {"format": 99}}, root / "future.ckpt")
    save_file({"w": torch.zeros(2)}, str(root / "weights.safetensors"))
    release = root / "OmniGen-v1"  # the release's layout: Phi-3 config.json beside model.safetensors
    release.mkdir()
    (release / "config.json").write_text(json.dumps({"model_type": "phi3"}))
    save_file({"w": torch.zeros(2)}, str(release / "model.safetensors"))
    diffusers = root / "diffusers"  # what `convert to-diffusers` writes
    (diffusers / "transformer").mkdir(parents=True)
    (diffusers / "model_index.json").write_text(json.dumps({"_class_name": "OmniGenPipeline"}))
    (diffusers / "transformer" / "config.json").write_text("{}")
    save_file({"w": torch.zeros(2)}, str(diffusers / "transformer" / "diffusion_pytorch_model.safetensors"))
    half_export = root / "export"
    half_export.mkdir()
    (half_export / "omnigen_config.json").write_text("{}")
    runs = fitted.parent
    return {
        "missing": (root / "nope.ckpt", root / "nope.ckpt", "no such file or directory; pass a .ckpt"),
        "typo": (runs / "lst.ckpt", runs / "lst.ckpt", f"did you mean {runs / 'last.ckpt'}?"),
        "checkpoint directory": (runs, runs, f"did you mean {runs / 'last.ckpt'}?"),
        "truncated": (root / "truncated.ckpt", root / "truncated.ckpt", "truncated or corrupt"),
        "corrupt": (root / "junk.ckpt", root / "junk.ckpt", "truncated or corrupt"),
        "foreign lightning": (root / "lightning.ckpt", root / "lightning.ckpt", "no 'omnigen' section"),
        "pickled objects": (root / "objects.ckpt", root / "objects.ckpt", "pickled pathlib.PosixPath"),
        "other format": (root / "future.ckpt", root / "future.ckpt", "checkpoint format 99"),
        "safetensors": (root / "weights.safetensors", root / "weights.safetensors", "is a safetensors file"),
        "release": (release, release, f"{FROM_RELEASE} {release} OUT_DIR"),
        "release weights": (release / "model.safetensors", release, f"{FROM_RELEASE} {release} OUT_DIR"),
        "diffusers export": (diffusers, diffusers, "is a diffusers export"),
        "diffusers transformer": (diffusers / "transformer", diffusers / "transformer", "is a diffusers export"),
        "incomplete export": (half_export, half_export, "incomplete export: no model.safetensors"),
    }


@pytest.fixture(scope="module")
def cases(fitted_checkpoint, tmp_path_factory):
    return bad_checkpoints(fitted_checkpoint, tmp_path_factory.mktemp("bad"))


def one_line(stderr: str, prog: str) -> str:
    """The single line a user error prints, checked: no traceback, nothing else on stderr."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: "), stderr
    return lines[0]


def fails_with_one_line(main, argv: list[str], prog: str, capsys) -> str:
    """`main(argv)` as its `python -m` entry runs it: exit status 2 and one line on stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: main(argv), prog)
    assert exit_.value.code == 2
    return one_line(capsys.readouterr().err, prog)


@pytest.mark.parametrize(
    "case",
    ["missing", "typo", "checkpoint directory", "truncated", "corrupt", "foreign lightning", "pickled objects",
     "other format", "safetensors", "release", "release weights", "diffusers export", "diffusers transformer",
     "incomplete export"],
)  # fmt: skip
def test_every_kind_of_bad_checkpoint_is_one_line_naming_it_and_the_fix(cases, case, capsys, monkeypatch):
    monkeypatch.delenv("OMNIGEN_DEBUG", raising=False)
    given, named, says = cases[case]
    line = fails_with_one_line(generate.main, [f"ckpt={given}", "prompt=a red circle"], "omnigen.generate", capsys)
    assert str(named) in line and says in line, line


def test_an_export_with_cut_off_weights_is_named(fitted_checkpoint, tmp_path, capsys):
    from omnigen.pipeline import OmniGenPipeline

    export = OmniGenPipeline.from_checkpoint(fitted_checkpoint).save_pretrained(tmp_path / "export")
    weights = export / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    line = fails_with_one_line(generate.main, [f"ckpt={export}", "prompt=x"], "omnigen.generate", capsys)
    assert f"{weights} cannot be read" in line and "the export is corrupt" in line


@pytest.mark.parametrize(
    "module, argv, says",
    [
        (generate, ["steps=3"], "unknown key 'steps' (did you mean 'num_inference_steps'?)"),
        (generate, ["ckpt=x", "prompt=x", "seed=one"], "seed: Value 'one' of type 'str' could not be converted"),
        (generate, ["ckpt=x", "prompt=[a"], "cannot parse 'prompt=[a'"),
        (generate, ["ckpt=x", "a red circle"], "arguments are key=value, got 'a red circle'"),
        (evaluate, ["sample_per_family=3"], "unknown key 'sample_per_family' (did you mean 'samples_per_family'?)"),
        (evaluate, ["ckpt=x", "suite=shape"], "unknown suite 'shape' (did you mean 'shapes'?)"),
        (app, ["prot=7000"], "unknown key 'prot' (did you mean 'port'?)"),
        (report, ["out=x", "arm.a=[r]"], "unknown key 'arm' (did you mean 'arms'?)"),
        (speedrun, ["out=x", "row.a=[r]"], "unknown key 'row' (did you mean 'rows'?)"),
    ],
)
def test_a_command_line_mistake_names_the_key_and_the_closest_known_one(module, argv, says, capsys):
    prog = module.__name__
    assert says in fails_with_one_line(module.main, argv, prog, capsys)


def test_the_closest_key_also_compares_words():
    keys = ["seed", "num_inference_steps", "guidance_scale", "img_guidance_scale"]
    assert [closest(k, keys) for k in ("stepz", "guidance", "sed")] == ["num_inference_steps", "guidance_scale", "seed"]
    assert closest("x", []) is None and closest("zzz", ["abc"], cutoff=0.5) is None


def test_resume_check_passes_lightning_values_and_a_checkpoint_and_names_the_rest(cases, fitted_checkpoint):
    for fine in (None, "last", "s3://bucket/run/last.ckpt", fitted_checkpoint):
        check_resume_checkpoint(fine)
    with pytest.raises(ValueError, match="ckpt_path takes a .ckpt written by omnigen.fit"):
        check_resume_checkpoint(cases["missing"][0])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        check_resume_checkpoint(cases["truncated"][0])


# ---- each command as the user runs it -----------------------------------------------------------
def run(module: str, *args: str, debug: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OMNIGEN_DEBUG"} | ({"OMNIGEN_DEBUG": "1"} if debug else {})
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300, env=env)


def test_generate_with_a_missing_checkpoint_is_one_line_and_debug_shows_the_traceback(cases):
    missing = cases["missing"][0]
    result = run("omnigen.generate", f"ckpt={missing}", "prompt=a red circle")
    assert result.returncode == 2 and str(missing) in one_line(result.stderr, "omnigen.generate")
    debug = run("omnigen.generate", f"ckpt={missing}", "prompt=a red circle", debug=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "MissingPath" in debug.stderr


@pytest.mark.parametrize(
    "module, args, case",
    [
        ("omnigen.evaluate", ["ckpt={}"], "truncated"),
        ("omnigen.convert", ["to-diffusers", "{}", "{out}"], "release"),
        ("omnigen.app", ["ckpt={}"], "foreign lightning"),
    ],
)
def test_commands_that_load_a_checkpoint_name_a_bad_one_in_one_line(cases, tmp_path, module, args, case):
    given, named, says = cases[case]
    result = run(module, *[a.format(given, out=tmp_path / "out") for a in args])
    line = one_line(result.stderr, module)
    assert result.returncode == 2 and str(named) in line and says in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "module, args, says",
    [
        ("omnigen.report", ["out={out}", "arms.a=[{missing}]"], "{missing}: no such file or directory"),
        ("omnigen.speedrun", ["out={out}", "rows.a=[{missing}]", "control=a"], "{missing}: no such file"),
        ("omnigen.speedrun", ["out={out}", "row.a=[{missing}]"], "unknown key 'row' (did you mean 'rows'?)"),
    ],
)
def test_report_and_speedrun_name_a_missing_run_and_a_mistyped_key(tmp_path, module, args, says):
    names = {"out": tmp_path / "out", "missing": tmp_path / "runs" / "a_s0"}
    result = run(module, *[a.format(**names) for a in args])
    assert result.returncode == 2 and says.format(**names) in one_line(result.stderr, module)
    assert not (tmp_path / "out").exists()


def test_fit_ckpt_path_missing_is_one_line__needs_fit_to_call_check_resume_checkpoint(tmp_path):
    """Passes once omnigen.fit calls omnigen.checkpoints.format.check_resume_checkpoint inside run_main."""
    missing = tmp_path / "nope.ckpt"
    result = run("omnigen.fit", f"ckpt_path={missing}", f"hydra.run.dir={tmp_path / 'run'}", "logger=csv")
    assert result.returncode == 2 and str(missing) in one_line(result.stderr, "omnigen.fit")
