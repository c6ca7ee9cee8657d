"""``dcign-experiments``: keep DVC experiments' params and metrics in a committed file, and report them.

DVC keeps experiments as git refs and their outputs in the DVC cache; neither travels with a clone
unless pushed. ``collect`` copies what a study needs out of ``dvc exp show --json`` into a JSON
record (``docs/experiments/runs.json`` by default), merged by experiment name so that a study can
grow over several sessions; ``report`` turns the record into the markdown table of
``docs/experiments.md`` (between its ``<!-- runs:start -->`` / ``<!-- runs:end -->`` markers), a
seed summary (mean ± std of runs that differ only in ``seed``) and a plot of the headline metrics.

    dcign-experiments collect                      # after dvc exp run / dvc queue start
    dcign-experiments report                       # rewrite the table, the summary and the plot
    dcign-experiments seeds                        # print mean ± std over runs that differ only in seed
    dcign-experiments readme NAME...               # docs/results.md's results and targets tables, README's headline
    dcign-experiments compare eval/metrics.json NAME...   # one evaluation against the named runs' spread
    dcign-experiments add NAME --params P --metrics M --train dcign=DIR --train baseline=DIR
                                                   # a run made outside `dvc exp` (stage commands by hand)
    dcign-experiments profile NAME... --default NAME...    # README's full-profile table against the default
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import click
import numpy as np
import yaml
from scipy import stats

from pipeline.markers import MarkerError, replace_between
from pipeline.study.record import (
    HEADLINE,
    IGNORED_PARAMS,
    RESULTS_ROWS,
    RUNS,
    dig,
    flatten,
    load_runs,
    read_record,
    seed_groups,
)
from render.atomic import atomic_write_bytes, atomic_write_json

DOC = Path("docs/experiments.md")
PLOT = Path("docs/experiments/headline.png")
RESULTS_DOC = Path("docs/results.md")  # the results and targets tables of the default profile's seeds

PARAM_PREFIXES = ("seed", "train.", "render.fixed_fraction", "render.train_batches")


class ExperimentsError(click.ClickException):
    """A record or report that cannot be made (one line)."""


def parse_exp_show(rows: list) -> dict[str, dict]:
    """``dvc exp show --json`` -> {experiment name: {"rev", "params" (flat), "metrics" (eval), "train"}}."""
    found: dict[str, dict] = {}

    def visit(entry: dict) -> None:
        data = entry.get("data") or {}
        name = entry.get("name") or data.get("name")
        metrics = (data.get("metrics") or {}).get("eval/metrics.json", {}).get("data")
        params = (data.get("params") or {}).get("params.yaml", {}).get("data")
        if name and metrics and params:
            train = {
                m: (data["metrics"].get(f"dvclive/{m}/metrics.json") or {}).get("data", {})
                for m in ("dcign", "baseline")
            }
            found[name] = {
                "rev": data.get("rev") or entry.get("rev"),
                "timestamp": data.get("timestamp"),
                "params": flatten(params),
                "metrics": metrics,
                "train": {m: {k: t.get(k) for k in TRAIN_KEYS} for m, t in train.items()},
            }

    for row in rows:  # a row is a base commit (or the workspace); its experiments hang below it
        for exp in row.get("experiments") or []:
            state = (exp.get("executor") or {}).get("state", "success")
            if state != "success":  # queued, running or failed: no metrics of its own yet
                continue
            for rev in exp.get("revs") or []:
                visit({**rev, "name": rev.get("name") or exp.get("name")})
    return found


TRAIN_KEYS = ("images_per_s", "elapsed_s", "final_kl")  # what the record keeps of a training's dvclive summary


def _read_mapping(path: Path, what: str, loader) -> dict:
    try:
        data = loader(Path(path).read_text())
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise ExperimentsError(f"{path}: not a readable {what} ({getattr(e, 'strerror', None) or e})") from None
    if not isinstance(data, dict):
        raise ExperimentsError(f"{path}: not a readable {what} (expected a mapping)")
    return data


def read_metrics(path: Path) -> dict:
    """An evaluation's metrics.json, or a one-line error naming it."""
    m = _read_mapping(path, "metrics file", json.loads)
    if "dcign" not in m:
        raise ExperimentsError(f"{path}: no 'dcign' section (write it with dcign-evaluate)")
    return m


def hand_run(params: Path, metrics: Path, train: dict[str, Path], rev: str, timestamp: str) -> dict:
    """The record of a run made outside ``dvc exp`` (the stage commands run by hand, e.g. two trainings
    side by side): the same fields ``collect`` takes from ``dvc exp show``, read from the run's files —
    the params file it ran with, the evaluation's metrics.json and each training's dvclive directory."""
    p = _read_mapping(params, "params file", yaml.safe_load)
    m = read_metrics(metrics)
    logs = {model: _read_mapping(Path(d) / "metrics.json", "dvclive summary", json.loads) for model, d in train.items()}
    return {
        "rev": rev,
        "timestamp": timestamp,
        "params": flatten(p),
        "metrics": m,
        "train": {model: {k: t.get(k) for k in TRAIN_KEYS} for model, t in logs.items()},
    }


def collect(runs_path: Path, cwd: Path = Path(".")) -> dict:
    """Merge the experiments that ``dvc exp show --json`` lists into the record at ``runs_path``."""
    r = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--json", "--all-commits"], cwd=cwd, capture_output=True, text=True
    )
    if r.returncode != 0:
        raise ExperimentsError(f"dvc exp show failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    try:
        found = parse_exp_show(json.loads(r.stdout))
    except json.JSONDecodeError as e:
        raise ExperimentsError(f"dvc exp show printed no JSON ({e})") from None
    _merge(runs_path, found)
    return found


def _merge(runs_path: Path, runs: dict) -> None:
    """Write ``runs`` into the record at ``runs_path`` (created if missing), replacing runs of the same name."""
    record = read_record(runs_path) if runs_path.exists() else {}
    record.update(runs)
    runs_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(runs_path, record)


def _changed_params(runs: dict) -> list[str]:
    keys = sorted({k for r in runs.values() for k in r["params"]})
    keep = []
    for k in keys:
        if not k.startswith(PARAM_PREFIXES) or k in IGNORED_PARAMS:
            continue
        values = {json.dumps(r["params"].get(k)) for r in runs.values()}
        if len(values) > 1:
            keep.append(k)
    return keep


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)


def _fmt_param(v) -> str:
    """A param cell: small settings (learning rates) keep two significant digits, where three
    decimals would show 5e-4 as 0.001; metrics keep ``_fmt``'s fixed decimals."""
    if isinstance(v, float) and v and abs(v) < 0.01:
        return f"{v:.2g}"
    return _fmt(v)


def table(runs: dict) -> str:
    """Markdown table: one row per experiment, the params that differ between runs, the headline metrics."""
    params = _changed_params(runs)
    head = [
        "experiment",
        *(p.removeprefix("train.").removeprefix("render.") for p in params),
        *(h[0] for h in HEADLINE),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in sorted(runs):
        r = runs[name]
        cells = [name, *(_fmt_param(r["params"].get(p)) for p in params)]
        cells += [_fmt(dig(r["metrics"].get(model, {}), path)) for _, model, path in HEADLINE]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary(runs: dict) -> str:
    """Mean ± std (sample std, n runs) of the headline metrics for every group of seeds."""
    groups = seed_groups(runs)
    if not groups:
        return "No experiments differ only in their seed yet.\n"
    head = ["runs (seeds)", *(h[0] for h in HEADLINE)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for names in groups.values():
        seeds = ", ".join(str(runs[n]["params"].get("seed")) for n in names)
        cells = [f"{' + '.join(names)} ({seeds})"]
        for _, model, path in HEADLINE:
            v = [x for n in names if (x := dig(runs[n]["metrics"].get(model, {}), path)) is not None]
            cells.append(f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else _fmt(v[0] if v else None))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _require(runs: dict, names: list[str]) -> None:
    missing = [n for n in names if n not in runs]
    if missing:
        raise ExperimentsError(f"not in the record: {', '.join(missing)}")


def _values(runs: dict, names: list[str], model: str, path: str) -> list[float]:
    """The named runs' values of one metric of one model, skipping runs that lack it."""
    return [float(x) for n in names if (x := dig(runs[n]["metrics"].get(model, {}), path)) is not None]


def _mean_sd(runs: dict, names: list[str], model: str, path: str | None) -> str:
    if path is None:
        return ""
    v = _values(runs, names, model, path)
    if not v:
        return "–"
    digits = 1 if all(x.is_integer() for x in v) else 2 if max(abs(x) for x in v) >= 10 else 3  # counts: 1
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{np.mean(v):.{digits}f} ± {np.std(v, ddof=1):.{digits}f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _note(runs: dict, names: list[str]) -> str:
    """The runs behind a table: names, seeds, steps, training speed and the dates they were recorded."""
    seeds = ", ".join(str(runs[n]["params"].get("seed")) for n in names)
    steps = sorted({str(runs[n]["params"].get("train.steps")) for n in names})
    speed = [runs[n].get("train", {}).get("dcign", {}).get("images_per_s") for n in names]
    speed = [s for s in speed if s]
    dates = sorted({str(t)[:10] for n in names if (t := runs[n].get("timestamp"))})
    label = "seed" if len(names) == 1 else "seeds"
    note = f"{_count(len(names), 'run')} ({', '.join(names)}; {label} {seeds}; {'/'.join(steps)} steps"
    if speed:
        note += f"; DC-IGN training {np.mean(speed):.0f} img/s on one thread"
    if dates:
        note += f"; recorded {', '.join(dates)}"
    return note + ")"


def results_table(runs: dict, names: list[str], rows: tuple = RESULTS_ROWS) -> str:
    """The results: mean ± sample std over the named runs (seeds) for the DC-IGN, the baseline and pixels."""
    _require(runs, names)
    lines = ["| metric | DC-IGN | entangled VAE | raw pixels |", "|---|---|---|---|"]
    for label, d, b, px in rows:
        cells = (_mean_sd(runs, names, m, path) for m, path in (("dcign", d), ("baseline", b), ("pixels", px)))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    note = f"\n\n*{_note(runs, names)}. Mean ± sample standard deviation over the runs.*\n"
    return "\n".join(lines) + note


# README's short table: the results rows whose DC-IGN figure is a headline one (as dcign-summary prints).
HEADLINE_ROWS = tuple(row for row in RESULTS_ROWS if ("dcign", row[1]) in {(m, p) for _, m, p in HEADLINE})


def headline_table(runs: dict, names: list[str], full: Path = RESULTS_DOC) -> str:
    """README's headline: the rows of ``HEADLINE_ROWS`` over the named runs, pointing at the full tables."""
    body = results_table(runs, names, HEADLINE_ROWS).split("\n\n*", 1)[0]
    return f"{body}\n\n*{_note(runs, names)}: mean ± sample standard deviation. Every figure: [{full}]({full}).*\n"


# README's full-profile table: (label, (model, path) of the default's DC-IGN, of the profile's DC-IGN, of its
# VAE); None leaves a cell empty.
PROFILE_ROWS = (
    (
        "reconstruction PSNR, dB (test sweeps)",
        *(("dcign", "reconstruction.psnr"),) * 2,
        ("baseline", "reconstruction.psnr"),
    ),
    *(
        (f"\\|corr\\| {f}", *((m, f"factors.{f}.abs_pearson") for m in ("dcign", "dcign", "baseline")))
        for f in ("azimuth", "elevation", "light")
    ),
    ("continuous MIG", *((m, "disentanglement.mig_continuous") for m in ("dcign", "dcign", "baseline"))),
    (
        "recognition across pose, rank-1",
        *(("dcign", "recognition.intrinsic.identification.top1"),) * 2,
        ("baseline", "recognition.whole.identification.top1"),
    ),
    ("the same, raw pixels", *(("pixels", "recognition.whole.identification.top1"),) * 2, None),
    *(
        row
        for f in ("azimuth", "elevation", "light")
        for row in (
            (f"{f} edit: identity kept", *((m, f"rerender.{f}.edit.identity") for m in ("dcign", "dcign", "baseline"))),
            (f"{f}: identity kept by returning the input", *(("dcign", f"rerender.{f}.input.identity"),) * 2, None),
            (
                f"{f}: identity of decode(µ) of the true target",
                *((m, f"rerender.{f}.truth_code.identity") for m in ("dcign", "dcign", "baseline")),
            ),
        )
    ),
)


def profile_table(runs: dict, names: list[str], default: list[str]) -> str:
    """README's full-profile table: the default's DC-IGN (runs ``default``) beside the profile's DC-IGN and
    entangled VAE (runs ``names``), mean ± sample std over each set of seeds."""
    _require(runs, [*names, *default])
    head = (
        f"| metric | DC-IGN, default ({_count(len(default), 'seed')}) | DC-IGN, full profile "
        f"({_count(len(names), 'seed')}) | entangled VAE, full profile ({_count(len(names), 'seed')}) |"
    )
    lines = [head, "|---|---|---|---|"]
    for label, *cols in PROFILE_ROWS:
        cells = (
            "" if col is None else _mean_sd(runs, group, *col)
            for col, group in zip(cols, (default, names, names), strict=True)
        )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    note = (
        f"\n\n*Full profile: {_note(runs, names)}; default: {_note(runs, default)}. Mean ± sample standard "
        "deviation over the seeds; every run's figures in docs/experiments/runs.json.*\n"
    )
    return "\n".join(lines) + note


def compare_table(metrics: dict, runs: dict, names: list[str]) -> tuple[str, int, int]:
    """Each figure of the results table in one evaluation (an ``eval/metrics.json``) against the named
    runs (seeds of one setting): its value, their mean ± sample std s, how many s it lies from their mean,
    and p, the chance that one more run lands at least this far from the mean.

    p is the two-sided prediction p-value of a new draw from the runs' normal distribution: with n runs,
    (x − mean) / (s·sqrt(1 + 1/n)) follows Student's t with n − 1 degrees of freedom. With three runs a
    further run lies beyond 2 s about one time in five by chance alone, so the distance in s is no test.

    Returns (markdown table, figures with p >= 0.05, figures compared). A figure the runs agree on
    exactly (s = 0) has p 1 when equal to them, else 0."""
    _require(runs, names)
    if len(names) < 2:
        raise ExperimentsError("compare needs at least two runs (a spread)")
    lines = ["| metric | model | this evaluation | the runs | s from their mean | p |", "|---|---|---|---|---|---|"]
    n_ok = n_all = 0
    for label, *paths in RESULTS_ROWS:
        for model, path in zip(("dcign", "baseline", "pixels"), paths, strict=True):
            if path is None or (here := dig(metrics.get(model, {}), path)) is None:
                continue
            v = _values(runs, names, model, path)
            if len(v) < 2:
                continue
            mean, sd = float(np.mean(v)), float(np.std(v, ddof=1))
            if sd > 0:
                z = (float(here) - mean) / sd
                p = float(2 * stats.t.sf(abs(z) / np.sqrt(1 + 1 / len(v)), df=len(v) - 1))
            else:
                z, p = (0.0, 1.0) if float(here) == mean else (float("inf"), 0.0)
            n_all += 1
            n_ok += p >= 0.05
            cells = f"{float(here):.3f} | {_mean_sd(runs, names, model, path)} | {z:+.1f} | {p:.2f}"
            lines.append(f"| {label} | {model} | {cells}{'' if p >= 0.05 else ' **< 0.05**'} |")
    return "\n".join(lines) + "\n", n_ok, n_all


def _bins_min(m: dict) -> float | None:
    """The smallest margin of the intrinsic group over pixels across the |Δazimuth| bins (rank-1)."""
    out = []
    for b in ("delta_000_030", "delta_030_060", "delta_060_090"):
        mine = dig(m, f"dcign.recognition.intrinsic.identification.{b}.top1")
        px = dig(m, f"pixels.recognition.whole.identification.{b}.top1")
        if mine is None or px is None:
            return None
        out.append(mine - px)
    return min(out)


def _at(path: str):
    return lambda m: dig(m, path)


def _diff(a: str, b: str, scale: float = 1.0):
    def f(m: dict) -> float | None:
        x, y = dig(m, a), dig(m, b)
        return None if x is None or y is None else x - scale * y

    return f


# (target of issue 12, threshold, the measured quantity per run: >= threshold is met)
TARGETS = (
    ("active intrinsic latents", 10, _at("dcign.latents.n_active.intrinsic")),
    ("reconstruction PSNR (test sweeps), dB", 30, _at("dcign.reconstruction.psnr")),
    ("\\|corr\\| azimuth", 0.95, _at("dcign.factors.azimuth.abs_pearson")),
    ("\\|corr\\| elevation", 0.90, _at("dcign.factors.elevation.abs_pearson")),
    ("\\|corr\\| light", 0.95, _at("dcign.factors.light.abs_pearson")),
    ("continuous MIG", 0.50, _at("dcign.disentanglement.mig_continuous")),
    (
        "continuous MIG − 2 × the baseline's",
        0.0,
        _diff("dcign.disentanglement.mig_continuous", "baseline.disentanglement.mig_continuous", 2.0),
    ),
    (
        "recognition rank-1: intrinsic group − raw pixels",
        0.15,
        _diff("dcign.recognition.intrinsic.identification.top1", "pixels.recognition.whole.identification.top1"),
    ),
    ("recognition rank-1: intrinsic − pixels, worst \\|Δazimuth\\| bin", 0.0, _bins_min),
    (
        "recognition rank-1: intrinsic group − the baseline's whole code",
        0.0,
        _diff("dcign.recognition.intrinsic.identification.top1", "baseline.recognition.whole.identification.top1"),
    ),
    (
        "verification AUC: intrinsic group − raw pixels",
        0.0,
        _diff("dcign.recognition.intrinsic.verification.auc", "pixels.recognition.whole.verification.auc"),
    ),
    *(
        row
        for f in ("azimuth", "elevation", "light")
        for row in (
            (
                f"re-render {f}: edit PSNR − best reference, dB",
                1.0,
                lambda m, f=f: dig(m, f"dcign.rerender.{f}.psnr_margin"),
            ),
            (f"re-render {f}: identity preserved", 0.8, lambda m, f=f: dig(m, f"dcign.rerender.{f}.edit.identity")),
            (
                f"re-render {f}: identity kept, edit − input unchanged",
                0.0,
                _diff(f"dcign.rerender.{f}.edit.identity", f"dcign.rerender.{f}.input.identity"),
            ),
            (
                f"re-render {f}: identity of decode(µ) of the true target",
                0.8,
                _at(f"dcign.rerender.{f}.truth_code.identity"),
            ),
        )
    ),
)


def targets_table(runs: dict, names: list[str]) -> str:
    """The model study's targets (issue 12) against the mean over the named runs: met or not."""
    lines = ["| target (mean of the runs) | needed | measured | met |", "|---|---|---|---|"]
    for label, threshold, measure in TARGETS:
        v = [float(x) for n in names if (x := measure(runs[n]["metrics"])) is not None]
        if not v:
            lines.append(f"| {label} | ≥ {threshold:g} | – | – |")
            continue
        digits = 1 if all(x.is_integer() for x in v) else 2 if max(abs(x) for x in v) >= 10 else 3
        shown = f"{np.mean(v):.{digits}f}" + (f" ± {np.std(v, ddof=1):.{digits}f}" if len(v) > 1 else "")
        met = "yes" if np.mean(v) >= threshold else "**no**"
        lines.append(f"| {label} | ≥ {threshold:g} | {shown} | {met} |")
    return "\n".join(lines) + "\n"


# The plot's panels: a few of the headline metrics (labels of HEADLINE).
PLOT_METRICS = ("recon PSNR", "corr el", "MIG", "recog. intr.", "AUC intr.", "identity az", "id. decode(µ) az")


def plot_rows(runs: dict) -> list[list[str]]:
    """The plot's rows: each group of runs that differ only in seed (``seed_groups``) is one row, every other
    run a row of its own; rows in the order the settings were first recorded (then by name)."""
    grouped = seed_groups(runs)
    member = {n for names in grouped.values() for n in names}
    rows = list(grouped.values()) + [[n] for n in sorted(runs) if n not in member]

    def first(names: list[str]) -> tuple[str, str]:
        return min(str(runs[n].get("timestamp") or "") for n in names), names[0]

    return sorted(rows, key=first)


def plot(runs: dict, path: Path) -> None:
    """A few headline metrics, one row per setting: a dot per run (seed), a bar at the mean of a row's seeds,
    each axis spanning the data; the band is the setting with the most seeds (mean ± sample std)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = plot_rows(runs)
    metrics = [h for h in HEADLINE if h[0] in PLOT_METRICS]
    reference = max(rows, key=len) if any(len(r) > 1 for r in rows) else None
    # a group is named by its seed-0 run (the setting's first), if it has one
    heads = [next((n for n in names if runs[n]["params"].get("seed") == 0), names[0]) for names in rows]
    labels = [h if len(names) == 1 else f"{h} ({len(names)} seeds)" for h, names in zip(heads, rows, strict=True)]
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(2.6 * len(metrics) + 2.4, 0.27 * len(rows) + 1.6), sharey=True, squeeze=False
    )
    for ax, (label, model, metric) in zip(axes[0], metrics, strict=True):
        for i, names in enumerate(rows):
            v = [float(x) for n in names if (x := dig(runs[n]["metrics"].get(model, {}), metric)) is not None]
            if i % 2:
                ax.axhspan(i - 0.5, i + 0.5, color="0.95", zorder=0)
            if not v:
                continue
            ax.plot(v, [i] * len(v), "o", ms=4, color="tab:blue" if len(v) == 1 else "tab:orange", zorder=3)
            if len(v) > 1:
                ax.plot([np.mean(v)] * 2, [i - 0.35, i + 0.35], color="k", lw=1.5, zorder=4)
        if reference:
            v = [float(x) for n in reference if (x := dig(runs[n]["metrics"].get(model, {}), metric)) is not None]
            if len(v) > 1:
                m, sd = float(np.mean(v)), float(np.std(v, ddof=1))
                ax.axvspan(m - sd, m + sd, color="tab:green", alpha=0.15, zorder=1)
        ax.set_title(label if model == "dcign" else f"{label} ({model})", fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", color="0.85", lw=0.5)
        ax.set_ylim(len(rows) - 0.5, -0.5)
    axes[0][0].set_yticks(range(len(rows)), labels, fontsize=8)
    note = "one row per setting, in the order first run; a dot per run"
    note += " (orange: seeds of one setting, black bar: their mean)"
    if reference:
        note += f"; green band: the {len(reference)} seeds of {heads[rows.index(reference)]}, mean ± sd"
    fig.suptitle(f"Headline metrics of the study's runs (DC-IGN): {note}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Keep DVC experiments in a committed record and report them."""


@main.command("collect")
@click.option("--runs", "runs_path", type=click.Path(dir_okay=False, path_type=Path), default=RUNS, show_default=True)
def collect_cmd(runs_path):
    """Copy the params and metrics of every listed DVC experiment into the record."""
    found = collect(runs_path)
    click.echo(f"{runs_path}: {len(found)} experiments collected ({', '.join(sorted(found)) or 'none'})")


@main.command("report")
@click.option("--runs", "runs_path", type=click.Path(dir_okay=False, path_type=Path), default=RUNS, show_default=True)
@click.option("--doc", type=click.Path(dir_okay=False, path_type=Path), default=DOC, show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=PLOT, show_default=True)
def report_cmd(runs_path, doc, plot_path):
    """Rewrite the runs table and the seed summary in the document, and the plot."""
    runs = load_runs(runs_path)
    if not runs:
        raise ExperimentsError(f"{runs_path}: no experiments recorded")
    try:
        text = doc.read_text()
    except OSError as e:
        raise ExperimentsError(f"{doc}: cannot read ({e.strerror or e})") from None
    text = replace_between(replace_between(text, "runs", table(runs)), "seeds", summary(runs))
    plot(runs, plot_path)
    atomic_write_bytes(doc, text.encode())
    click.echo(f"{doc}: {len(runs)} experiments; {plot_path}")


@main.command("readme")
@click.argument("names", nargs=-1, required=True)
@click.option("--runs", "runs_path", type=click.Path(dir_okay=False, path_type=Path), default=RUNS, show_default=True)
@click.option("--doc", type=click.Path(dir_okay=False, path_type=Path), default=RESULTS_DOC, show_default=True)
@click.option("--readme", type=click.Path(dir_okay=False, path_type=Path), default=Path("README.md"), show_default=True)
def readme_cmd(names, runs_path, doc, readme):
    """Rewrite the results and targets tables of the document and README's headline table (between their
    markers) from the named runs (seeds of one setting)."""
    runs = load_runs(runs_path)
    names = list(names)
    texts = {}
    for path in (doc, readme):
        try:
            texts[path] = path.read_text()
        except OSError as e:
            raise ExperimentsError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        link = doc.resolve().relative_to(readme.resolve().parent)
    except ValueError:
        link = doc
    try:
        full = replace_between(texts[doc], "results", results_table(runs, names))
        full = replace_between(full, "targets", targets_table(runs, names))
    except (MarkerError, ExperimentsError) as e:
        raise ExperimentsError(f"{doc}: {e.message}") from None
    try:
        short = replace_between(texts[readme], "headline", headline_table(runs, names, link))
    except (MarkerError, ExperimentsError) as e:
        raise ExperimentsError(f"{readme}: {e.message}") from None
    atomic_write_bytes(doc, full.encode())
    atomic_write_bytes(readme, short.encode())
    click.echo(f"{doc}, {readme}: results of {', '.join(names)}")


@main.command("compare")
@click.argument("metrics_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("names", nargs=-1, required=True)
@click.option("--runs", "runs_path", type=click.Path(dir_okay=False, path_type=Path), default=RUNS, show_default=True)
def compare_cmd(metrics_file, names, runs_path):
    """Print how far one evaluation (e.g. eval/metrics.json of a fresh `dvc repro`) lies from the named runs'
    mean, figure by figure of the results table (docs/results.md), in the runs' standard deviations."""
    metrics = read_metrics(metrics_file)
    body, n_ok, n_all = compare_table(metrics, load_runs(runs_path), list(names))
    click.echo(body + f"\n{n_ok} of {n_all} figures where one more run of {', '.join(names)} would be (p >= 0.05)")


def _git_head() -> str:
    r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else ""


def _model_dir(value: str) -> tuple[str, Path]:
    model, sep, d = value.partition("=")
    if not sep or model not in ("dcign", "baseline") or not d:
        raise click.BadParameter(f"expected dcign=DIR or baseline=DIR, got {value!r}", param_hint="'--train'")
    return model, Path(d)


@main.command("add")
@click.argument("name")
@click.option(
    "--params",
    "params_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="the params file the run used",
)
@click.option(
    "--metrics",
    "metrics_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="its evaluation (dcign-evaluate's metrics.json)",
)
@click.option(
    "--train",
    "train_dirs",
    multiple=True,
    metavar="MODEL=DIR",
    help="a training's dvclive directory: dcign=DIR, baseline=DIR",
)
@click.option("--rev", default=None, help="the commit of the code it ran (default: HEAD)")
@click.option("--timestamp", default=None, help="when it finished, ISO 8601 (default: now)")
@click.option("--runs", "runs_path", type=click.Path(dir_okay=False, path_type=Path), default=RUNS, show_default=True)
def add_cmd(name, params_path, metrics_path, train_dirs, rev, timestamp, runs_path):
    """Record a run made outside `dvc exp` (the stage commands run by hand) under NAME, from its files."""
    train = dict(_model_dir(v) for v in train_dirs)
    if timestamp is not None:
        try:
            datetime.fromisoformat(timestamp)
        except ValueError:
            raise click.BadParameter(f"not an ISO 8601 time: {timestamp!r}", param_hint="'--timestamp'") from None
    run = hand_run(
        params_path,
        metrics_path,
        train,
        rev if rev is not None else _git_head(),
        timestamp or datetime.now().isoformat(timespec="seconds"),
    )
    replaced = runs_path.exists() and name in read_record(runs_path)
    _merge(runs_path, {name: run})
    click.echo(f"{runs_path}: {'replaced' if replaced else 'added'} {name}")


@main.command("profile")
@click.argument("names", nargs=-1, required=True)
@click.option(
    "--default",
    "default",
    multiple=True,
    required=True,
    metavar="NAME",
    help="a run of the default profile to compare with (repeat for its seeds)",
)
@click.option("--runs", "runs_path", type=click.Path(dir_okay=False, path_type=Path), default=RUNS, show_default=True)
@click.option("--readme", type=click.Path(dir_okay=False, path_type=Path), default=Path("README.md"), show_default=True)
def profile_cmd(names, default, runs_path, readme):
    """Rewrite README's full-profile table (between its markers) from the named runs (the profile's seeds)
    against the --default runs."""
    table_text = profile_table(load_runs(runs_path), list(names), list(default))
    try:
        text = replace_between(readme.read_text(), "full-profile", table_text)
    except OSError as e:
        raise ExperimentsError(f"{readme}: cannot read ({e.strerror or e})") from None
    except MarkerError as e:
        raise ExperimentsError(f"{readme}: {e.message}") from None
    atomic_write_bytes(readme, text.encode())
    click.echo(f"{readme}: the full profile's {', '.join(names)} against {', '.join(default)}")


@main.command("seeds")
@click.option("--runs", "runs_path", type=click.Path(dir_okay=False, path_type=Path), default=RUNS, show_default=True)
def seeds_cmd(runs_path):
    """Print mean ± std of the headline metrics over experiments that differ only in their seed."""
    click.echo(summary(load_runs(runs_path)), nl=False)


if __name__ == "__main__":
    main()
