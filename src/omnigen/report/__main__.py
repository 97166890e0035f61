"""python -m omnigen.report: see omnigen.report."""

from omnigen.report import main

main()
