"""``dcign-report``: a markdown review of the workspace's results against a base revision.

``dcign-report --base main --out report.md --plots-dir report_plots`` runs, in the current repo,
``dvc params diff --md``, ``dvc metrics diff --md`` and ``dvc plots diff --out`` against ``--base``
and writes ``report.md``: the parameter and metric tables, a link to DVC's interactive plots
page (``<plots-dir>/index.html``) and the image plots side by side per revision (local paths,
which ``cml comment create`` uploads when it posts the report on a pull request). Which image
belongs to which plot and revision comes from ``dvc plots diff --json``, not from the page.

The workspace side is whatever is checked out now (after ``dvc repro``); DVC reads the base's
metrics from git, and its DVC-cached outputs (the image plots) only if they are in the local
cache or a remote: a missing revision is reported as DVC's warning, not as an error.

Each headline figure's change (``pipeline.study.record.HEADLINE``, from ``dvc metrics diff --json``)
is marked as within or beyond the spread over training seeds that the study's record
(``--runs``, ``docs/experiments/runs.json``) holds for the base's settings: the newest group of
recorded runs that differ from the base's ``params.yaml`` only in ``seed``. Two runs that differ
only in their seed differ by (x1 - x2) / (s * sqrt(2)) ~ Student's t with n - 1 degrees of freedom
(s the sample std of the n recorded runs); a change with a two-sided p below 0.05 is beyond seed
noise. Where no such runs are recorded the report says so and labels nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import numpy as np
import yaml
from scipy import stats

from pipeline.study.record import HEADLINE, IGNORED_PARAMS, OTHER_PIPELINES, RUNS, dig, flatten, load_runs, seed_groups

METRICS = "eval/metrics.json"  # the evaluation's metrics, where the headline figures are


class ReportError(click.ClickException):
    """One-line failure (not a repo, unknown base, DVC error)."""


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except OSError as e:
        raise ReportError(f"cannot run {cmd[0]}: {e.strerror or e}") from None


def _dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # The interpreter running this command has dvc installed: no reliance on PATH.
    r = _run([sys.executable, "-m", "dvc", *args], cwd)
    if r.returncode != 0:
        raise ReportError(f"dvc {args[0]} {args[1]} failed: {_last_line(r.stderr or r.stdout)}")
    return r


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def check_repo(cwd: Path, base: str) -> tuple[Path, str, str]:
    """(git top level, base commit SHA, HEAD SHA or ''), or ReportError naming what is missing."""
    r = _run(["git", "rev-parse", "--show-toplevel"], cwd)
    if r.returncode != 0:
        raise ReportError(f"{cwd}: not inside a git repository")
    top = Path(r.stdout.strip())
    here = cwd.resolve()
    if not any((d / ".dvc").is_dir() for d in (here, *here.parents) if d == top or top in d.parents):
        raise ReportError(f"{cwd}: not inside a DVC repository (no .dvc directory up to {top}; run `dvc init`)")
    r = _run(["git", "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"], cwd)
    if r.returncode != 0:
        raise ReportError(f"base revision {base!r} not found in {top} (fetch it first, e.g. git fetch origin {base})")
    head = _run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], cwd)
    return top, r.stdout.strip(), head.stdout.strip() if head.returncode == 0 else ""


def plot_images(listing: str, static: Path) -> list[tuple[str, str, Path]]:
    """(plot path, revision, image file) of every image plot in ``dvc plots diff --json`` output.

    DVC names each image file after its revision and plot; the files are looked up in ``static``.
    """
    try:
        data = json.loads(listing).get("data") or {}
    except (json.JSONDecodeError, AttributeError):
        raise ReportError(f"dvc plots diff --json gave no JSON: {_last_line(listing)}") from None
    found = []
    for plot, entries in data.items():
        for entry in entries:
            path = static / Path(entry.get("url") or "").name
            if entry.get("type") == "image" and path.is_file():
                found += [(plot, rev, path) for rev in entry.get("revisions") or [""]]
    return found


def _replace_plots_dir(plots_dir: Path, cwd: Path) -> Path:
    """A fresh temporary directory next to ``plots_dir``; refuses to clobber a directory DVC did not write."""
    target, here = plots_dir.resolve(), cwd.resolve()
    if target == here or target in here.parents or (plots_dir / ".git").exists():  # it is replaced wholesale
        raise ReportError(f"{plots_dir}: contains the working directory or a repository; choose another --plots-dir")
    if plots_dir.exists() and not (
        (plots_dir / "index.html").is_file() or (plots_dir.is_dir() and not any(plots_dir.iterdir()))
    ):
        raise ReportError(f"{plots_dir}: exists and is not a DVC plots output (no index.html); choose --plots-dir")
    plots_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=plots_dir.parent, prefix=f".{plots_dir.name}."))


def _section(title: str, table: str, empty: str) -> list[str]:
    rows = [ln for ln in table.strip().splitlines() if ln.startswith("|")]
    return [f"## {title}", "", table.strip() if len(rows) > 2 else empty, ""]  # header + rule only: no change


def base_params(base: str, cwd: Path) -> dict | None:
    """The base revision's params.yaml (flat), or None where it has none."""
    r = _run(["git", "show", f"{base}:./params.yaml"], cwd)
    if r.returncode != 0:
        return None
    try:
        data = yaml.safe_load(r.stdout)
    except yaml.YAMLError as e:
        raise ReportError(f"params.yaml at {base}: not YAML ({_last_line(str(e))})") from None
    return flatten(data) if isinstance(data, dict) else None


def _setting(params: dict) -> dict:
    """What makes a setting of the study: every param but the seed and the ones that change no result."""
    return {
        k: v for k, v in params.items() if k != "seed" and k not in IGNORED_PARAMS and not k.startswith(OTHER_PIPELINES)
    }


def seed_spread(params: dict, runs: dict) -> tuple[list[str], list[list[str]]]:
    """(the newest group of recorded runs that differ from ``params`` only in seed, the older such groups).

    A setting rerun on later code forms a group of its own (``seed_groups``); the newest is nearest the code."""
    want = _setting(params)
    groups = [names for names in seed_groups(runs).values() if _setting(runs[names[0]]["params"]) == want]
    groups.sort(key=lambda names: max(str(runs[n].get("timestamp") or "") for n in names), reverse=True)
    return (groups[0] if groups else []), groups[1:]


def noise_verdict(old, new, spread: list[float]) -> tuple[str, float | None]:
    """(verdict, p) of one figure's change against the values of runs that differ only in seed."""
    if old is None or new is None:
        return ("not at both revisions", None)
    change = float(new) - float(old)
    if change == 0:
        return ("no change", None)
    if len(spread) < 2:
        return ("no recorded spread", None)
    sd = float(np.std(spread, ddof=1))
    # two runs of one setting differ by sd * sqrt(2); sd estimated from n runs: Student's t, n - 1 dof
    p = float(2 * stats.t.sf(abs(change) / (sd * np.sqrt(2)), df=len(spread) - 1)) if sd > 0 else 0.0
    return ("**beyond seed noise**" if p < 0.05 else "within seed noise", p)


def _num(v, sign: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, int):  # counts (active latents)
        return f"{v:{sign}d}"
    v = float(v)
    return f"{v:{sign}.2f}" if abs(v) >= 10 else f"{v:{sign}.3f}"


def headline_section(base: str, runs_path: Path, cwd: Path) -> list[str]:
    """Each headline figure at the base and in the workspace, its change and whether that is beyond seed noise."""
    listing = _dvc(["metrics", "diff", base, "--targets", METRICS, "--all", "--json"], cwd).stdout
    try:
        diff = next(iter((json.loads(listing or "{}") or {}).values()), {})
    except (json.JSONDecodeError, AttributeError):
        raise ReportError(f"dvc metrics diff --json gave no JSON: {_last_line(listing)}") from None
    lines = ["## Headline figures against seed noise", ""]
    figures = [(label, model, diff.get(f"{model}.{path}") or {}, path) for label, model, path in HEADLINE]
    if not any(d.get("old") is not None or d.get("new") is not None for _, _, d, _ in figures):
        return [*lines, f"No headline figure in `{METRICS}` at either revision.", ""]

    params = base_params(base, cwd)
    runs = load_runs(runs_path) if runs_path.is_file() else {}
    names, older = seed_spread(params, runs) if params is not None else ([], [])
    if names:
        seeds = ", ".join(str(runs[n]["params"].get("seed")) for n in names)
        lines.append(
            f"Seed spread from {len(names)} runs in `{runs_path}` that differ from `{base}`'s `params.yaml` only "
            f"in `seed`: {', '.join(names)} (seeds {seeds})"
            + (
                f"; older runs of the same settings, not used: {', '.join(n for g in older for n in g)}."
                if older
                else "."
            )
        )
    elif params is None:
        lines.append(f"`{base}` has no `params.yaml`: no seed spread to compare with; changes are not labelled.")
    else:
        where = f"no runs in `{runs_path}`" if runs_path.is_file() else f"no record at `{runs_path}`, so no runs"
        lines.append(
            f"No seed spread recorded for `{base}`'s settings ({where} differ from its `params.yaml` only in "
            "`seed`): changes are not labelled. Record seeds with `dvc exp run -S seed=N` and "
            "`dcign-experiments collect`."
        )
    table = [
        "| figure | model | base | workspace | change | seed std (runs) | p | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    beyond, changed = [], 0
    for label, model, d, path in figures:
        old, new = d.get("old"), d.get("new")
        spread = [float(x) for n in names if (x := dig(runs[n]["metrics"].get(model) or {}, path)) is not None]
        verdict, p = noise_verdict(old, new, spread)
        delta = None if old is None or new is None else new - old
        changed += bool(delta)
        if p is not None and p < 0.05:
            beyond.append(f"{label} ({model}) {_num(delta, '+')}")
        sd = f"{_num(np.std(spread, ddof=1))} ({len(spread)})" if len(spread) > 1 else "–"
        cells = [label, model, _num(old), _num(new), _num(delta, "+"), sd, "–" if p is None else f"{p:.2f}", verdict]
        table.append("| " + " | ".join(cells) + " |")
    if beyond:
        verdict_line = f"**{len(beyond)} of {len(figures)} headline figures changed beyond seed noise:** " + "; ".join(
            beyond
        )
    elif names:
        verdict_line = f"**No change beyond seed noise** ({changed} of {len(figures)} headline figures changed at all)."
    else:
        verdict_line = f"{changed} of {len(figures)} headline figures changed; none labelled."
    return [*lines, "", verdict_line, "", *table, ""]


def build_report(
    base: str, out: Path, plots_dir: Path, plots_url: str | None, cwd: Path, runs_path: Path = RUNS
) -> str:
    """Run the DVC diffs and return the markdown; writes DVC's plots into ``plots_dir``."""
    _, base_sha, head_sha = check_repo(cwd, base)
    tmp = _replace_plots_dir(plots_dir, cwd)  # first, so a bad --plots-dir fails before any work
    try:
        params = _dvc(["params", "diff", "--md", base], cwd).stdout
        metrics = _dvc(["metrics", "diff", "--md", base], cwd).stdout
        r = _dvc(["plots", "diff", base, "--out", str(tmp)], cwd)
        # The same images again, with which plot and revision each is: files into static/, JSON on stdout.
        listing = _dvc(["plots", "diff", base, "--json", "--out", str(tmp / "static")], cwd).stdout
        headline = headline_section(base, runs_path, cwd)
        if plots_dir.exists():
            shutil.rmtree(plots_dir)
        os.replace(tmp, plots_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # Keep DVC's warnings (e.g. a revision whose plots are not in the cache); drop its "file://" line.
    notes = [ln.strip() for ln in (r.stderr + r.stdout).splitlines() if ln.strip() and "file://" not in ln]

    head = f"`{head_sha[:8]}`" if head_sha else "no commit yet"
    lines = [
        f"# DC-IGN report: workspace against `{base}`",
        "",
        f"Workspace at {head} (with any uncommitted changes) compared with `{base}` (`{base_sha[:8]}`).",
        "",
        *headline,
        *_section("Parameters", params, f"No parameter changed against `{base}`."),
        *_section("Metrics", metrics, f"No metric changed against `{base}`."),
        "## Plots",
        "",
    ]
    index = plots_dir / "index.html"
    if index.is_file():
        link = plots_url or _rel(index, out)
        lines += [f"Interactive plots, every revision overlaid (`dvc plots diff {base}`): [{link}]({link})", ""]
        lines += _image_tables(plot_images(listing, plots_dir / "static"), out)
    else:
        lines += [f"DVC wrote no plots (`dvc plots diff {base}`).", ""]
    if notes:
        lines += ["DVC said:", "", *[f"> {n}" for n in notes], ""]
    return "\n".join(lines).rstrip() + "\n"


def _rel(path: Path, out: Path) -> str:
    return Path(os.path.relpath(path.resolve(), out.resolve().parent)).as_posix()


def _image_tables(images: list[tuple[str, str, Path]], out: Path) -> list[str]:
    """One table per image plot, one column per revision."""
    by_plot: dict[str, list[tuple[str, Path]]] = {}
    for plot, rev, path in images:
        by_plot.setdefault(plot, []).append((rev, path))
    lines = []
    for plot, revs in by_plot.items():
        revs.sort(key=lambda r: r[0] == "workspace")  # old -> new, as in the metrics table
        if plot:
            lines += [f"### {plot}", ""]
        lines += [
            "| " + " | ".join(rev or "-" for rev, _ in revs) + " |",
            "|" + "---|" * len(revs),
            "| " + " | ".join(f"![{rev}]({_rel(p, out)})" for rev, p in revs) + " |",
            "",
        ]
    return lines


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--base", default="main", show_default=True, help="Git revision to compare the workspace with.")
@click.option(
    "--out",
    "out_path",
    default="report.md",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Markdown report to write.",
)
@click.option(
    "--plots-dir",
    default="report_plots",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where DVC writes the plots page (index.html, static/); replaced on each run.",
)
@click.option(
    "--plots-url",
    default=None,
    help="Link for the interactive plots instead of the local index.html (e.g. the CI run's artifacts).",
)
@click.option(
    "--runs",
    "runs_path",
    default=RUNS,
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The study's record (dcign-experiments collect): the seed spread of the headline figures.",
)
def main(base, out_path, plots_dir, plots_url, runs_path):
    """Write a markdown report of parameter, metric and plot changes against BASE."""
    if not base or base.startswith("-"):
        raise click.BadParameter(f"{base!r} is not a revision", param_hint="--base")
    from render.atomic import atomic_write_bytes

    text = build_report(base, out_path, plots_dir, plots_url, Path.cwd(), runs_path)
    try:
        atomic_write_bytes(out_path, text.encode())
    except OSError as e:
        raise ReportError(f"{e.filename or out_path}: {e.strerror or e}") from None
    click.echo(f"{out_path}: report against {base} (plots in {plots_dir})", err=True)


if __name__ == "__main__":
    main()
