"""Reading params.yaml: one reader for every stage, with one-line errors naming the file and the key.

``load_params`` reads the file; ``get`` looks a dotted key up and checks its type, sign and
allowed values. A key that is absent takes the ``default`` it is given (the stage's dataclass
default) or, without one, is an error. Every stage's command turns :class:`ParamsError` into one
line on stderr and exit status 2.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

_MISSING = object()


class _Loader(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, except that ``1e-3`` is a number.

    PyYAML's float pattern needs a dot (``1.0e-3``), so ``lr: 1e-3`` would be the string
    ``'1e-3'``: every other YAML reader, and every user, reads it as a number.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str):
    """One YAML document as this project reads it (safe, with ``1e-3`` a float)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


class ParamsError(ValueError):
    """A missing or malformed params file or entry; the message names the file and the key."""

    def as_click(self):
        """The command-line form: ``Error: <file>: <problem>`` on one line, exit status 2."""
        import click

        error = click.ClickException(str(self))
        error.exit_code = 2
        return error


def load_params(path: str | Path) -> dict:
    """The params file as a mapping; its path is kept under ``__file__`` for messages."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder or a named pipe: reading would fail or block
        raise ParamsError(f"{path}: not a regular file")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    except UnicodeDecodeError as e:
        raise ParamsError(f"{path}: not UTF-8 text (byte {e.start}); save the params file as UTF-8") from None
    except RecursionError:
        raise ParamsError(f"{path}: unreadable params file (nested too deeply)") from None
    except (OSError, yaml.YAMLError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ParamsError(f"{path}: unreadable params file ({first})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    data["__file__"] = str(path)
    return data


def source(params: dict) -> str:
    """The file a params mapping came from, for messages."""
    return params.get("__file__", "params.yaml")


def get(
    params: dict,
    dotted: str,
    kind: type | tuple = object,
    default: Any = _MISSING,
    positive: bool = False,
    choices: tuple | None = None,
) -> Any:
    """Look up ``a.b.c`` in params; check its type, sign and allowed values."""
    node: Any = params
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            if default is not _MISSING:
                return default
            raise ParamsError(f"{source(params)}: {dotted} is missing")
        node = node[key]
    if kind is float and isinstance(node, int) and not isinstance(node, bool):
        node = float(node)
    if not isinstance(node, kind) or (kind is int and isinstance(node, bool)):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        article = "a positive" if positive else "a"
        raise ParamsError(f"{source(params)}: {dotted} must be {article} {name}, got {node!r}")
    if positive and isinstance(node, (int, float)) and node <= 0:
        raise ParamsError(f"{source(params)}: {dotted} must be positive, got {node!r}")
    if choices is not None and node not in choices:
        raise ParamsError(f"{source(params)}: {dotted} must be one of {', '.join(map(str, choices))}, got {node!r}")
    return node


def get_range(params: dict, dotted: str, default: Any = _MISSING) -> tuple[float, float]:
    """A ``[min, max]`` pair of numbers with min <= max."""
    value = get(params, dotted, list, default=default)
    if len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ParamsError(f"{source(params)}: {dotted} must be a [min, max] pair of numbers, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if lo > hi:
        raise ParamsError(f"{source(params)}: {dotted} has min > max ({lo} > {hi})")
    return lo, hi
