"""Every `python -m omnigen.*` command but fit (Hydra's) and convert (sub-commands) takes key=value and
lists its keys under --help."""

import importlib

import pytest

from omnigen.utils.cli import UsageError, UserError, run_main

COMMANDS = {  # command module: a key its --help must list
    "omnigen.generate": "prompt",
    "omnigen.evaluate": "samples_per_family",
    "omnigen.report": "arms",
    "omnigen.speedrun": "rows",
    "omnigen.pretrain_lm": "out",
    "omnigen.data.write_shards": "maxcount",
    "omnigen.bench": "pack_tokens",
    "omnigen.app": "host",
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_lists_the_keys_and_flags_are_refused(command, capsys):
    main = importlib.import_module(command).main
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"usage: python -m {command} key=value") and f"\n  {COMMANDS[command]} (" in printed
    with pytest.raises(SystemExit, match="arguments are key=value"):
        main(["--out", "somewhere"])


def test_run_main_turns_a_user_error_into_one_line_and_leaves_bugs_and_debug_alone(capsys, monkeypatch):
    monkeypatch.delenv("OMNIGEN_DEBUG", raising=False)

    def mistake():
        raise UserError("x.ckpt: no such\nfile")

    def usage_mistake():
        raise UsageError("omnigen.x: unknown key 'a'")

    with pytest.raises(SystemExit) as exit_:
        run_main(mistake, "omnigen.x")
    assert exit_.value.code == 2 and capsys.readouterr().err == "omnigen.x: x.ckpt: no such file\n"
    with pytest.raises(SystemExit) as exit_:
        run_main(usage_mistake, "omnigen.x")
    assert exit_.value.code == 2 and capsys.readouterr().err == "omnigen.x: unknown key 'a'\n"
    with pytest.raises(KeyError):  # a bug keeps its traceback
        run_main(lambda: {}["bug"], "omnigen.x")
    monkeypatch.setenv("OMNIGEN_DEBUG", "1")
    with pytest.raises(UserError):
        run_main(mistake, "omnigen.x")
