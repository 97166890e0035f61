"""python -m omnigen.bench: see omnigen.bench."""

from omnigen.bench import main

main()
