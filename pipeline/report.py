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


def build_report(base: str, out: Path, plots_dir: Path, plots_url: str | None, cwd: Path) -> str:
    """Run the DVC diffs and return the markdown; writes DVC's plots into ``plots_dir``."""
    _, base_sha, head_sha = check_repo(cwd, base)
    tmp = _replace_plots_dir(plots_dir, cwd)  # first, so a bad --plots-dir fails before any work
    try:
        params = _dvc(["params", "diff", "--md", base], cwd).stdout
        metrics = _dvc(["metrics", "diff", "--md", base], cwd).stdout
        r = _dvc(["plots", "diff", base, "--out", str(tmp)], cwd)
        # The same images again, with which plot and revision each is: files into static/, JSON on stdout.
        listing = _dvc(["plots", "diff", base, "--json", "--out", str(tmp / "static")], cwd).stdout
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
def main(base, out_path, plots_dir, plots_url):
    """Write a markdown report of parameter, metric and plot changes against BASE."""
    if not base or base.startswith("-"):
        raise click.BadParameter(f"{base!r} is not a revision", param_hint="--base")
    from render.atomic import atomic_write_bytes

    text = build_report(base, out_path, plots_dir, plots_url, Path.cwd())
    try:
        atomic_write_bytes(out_path, text.encode())
    except OSError as e:
        raise ReportError(f"{e.filename or out_path}: {e.strerror or e}") from None
    click.echo(f"{out_path}: report against {base} (plots in {plots_dir})", err=True)


if __name__ == "__main__":
    main()
