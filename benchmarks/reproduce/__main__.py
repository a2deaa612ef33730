"""``python -m benchmarks.reproduce``: see :mod:`benchmarks.reproduce`."""

from benchmarks.reproduce.suite import main

main()
