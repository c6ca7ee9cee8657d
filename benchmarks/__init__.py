"""Speed and correctness measurements behind README's figures; each writes what it prints with ``--json``."""
