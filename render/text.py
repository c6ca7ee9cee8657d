"""Other programs' words inside our one-line messages."""

from __future__ import annotations

MAX_QUOTED = 120  # characters of a library's own message quoted in ours


def printable(text, limit: int = MAX_QUOTED) -> str:
    """``text`` (an exception, perhaps quoting a corrupt file's raw bytes) as one short printable line."""
    text = "".join(c if c.isprintable() else "?" for c in " ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."
