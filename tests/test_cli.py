"""Every `python -m omnigen.*` command but fit (Hydra's) and convert (sub-commands) takes key=value and
lists its keys under --help."""

import importlib

import pytest

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
