"""python -m omnigen.bench: see omnigen.bench."""

from omnigen.bench import main
from omnigen.utils.cli import run_main

run_main(main, "omnigen.bench")
