"""python -m omnigen.report: see omnigen.report."""

from omnigen.report import main
from omnigen.utils.cli import run_main

run_main(main, "omnigen.report")
