"""Generated sections of committed documents, between ``<!-- name:start -->`` and ``<!-- name:end -->``.

The writers of README's and docs/'s tables (``dcign-experiments``, ``dcign-baselines``, the fit
table of :mod:`pipeline.inverse.table`) replace only what lies between a section's two markers.
"""

from __future__ import annotations

import click


class MarkerError(click.ClickException):
    """A document without the markers of the section to write (one line)."""


def replace_between(text: str, name: str, body: str) -> str:
    """``text`` with what lies between section ``name``'s markers replaced by ``body``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise MarkerError(f"the document has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}{end}{tail}"
