"""Session fixtures made by the real producers: a tiny project rendered by the renderer,
models trained by the trainer, and its evaluation written by the evaluation stage.

Tests that use them run Blender (or train, or evaluate) and are marked ``slow``
automatically; ``make test-fast`` (``pytest -m "not slow"``) leaves them out.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from tiny_profile import write_tiny_params

SWEEPS = ("azimuth", "elevation", "light", "intrinsic")
PRODUCED = ("tiny_project", "tiny_models", "tiny_eval")  # the fixtures below


def pytest_collection_modifyitems(items):
    for item in items:
        if set(PRODUCED) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def _render(root: Path, params: Path) -> None:
    from render.engine import render_sweep
    from render.job import job_from_params
    from render.params import load_params

    p = load_params(params)
    for split in ("train", "test"):
        for sweep in SWEEPS:
            render_sweep(job_from_params(p, sweep, split), root / "data" / split / sweep, workers=1, progress=False)
    for sweep in ("grid", "recognition"):
        render_sweep(job_from_params(p, sweep, "test"), root / "data" / sweep, workers=1, progress=False)


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory) -> Path:
    """data/{train,test}/<sweep>, data/grid and data/recognition of the tiny profile, rendered by Blender."""
    root = tmp_path_factory.mktemp("tiny_project")
    _render(root, write_tiny_params(root / "params.yaml"))
    return root


def sweep_dirs(root: Path, split: str) -> list[Path]:
    """The four sweep directories of a split of the tiny project."""
    return [root / "data" / split / s for s in SWEEPS]


@pytest.fixture(scope="session")
def tiny_models(tiny_project) -> Path:
    """models/dcign and models/baseline trained for a few steps by the trainer on the rendered shards."""
    from dcign.config import load_config
    from dcign.train import train

    cfg = load_config(tiny_project / "params.yaml")
    for name, method in (("dcign", "dcign"), ("baseline", "vae")):
        train(replace(cfg, method=method), sweep_dirs(tiny_project, "train"), tiny_project / "models" / name)
    return tiny_project


@pytest.fixture(scope="session")
def tiny_eval(tiny_models) -> tuple[Path, dict]:
    """eval/ of the tiny project written by the evaluation stage; returns (project root, metrics)."""
    from pipeline.evaluation.evaluate import config_from_params, evaluate, load_data
    from render.params import load_params

    root = tiny_models
    cfg = config_from_params(load_params(root / "params.yaml"))
    grid, recog = root / "data" / "grid", root / "data" / "recognition"
    data = load_data(sweep_dirs(root, "test"), grid, recog, sweep_dirs(root, "train"), cfg)
    models = {"dcign": root / "models" / "dcign", "baseline": root / "models" / "baseline"}
    return root, evaluate(models, data, root / "eval", cfg)
