"""A pull request's `dvc repro --pull` with a DVC remote, timed beside the full `dvc repro` it replaces.

    python -m benchmarks.remote --json benchmarks/results/remote.json

In a scratch folder (``--work``; a temporary one by default, removed afterwards) whose
``dcign-remote`` is the default remote of ``.dvc/config`` for the clones inside it (a local-path
remote: DVC's real push, pull and checkout, with no network):

1. ``main``: a fresh clone of this repository's HEAD runs the whole default pipeline
   (``dvc repro``: every stage), pushes outputs and run-cache (``dvc push --run-cache``) and
   commits its ``dvc.lock``, as the workflow on a push to main does;
2. ``pr``: a fresh clone of that commit, with no DVC cache, runs ``dvc repro --pull`` three times,
   as a pull request's CI would: with nothing changed; after a change to the evaluation's code
   alone (a comment in ``pipeline/evaluation/encode.py``); after a change to ``README.md`` alone.

Each step records its wall time and the stages DVC ran. The clones run this interpreter's
environment (its ``bin`` first on PATH, as ``make repro`` puts ``.venv/bin``). The full run takes
about as long as ``make repro`` (20 minutes on 2 cores): run it on an idle machine.
``--params`` replaces the clone's ``params.yaml`` first (e.g. a tiny profile for a quick check).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, benchmarks/ would come first on sys.path and its render.py would shadow the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import click  # noqa: E402

from benchmarks import record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EVAL_CODE = "pipeline/evaluation/encode.py"  # a dep of the evaluate stage only


class StepError(click.ClickException):
    """A git or DVC command of the benchmark failed."""


def environment(home: Path) -> dict:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),  # no user git or DVC config
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "benchmark",
        "GIT_AUTHOR_EMAIL": "benchmark@localhost",
        "GIT_COMMITTER_NAME": "benchmark",
        "GIT_COMMITTER_EMAIL": "benchmark@localhost",
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def sh(cmd: list[str], cwd: Path, env: dict) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise StepError(f"{' '.join(cmd)} in {cwd} failed (exit {r.returncode}): {tail[0][:200]}")
    return r.stdout + r.stderr


def dvc(args: str, cwd: Path, env: dict) -> tuple[float, list[str]]:
    """Run ``dvc ARGS``; its wall time and the stages it ran (DVC prints "Running stage '<name>':")."""
    t0 = time.perf_counter()
    log = sh([sys.executable, "-m", "dvc", *args.split()], cwd, env)
    return time.perf_counter() - t0, re.findall(r"Running stage '([^']+)'", log)


def commit(repo: Path, env: dict, message: str) -> None:
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-q", "--allow-empty", "-m", message], repo, env)


def measure(work: Path, params: Path | None, log=print) -> dict:
    """Run the steps above in ``work``; the figures of each."""
    env = environment(work)
    main_repo, pr = work / "main", work / "pr"
    sh(["git", "clone", "-q", str(ROOT), str(main_repo)], work, env)
    if params is not None:
        shutil.copyfile(params, main_repo / "params.yaml")
        commit(main_repo, env, "the benchmark's params")
    steps = {}
    log("main: dvc repro (every stage) ...")
    seconds, ran = dvc("repro", main_repo, env)
    steps["full_repro"] = {"seconds": seconds, "stages_run": ran}
    log(f"main: {seconds:.0f} s, {len(ran)} stages; dvc push --run-cache ...")
    seconds, _ = dvc("push --run-cache", main_repo, env)
    steps["push"] = {"seconds": seconds}
    commit(main_repo, env, "results")

    sh(["git", "clone", "-q", str(main_repo), str(pr)], work, env)
    changes = {
        "nothing_changed": None,
        "evaluation_code_changed": (EVAL_CODE, "\n# a change to the evaluation's code alone\n"),
        "readme_changed": ("README.md", "\nA change to README alone.\n"),
    }
    for name, change in changes.items():
        if change is not None:
            path, text = change
            with open(pr / path, "a") as f:
                f.write(text)
            commit(pr, env, name)
        log(f"pr ({name.replace('_', ' ')}): dvc repro --pull ...")
        seconds, ran = dvc("repro --pull", pr, env)
        steps[name] = {"seconds": seconds, "stages_run": ran}
        log(f"pr ({name.replace('_', ' ')}): {seconds:.0f} s, ran {', '.join(ran) or 'nothing'}")
    return steps


@click.command()
@click.option("--params", "params_path", default=None, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--work", default=None, type=click.Path(file_okay=False, path_type=Path), help="Scratch folder (kept).")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False), help="Also write the figures here.")
def main(params_path: Path | None, work: Path | None, json_path: str | None) -> None:
    """Time a full `dvc repro` and a pull request's `dvc repro --pull` against a DVC remote, in fresh clones."""
    commit_id = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if work is None:
        with tempfile.TemporaryDirectory(prefix="dcign-remote-bench-") as tmp:
            steps = measure(Path(tmp), params_path, log=lambda s: click.echo(s, err=True))
    else:
        work.mkdir(parents=True, exist_ok=False)
        steps = measure(work, params_path, log=lambda s: click.echo(s, err=True))
    settings = {"params": str(params_path) if params_path else "params.yaml", "commit": commit_id}
    for name, s in steps.items():
        ran = s.get("stages_run")
        click.echo(f"{name:24s} {s['seconds']:8.1f} s" + (f"  ran {len(ran)}: {', '.join(ran)}" if ran else ""))
    if json_path:
        record.write(json_path, "remote", settings, steps)


if __name__ == "__main__":
    main()
