"""End to end: the project copied to a temp dir with the tiny profile, a real ``dvc repro``, then
README's next commands exactly as written (enter .venv, ``dvc exp run -S ...``, ``dvc metrics diff``)."""

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
VENV = Path(sys.executable).parent.parent  # the environment running the tests, as `make` makes .venv
pytestmark = pytest.mark.slow


def run(cmd, cwd, env):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A fresh clone's state: the project with the tiny profile, committed once."""
    proj = tmp_path_factory.mktemp("e2e") / "proj"
    shutil.copytree(ROOT, proj, ignore=lambda d, names: [n for n in names if n in SKIP])
    shutil.rmtree(proj / ".dvc" / "tmp", ignore_errors=True)
    (proj / "dvc.lock").unlink(missing_ok=True)
    write_tiny_params(proj / "params.yaml")
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    run(["git", "init", "-q"], proj, env)
    run(["git", "add", "-A"], proj, env)
    run(["git", "commit", "-q", "-m", "tiny profile"], proj, env)
    return proj, env


def test_dvc_repro_tiny_profile(project):
    proj, env = project
    env = {**env, "PATH": f"{VENV / 'bin'}{os.pathsep}{env['PATH']}"}  # what `make repro` does
    dvc = [sys.executable, "-m", "dvc"]
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
    # the default pipeline is up to date (fit/dvc.yaml is a separate pipeline that dvc repro leaves alone)
    status = run(dvc + ["status", "dvc.yaml", "--json"], proj, env)
    assert json.loads(status or "{}") == {}, status


def test_readme_next_commands_work_as_written(project):
    """After the two commands, README says: enter the environment, then dvc exp run -S ..., dvc metrics diff."""
    proj, env = project
    if not (VENV / "bin" / "activate").is_file():
        pytest.skip(f"{sys.executable} does not run in a virtual environment")
    (proj / ".venv").symlink_to(VENV, target_is_directory=True)
    with open(proj / ".git" / "info" / "exclude", "a") as f:
        f.write(".venv\n")
    # A fresh shell: neither dvc nor the dcign-* commands on PATH until .venv is entered.
    path = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p) != VENV / "bin")
    shell = {**env, "PATH": path}
    shell.pop("VIRTUAL_ENV", None)
    steps = [
        "source .venv/bin/activate",
        "dvc exp run -S train.steps=8 -S train.invariance=0.1",
        "dvc exp show --no-pager",
        "dvc metrics diff",
    ]
    out = run(["bash", "-c", " && ".join(steps)], proj, shell)
    assert "reconstruction" in out  # dvc metrics diff lists the experiment's metrics
    for name in ("dcign", "baseline"):
        record = json.loads((proj / "models" / name / "model.json").read_text())
        assert record["step"] == 8 and record["train_config"]["invariance"] == 0.1
    assert json.loads((proj / "eval" / "metrics.json").read_text())["dcign"]["method"] == "dcign"


def test_experiments_record_report_and_results(project):
    """dcign-experiments keeps the experiment of the previous test in a record and reports it."""
    proj, env = project
    if not (proj / ".venv").exists():
        pytest.skip("needs the experiment of test_readme_next_commands_work_as_written")
    env = {**env, "PATH": f"{VENV / 'bin'}{os.pathsep}{env['PATH']}"}
    cli = [sys.executable, "-m", "pipeline.study.experiments"]
    run(cli + ["collect", "--runs", "runs.json"], proj, env)
    record = json.loads((proj / "runs.json").read_text())
    assert len(record) == 1, record.keys()
    ((name, entry),) = record.items()
    assert entry["params"]["train.invariance"] == 0.1 and entry["params"]["train.steps"] == 8
    workspace = json.loads((proj / "eval" / "metrics.json").read_text())
    assert entry["metrics"]["dcign"]["reconstruction"] == workspace["dcign"]["reconstruction"]

    (proj / "doc.md").write_text(
        "x\n<!-- runs:start -->\n<!-- runs:end -->\n<!-- seeds:start -->\n<!-- seeds:end -->\n"
    )
    run(cli + ["report", "--runs", "runs.json", "--doc", "doc.md", "--plot", "p.png"], proj, env)
    doc = (proj / "doc.md").read_text()
    assert f"| {name} |" in doc and (proj / "p.png").stat().st_size > 0

    (proj / "D.md").write_text(
        "a\n<!-- results:start -->\nold\n<!-- results:end -->\n<!-- targets:start -->\n<!-- targets:end -->\nb\n"
    )
    (proj / "R.md").write_text("r\n<!-- headline:start -->\nold\n<!-- headline:end -->\ns\n")
    run(cli + ["readme", name, "--runs", "runs.json", "--doc", "D.md", "--readme", "R.md"], proj, env)
    text = (proj / "D.md").read_text()
    psnr = workspace["dcign"]["reconstruction"]["psnr"]
    shown = f"{psnr:.2f}" if abs(psnr) >= 10 else f"{psnr:.3f}"  # as results_table rounds
    assert "old" not in text and f"| reconstruction PSNR, dB (test sweeps) | {shown} |" in text
    assert text.startswith("a\n") and text.endswith("b\n")
    # the study's targets: each the mean of the measured quantity, met when >= the threshold
    margin = workspace["dcign"]["recognition"]["intrinsic"]["identification"]["top1"]
    margin -= workspace["pixels"]["recognition"]["whole"]["identification"]["top1"]
    row = f"| recognition rank-1: intrinsic group − raw pixels | ≥ 0.15 | {margin:.3f} | "
    assert row + ("yes" if margin >= 0.15 else "**no**") + " |" in text
    assert f"| reconstruction PSNR (test sweeps), dB | ≥ 30 | {shown} | " in text
    # README's headline: the headline rows of the same table, pointing at the full one
    short = (proj / "R.md").read_text()
    assert f"| reconstruction PSNR, dB (test sweeps) | {shown} |" in short and "[D.md](D.md)" in short
    assert "old" not in short and "discretised MIG" not in short and short.endswith("s\n")

    # The baselines table can take a method's rows from the record (here both default models of the run).
    params = write_tiny_params(proj / "b.yaml", baselines={"methods": ["dcign", "vae"], "seeds": [0]})
    (proj / "B.md").write_text("<!-- baselines:start -->\n<!-- baselines:end -->\n")
    table = [sys.executable, "-m", "pipeline.study.baselines", "table", "--params", str(params), "--runs", "none"]
    table += ["--doc", "B.md", "--plot", "b.png", "--record", "runs.json", "--speed", "none.json"]
    table += ["--from-record", f"dcign=dcign@{name}", "--from-record", f"vae=baseline@{name}"]
    run(table, proj, env)
    rows = (proj / "B.md").read_text()
    mig = workspace["baseline"]["disentanglement"]["mig_continuous"]
    assert "| `vae` | 1 | " in rows and f"| {mig:.3f} |" in rows and f"record:{name} (seed" in rows
