"""Speed and correctness measurements behind docs/benchmarks.md; each writes what it prints with ``--json``."""
