"""A DVC stage's ``deps:`` list exactly the code it runs: the project files its module imports."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("render", "dcign", "pipeline")


def project_imports(module: str, seen: set | None = None) -> set[Path]:
    """Files of this project that ``module`` imports, directly or not (lazy imports inside functions too)."""
    seen = set() if seen is None else seen
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    if not path.is_file() or path in seen:
        return seen
    seen.add(path)
    parts = module.split(".")
    for parent in range(1, len(parts)):  # importing a.b.c runs a/__init__.py and a/b/__init__.py
        project_imports(".".join(parts[:parent]), seen)
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = parts if is_package else parts[:-1]
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in PACKAGES:
                project_imports(name, seen)
    return seen


def assert_deps_are_the_code(dvc_file: str, stage_name: str, module: str, also: tuple[str, ...] = ()) -> None:
    """The stage runs ``python -m module``; its deps hold every file that runs (and ``also``), and no other .py file."""
    stage = yaml.safe_load((ROOT / dvc_file).read_text())["stages"][stage_name]
    assert stage["cmd"].startswith(f"python -m {module} "), stage["cmd"]
    deps = [ROOT / d for d in stage["deps"]]
    used = project_imports(module) | {ROOT / p for p in also}
    for path in used:
        assert any(path == d or d in path.parents for d in deps), (
            f"{path.relative_to(ROOT)} is not in the deps of {dvc_file}'s {stage_name} stage"
        )
    for d in deps:
        if d.suffix == ".py":
            assert d in used, f"{dvc_file} lists {d.relative_to(ROOT)}, which the {stage_name} stage does not run"
        elif d.is_dir() and d.name != "data" and d.parts[len(ROOT.parts)] in PACKAGES:
            assert any(d in p.parents for p in used), f"{dvc_file} lists {d.relative_to(ROOT)}, which it does not run"
