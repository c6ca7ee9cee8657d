"""dcign-report: dvc params/metrics/plots diff against a base commit, in a throwaway git + DVC repo."""

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.review.report import main

pytestmark = pytest.mark.slow  # real git and DVC runs

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "DVC_NO_ANALYTICS": "1",
}

DVC_YAML = """\
metrics:
  - eval/metrics.json
plots:
  - eval/loss.csv:
      x: step
      y: loss
  - eval/images
"""


@pytest.fixture
def env(monkeypatch, tmp_path):
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("HOME", str(tmp_path))  # no user git config
    return tmp_path


def sh(cwd: Path, *cmd: str) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def write_results(repo: Path, mig: float, loss: list[float], grey: int) -> None:
    (repo / "eval" / "images").mkdir(parents=True, exist_ok=True)
    (repo / "eval" / "metrics.json").write_text(json.dumps({"dcign": {"mig": mig}}))
    (repo / "eval" / "loss.csv").write_text("step,loss\n" + "".join(f"{i},{v}\n" for i, v in enumerate(loss)))
    cv2.imwrite(str(repo / "eval" / "images" / "traversal.png"), np.full((4, 4), grey, np.uint8))


@pytest.fixture
def repo(env):
    """Base commit (mig 0.1) on main, then a second commit with mig 0.3."""
    repo = env / "repo"
    repo.mkdir()
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "checkout", "-q", "-b", "main")
    sh(repo, sys.executable, "-m", "dvc", "init", "-q")
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "params.yaml").write_text("train:\n  lr: 0.001\n")
    write_results(repo, 0.1, [1.0, 0.5], 10)
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "base")
    base = sh(repo, "git", "rev-parse", "HEAD")
    write_results(repo, 0.3, [0.9, 0.2], 200)
    (repo / "params.yaml").write_text("train:\n  lr: 0.002\n")
    sh(repo, "git", "commit", "-q", "-am", "better")
    return repo, base


def test_report_has_metric_change_and_plots(repo, monkeypatch):
    repo, base = repo
    monkeypatch.chdir(repo)
    r = CliRunner().invoke(main, ["--base", base, "--out", "report.md", "--plots-dir", "report_plots"])
    assert r.exit_code == 0, r.output
    md = (repo / "report.md").read_text()
    table = next(ln for ln in md.splitlines() if "dcign.mig" in ln)
    cells = [c.strip() for c in table.strip("|").split("|")]
    assert cells[0] == "eval/metrics.json" and cells[2:] == ["0.1", "0.3", "0.2"]
    assert md.startswith("# DC-IGN report") and base[:8] in md
    assert re.search(r"\| params.yaml +\| train.lr +\| 0.001 +\| 0.002 +\|", md)
    assert "[report_plots/index.html](report_plots/index.html)" in md
    assert (repo / "report_plots" / "index.html").is_file() and not list(repo.glob(".report_plots.*"))
    # The image plot from both revisions, as local files CML can upload.
    assert "### eval/images/traversal.png" in md
    images = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", md)
    assert len(images) == 2 and images[1][0] == "workspace"
    assert all((repo / src).is_file() for _, src in images)
    # A rerun replaces the plots directory; a link override is used as is.
    r = CliRunner().invoke(main, ["--base", base, "--plots-url", "https://ci.example/run/1"])
    assert r.exit_code == 0, r.output
    assert "(https://ci.example/run/1)" in (repo / "report.md").read_text()


def test_report_unknown_base_fails_with_one_line(repo, monkeypatch):
    repo, _ = repo
    monkeypatch.chdir(repo)
    r = CliRunner().invoke(main, ["--base", "no-such-branch", "--out", "report.md"])
    assert r.exit_code != 0
    assert "base revision 'no-such-branch' not found" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (repo / "report.md").exists() and not (repo / "report_plots").exists()
    # The plots directory is replaced wholesale: never one DVC did not write.
    r = CliRunner().invoke(main, ["--base", "HEAD~1", "--plots-dir", "eval"])
    assert r.exit_code != 0 and "eval: exists and is not a DVC plots output" in r.output
    assert (repo / "eval" / "metrics.json").is_file() and not (repo / "report.md").exists()


def test_report_outside_git_or_dvc_fails(env, monkeypatch):
    plain = env / "plain"
    plain.mkdir()
    monkeypatch.chdir(plain)
    r = CliRunner().invoke(main, [])
    assert r.exit_code != 0 and "not inside a git repository" in r.output
    sh(plain, "git", "init", "-q")
    r = CliRunner().invoke(main, [])
    assert r.exit_code != 0 and "not inside a DVC repository" in r.output
    assert not (plain / "report.md").exists()
