"""Reading params.yaml with one-line errors that name the file and the parameter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml

_MISSING = object()


class ParamsError(click.ClickException):
    """A missing or malformed entry in a params file (exit code 2, one line)."""

    exit_code = 2


def load_params(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    except (OSError, yaml.YAMLError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ParamsError(f"{path}: unreadable params file ({first})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    data["__file__"] = str(path)
    return data


def get(
    params: dict,
    dotted: str,
    kind: type | tuple = object,
    default: Any = _MISSING,
    positive: bool = False,
    choices: tuple | None = None,
) -> Any:
    """Look up ``a.b.c`` in params; check its type, sign and allowed values."""
    where = params.get("__file__", "params.yaml")
    node: Any = params
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            if default is not _MISSING:
                return default
            raise ParamsError(f"{where}: {dotted} is missing")
        node = node[key]
    if kind is float and isinstance(node, int) and not isinstance(node, bool):
        node = float(node)
    bad_type = not isinstance(node, kind) or (kind is int and isinstance(node, bool))
    if bad_type:
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ParamsError(f"{where}: {dotted} must be {'a positive ' if positive else 'a '}{name}, got {node!r}")
    if positive and isinstance(node, (int, float)) and node <= 0:
        raise ParamsError(f"{where}: {dotted} must be positive, got {node!r}")
    if choices is not None and node not in choices:
        raise ParamsError(f"{where}: {dotted} must be one of {', '.join(map(str, choices))}, got {node!r}")
    return node


def get_range(params: dict, dotted: str) -> tuple[float, float]:
    """A ``[min, max]`` pair of numbers with min <= max."""
    where = params.get("__file__", "params.yaml")
    value = get(params, dotted, list)
    if len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ParamsError(f"{where}: {dotted} must be a [min, max] pair of numbers, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if lo > hi:
        raise ParamsError(f"{where}: {dotted} has min > max ({lo} > {hi})")
    return lo, hi
