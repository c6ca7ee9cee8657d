"""End to end: the project copied to a temp dir, a tiny profile, a real ``dvc repro``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SKIP = {
    ".venv",
    ".git",
    "data",
    "models",
    "eval",
    "dvclive",
    ".pytest_cache",
    ".ruff_cache",
    "__pycache__",
    "tmp",
    "cache",
    ".gl",
    ".whl",
}

TINY = {
    "render": {
        "resolution": 16,
        "samples": 2,
        "batch_size": 4,
        "batches_per_shard": 2,
        "train_batches": {"azimuth": 2, "elevation": 2, "light": 2, "intrinsic": 2},
        "test_batches": {"azimuth": 1, "elevation": 1, "light": 1, "intrinsic": 1},
    },
    "train": {
        "filters": [4, 4, 4],
        "latent": 6,
        "steps": 6,
        "checkpoint_every": 3,
        "log_every": 1,
        "precision": "fp32",
    },
    "evaluate": {
        "grid": {"identities": 3, "azimuths": 3, "elevations": 2, "lights": 2},
        "score_samples": 40,
        "mig_samples": 50,
        "rerender_pairs": 6,
        "traversal_faces": 2,
    },
}


def merge(base: dict, over: dict) -> dict:
    for k, v in over.items():
        base[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def run(cmd, cwd, env):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.mark.slow
def test_dvc_repro_tiny_profile(tmp_path):
    proj = tmp_path / "proj"
    shutil.copytree(ROOT, proj, ignore=lambda d, names: [n for n in names if n in SKIP])
    shutil.rmtree(proj / ".dvc" / "tmp", ignore_errors=True)
    (proj / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    (proj / "params.yaml").write_text(yaml.safe_dump(merge(params, TINY), sort_keys=False))

    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    dvc = [sys.executable, "-m", "dvc"]
    run(["git", "init", "-q"], proj, env)
    run(dvc + ["repro", "--quiet"], proj, env)

    metrics = json.loads((proj / "eval" / "metrics.json").read_text())
    for name in ("dcign", "baseline"):
        m = metrics[name]
        assert 0 < m["reconstruction"]["mse"] < 1
        assert set(m["factors"]) == {"azimuth", "elevation", "light"}
        assert "mig_continuous" in m["disentanglement"]
    assert (proj / "eval" / "plots" / "images" / "dcign_rerender.png").exists()
    shown = run(dvc + ["metrics", "show", "--json"], proj, env)
    assert "reconstruction" in shown
    status = run(dvc + ["status", "--json"], proj, env)
    assert json.loads(status or "{}") == {}, status
