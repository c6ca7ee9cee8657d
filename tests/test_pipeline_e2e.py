"""End to end: the project copied to a temp dir, a tiny profile, a real ``dvc repro``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_profile import write_tiny_params

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
    write_tiny_params(proj / "params.yaml")

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
    run(["git", "add", "-A"], proj, env)  # a fresh clone has commits; dvclive needs one in a git repository
    run(["git", "commit", "-q", "-m", "tiny profile"], proj, env)
    run(dvc + ["repro", "--quiet"], proj, env)

    metrics = json.loads((proj / "eval" / "metrics.json").read_text())
    for name in ("dcign", "baseline"):
        m = metrics[name]
        assert 0 < m["reconstruction"]["mse"] < 1
        assert set(m["factors"]) == {"azimuth", "elevation", "light"}
        assert "mig_continuous" in m["disentanglement"]
        assert "auc" in m["recognition"]["whole"]["verification"]
    assert metrics["baseline"]["method"] == "vae" and metrics["dcign"]["method"] == "dcign"
    assert (proj / "eval" / "calibration" / "dcign.npz").exists()
    assert (proj / "eval" / "plots" / "images" / "dcign_rerender.png").exists()
    shown = run(dvc + ["metrics", "show", "--json"], proj, env)
    assert "reconstruction" in shown
    status = run(dvc + ["status", "--json"], proj, env)
    assert json.loads(status or "{}") == {}, status
