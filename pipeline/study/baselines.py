"""``dcign-baselines``: the baselines table of docs/baselines.md from the runs of baselines/dvc.yaml.

Every run ``baselines/<method>-<seed>/`` holds ``eval/metrics.json`` (``dcign-evaluate`` on that
model alone). ``table`` reads it for every
method and seed of params.yaml's ``baselines:`` section and writes, between docs/baselines.md's
``<!-- baselines:start -->`` / ``<!-- baselines:end -->`` markers, one row per method with the mean
± sample standard deviation over its seeds, and a bar chart of MIG and recognition (each seed a
dot). A method whose runs come from the study's record instead (``docs/experiments/runs.json``,
e.g. the default pipeline's three seeds, which train ``dcign`` and ``vae`` with the same command
and parameters) is named with ``--from-record METHOD=MODEL@RUN,RUN,...``; the table says so.

    dcign-baselines table
    dcign-baselines table --from-record dcign=dcign@default-s0,default-s1,default-s2

``sweep`` writes, between ``<!-- sweep:start -->`` / ``<!-- sweep:end -->``, each method's main
hyper-parameter against the scores: the runs ``baselines/sweep/<name>/`` of params.yaml's
``baselines.sweep`` beside the method's default-value run ``baselines/<method>-<sweep_seed>/``
(same seed), and a plot of MIG and recognition against the value.

    dcign-baselines sweep
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import yaml

from pipeline.markers import MarkerError, replace_between
from pipeline.study.record import ADDED_PARAMS, dig
from render.atomic import atomic_write_bytes
from render.params import ParamsError, get, load_params
from render.vocabulary import FACTORS

RUNS_DIR = Path("baselines")
DOC = Path("docs/baselines.md")
PLOT = Path("docs/baselines.png")
RECORD = Path("docs/experiments/runs.json")
ANGLES = FACTORS  # the scene angles; a model is also scored on identity (recognition)

# (column, path in a model's eval/metrics.json; "{rec}" is "intrinsic" for grouped models, else "whole")
COLUMNS = (
    ("recon PSNR (dB)", "reconstruction.psnr"),
    *((f"\\|corr\\| {f[:2] if f != 'light' else 'light'}", f"factors.{f}.abs_pearson") for f in ANGLES),
    ("MIG (cont.)", "disentanglement.mig_continuous"),
    ("MIG (disc.)", "disentanglement.mig"),
    ("DCI dis.", "disentanglement.dci_disentanglement"),
    ("SAP", "disentanglement.sap"),
    ("recog. rank-1", "recognition.{rec}.identification.top1"),
    ("verif. AUC", "recognition.{rec}.verification.auc"),
    ("re-render PSNR (dB)", "rerender.mean_edit_psnr"),
    ("identity kept", "rerender.mean_edit_identity"),
)
SWEEP_PLOT = Path("docs/baselines-sweep.png")
SWEEP_COLUMNS = (  # the sweep table: the headline columns of COLUMNS
    ("recon PSNR (dB)", "reconstruction.psnr"),
    *((f"\\|corr\\| {f[:2] if f != 'light' else 'light'}", f"factors.{f}.abs_pearson") for f in ANGLES),
    ("MIG (cont.)", "disentanglement.mig_continuous"),
    ("DCI dis.", "disentanglement.dci_disentanglement"),
    ("recog. rank-1", "recognition.{rec}.identification.top1"),
    ("verif. AUC", "recognition.{rec}.verification.auc"),
    ("identity kept", "rerender.mean_edit_identity"),
)
SPEED = Path("benchmarks/results/methods.json")  # training images/s per method, side by side in one run


class BaselinesError(click.ClickException):
    """A run or document that cannot be read or written (one line naming it)."""


@dataclass
class Run:
    name: str  # where it came from: baselines/<method>-<seed> or record:<run>
    seed: int
    metrics: dict  # one model's eval/metrics.json entry, plus the re-render means over the angles
    pixels: dict | None  # the raw-pixel reference of the same evaluation


# how each file a run leaves is parsed: (parser, its errors, what it must hold)
_FORMATS = {
    "JSON": (json.loads, json.JSONDecodeError, "a JSON object"),
    "YAML": (yaml.safe_load, yaml.YAMLError, "a mapping"),
}


def _read_mapping(path: Path, kind: str = "JSON") -> dict:
    """A run's JSON or YAML file holding one mapping (one-line errors naming the file)."""
    parse, errors, holds = _FORMATS[kind]
    try:
        data = parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselinesError(f"{path}: missing (run `dvc repro baselines/dvc.yaml` first)") from None
    except (OSError, UnicodeDecodeError, errors) as e:
        raise BaselinesError(f"{path}: not readable {kind} ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise BaselinesError(f"{path}: expected {holds}")
    return data


def _with_derived(model: dict) -> dict:
    """The model's metrics with the re-render means over the three angles."""
    m = dict(model)
    rr = dict(m.get("rerender") or {})
    for key in ("psnr", "identity"):
        v = [dig(rr, f"{f}.edit.{key}") for f in ANGLES]
        if all(x is not None for x in v):
            rr[f"mean_edit_{key}"] = float(np.mean(v))
    m["rerender"] = rr
    return m


def _run_in(d: Path, method: str, seed: int) -> Run:
    """The one run in ``d`` (``eval/metrics.json`` with a model named and trained as ``method``)."""
    metrics = _read_mapping(d / "eval" / "metrics.json")
    if not isinstance(metrics.get(method), dict):
        raise BaselinesError(f"{d / 'eval' / 'metrics.json'}: no model named {method!r}")
    if metrics[method].get("method") != method:
        got = metrics[method].get("method")
        raise BaselinesError(f"{d / 'eval' / 'metrics.json'}: model {method!r} was trained as {got!r}")
    return Run(str(d), seed, _with_derived(metrics[method]), metrics.get("pixels"))


def runs_from_dir(root: Path, method: str, seeds: list[int]) -> list[Run]:
    """The runs of baselines/dvc.yaml for one method (missing seeds are an error)."""
    return [_run_in(root / f"{method}-{s}", method, s) for s in seeds]


def runs_from_record(record: dict, record_path: Path, model: str, names: list[str], method: str) -> list[Run]:
    """Runs of one model taken from the study's record (dcign-experiments collect)."""
    out = []
    for n in names:
        if n not in record:
            raise BaselinesError(f"{record_path}: no run named {n!r}")
        r = record[n]
        metrics = r.get("metrics", {}).get(model)
        if metrics is None:
            raise BaselinesError(f"{record_path}: run {n!r} has no model {model!r}")
        if metrics.get("method") != method:
            got = metrics.get("method")
            raise BaselinesError(f"{record_path}: run {n!r} model {model!r} was trained as {got!r}, not {method!r}")
        seed = int(r["params"]["seed"])
        out.append(Run(f"record:{n}", seed, _with_derived(metrics), r["metrics"].get("pixels")))
    return out


@dataclass
class SweepPoint:
    method: str
    param: str  # the train.<param> swept
    value: float
    default: bool  # the method's default value (its run of the seeds table)
    run: Run
    record: Path  # the run's own training record, <run>/dvclive/params.yaml
    settings: dict  # what it holds: the train config the run was trained with


def _trained_with(run_dir: Path, method: str, param: str, value: float, seed: int) -> tuple[Path, dict]:
    """Check the run's own training record (dvclive/params.yaml) against what the sweep says it is;
    return the record's path and contents."""
    path = run_dir / "dvclive" / "params.yaml"
    cfg = _read_mapping(path, "YAML")
    want = {"method": method, param: value, "seed": seed}
    for k, v in want.items():
        got = cfg.get(k)
        if got != v and not (isinstance(v, float) and isinstance(got, (int, float)) and np.isclose(got, v)):
            raise BaselinesError(f"{path}: trained with {k}={got!r}, the sweep says {v!r}")
    return path, cfg


def sweep_points(params: dict, runs_dir: Path) -> list[SweepPoint]:
    """Every run of ``baselines.sweep`` and each swept method's default-value run, method by method."""
    try:
        sweep = get(params, "baselines.sweep", dict)
        seed = get(params, "baselines.sweep_seed", int)
        methods = get(params, "baselines.methods", list)
    except ParamsError as e:
        raise e.as_click() from None
    points = []
    for name, entry in sweep.items():
        if not isinstance(entry, dict) or set(entry) != {"method", "param", "value"}:
            raise BaselinesError(f"baselines.sweep.{name}: expected {{method, param, value}}")
        method, param, value = entry["method"], entry["param"], entry["value"]
        if method not in methods:
            raise BaselinesError(f"baselines.sweep.{name}: method {method!r} not in baselines.methods")
        try:
            get(params, f"train.{param}", (int, float))  # a numeric training parameter
        except ParamsError as e:
            raise BaselinesError(f"baselines.sweep.{name}: {e}") from None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise BaselinesError(f"baselines.sweep.{name}: value {value!r} is not a number")
        d = runs_dir / "sweep" / name
        record, settings = _trained_with(d, method, param, float(value), seed)
        run = _run_in(d, method, seed)
        points.append(SweepPoint(method, param, float(value), False, run, record, settings))
    for method, param in dict.fromkeys((p.method, p.param) for p in points):
        d = runs_dir / f"{method}-{seed}"
        default = float(get(params, f"train.{param}", (int, float)))
        record, settings = _trained_with(d, method, param, default, seed)
        run = _run_in(d, method, seed)
        points.append(SweepPoint(method, param, default, True, run, record, settings))
    for method in dict.fromkeys(p.method for p in points):
        _same_network([p for p in points if p.method == method])
    order = {m: i for i, m in enumerate(methods)}
    return sorted(points, key=lambda p: (order[p.method], p.value))


# what may differ between the runs of one method's sweep besides the swept parameter: torch's thread
# count changes the arithmetic in the last bits only
_SWEEP_FREE = {"threads"}


def _same_network(points: list[SweepPoint]) -> None:
    """Refuse a sweep whose runs were trained with other settings than the swept one (e.g. another network)."""
    added = {k.removeprefix("train."): v for k, v in ADDED_PARAMS.items() if k.startswith("train.")}
    ref = points[0]
    first = added | ref.settings  # a run older than a parameter had its first value
    for p in points[1:]:
        cfg = added | p.settings
        for k in sorted((set(first) | set(cfg)) - _SWEEP_FREE - {ref.param}):
            if cfg.get(k) != first.get(k):
                raise BaselinesError(
                    f"{p.record}: trained with {k}={cfg.get(k)!r}, {ref.record} with {first.get(k)!r}; "
                    "a sweep changes one parameter, so retrain the runs that differ"
                )


def sweep_table(points: list[SweepPoint]) -> str:
    """One row per (method, value); the default value in bold."""
    head = ["method", "parameter", "value", *(c for c, _ in SWEEP_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points:
        v = f"{p.value:g}"
        v = f"**{v}** (default)" if p.default else v
        cells = [cell(values([p.run], c)) for _, c in SWEEP_COLUMNS]
        lines.append(f"| `{p.method}` | `train.{p.param}` | {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _default(points: list[SweepPoint], method: str) -> float:
    return next(p.value for p in points if p.method == method and p.default)


# the train settings that make the network every method shares (its likelihood, initialisation, normalisation)
NETWORK = ("recon", "conv_init", "norm")


def network(points: list[SweepPoint]) -> str:
    """The network the runs were trained with, from their own training records (e.g. "recon bernoulli, ...")."""
    seen = {tuple(str(p.settings.get(k)) for k in NETWORK) for p in points}
    return "; ".join(", ".join(f"{k} {v}" for k, v in zip(NETWORK, s, strict=True)) for s in sorted(seen))


def sweep_plot(
    points: list[SweepPoint], path: Path, reference: dict[str, list[Run]] | None = None, note: str = ""
) -> None:
    """MIG and recognition against value / default (log scale), one line per method, titled with the network
    the runs were trained with and ``note``.

    ``reference``: rows of the seeds table drawn as a band (mean ± sample std), e.g. the DC-IGN's.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("continuous MIG", "disentanglement.mig_continuous"),
        ("recognition across pose, rank-1", "recognition.{rec}.identification.top1"),
    )
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, (title, c) in zip(axes, panels, strict=True):
        for method in dict.fromkeys(p.method for p in points):
            mine = [p for p in points if p.method == method]
            (default,) = [p.value for p in mine if p.default]
            x = [p.value / default for p in mine]
            y = [values([p.run], c)[0] for p in mine]
            (line,) = ax.plot(x, y, "o-", label=f"{method} ({mine[0].param})")
            ax.plot([1.0], [y[[p.default for p in mine].index(True)]], "o", ms=10, mfc="none", color=line.get_color())
        for name, runs in (reference or {}).items():
            v = values(runs, c)
            if v:
                m, sd = float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
                ax.axhspan(m - sd, m + sd, color="0.85")
                ax.axhline(m, color="k", lw=1, label=f"{name} (seeds, mean ± sd)")
        if "recognition" in c:
            px = [p.run.pixels for p in points if p.run.pixels]
            top = dig(px[0], "recognition.whole.identification.top1") if px else None
            if top is not None:
                ax.axhline(top, color="gray", ls="--", lw=1, label="raw pixels")
        ax.set_xscale("log")
        ratios = [p.value / _default(points, p.method) for p in points]
        ticks = [2.0**k for k in range(int(np.floor(np.log2(min(ratios)))), int(np.ceil(np.log2(max(ratios)))) + 1)]
        ax.set_xticks(ticks, [f"{x:g}" for x in ticks], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("value / default (the default circled)", fontsize=8)
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7)
    axes[1].legend(*[x[-2:] for x in axes[1].get_legend_handles_labels()], fontsize=7)  # the references
    fig.suptitle(f"Seed {points[0].run.seed}, one run per value; network: {network(points)}{note}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def values(runs: list[Run], path: str) -> list[float]:
    out = []
    for r in runs:
        rec = "intrinsic" if "intrinsic" in (r.metrics.get("recognition") or {}) else "whole"
        v = dig(r.metrics, path.format(rec=rec))
        if v is not None:
            out.append(float(v))
    return out


def cell(v: list[float]) -> str:
    if not v:
        return "–"
    digits = 0 if max(abs(x) for x in v) >= 100 else 2 if max(abs(x) for x in v) >= 10 else 3
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{np.mean(v):.{digits}f} ± {np.std(v, ddof=1):.{digits}f}"


def table(rows: dict[str, list[Run]], speed: dict[str, float] | None = None) -> str:
    """One row per method (mean ± sample std over its runs), then raw pixels' recognition.

    ``speed``: training images/s per method from one side-by-side benchmark run (a last column).
    """
    head = ["method", "runs", *(c for c, _ in COLUMNS), *(["train img/s"] if speed else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, runs in rows.items():
        cells = [cell(values(runs, p)) for _, p in COLUMNS]
        if speed:
            cells.append(f"{speed[method]:.0f}" if method in speed else "–")
        lines.append(f"| `{method}` | {len(runs)} | " + " | ".join(cells) + " |")
    pixels = [r.pixels for runs in rows.values() for r in runs if r.pixels]
    if pixels:
        px = [Run("pixels", 0, p, None) for p in pixels[:1]]  # the same images for every run: one value
        cells = ["–"] * (len(COLUMNS) + bool(speed))
        for i, (_, p) in enumerate(COLUMNS):
            if p.startswith("recognition."):
                cells[i] = cell(values(px, p.replace("{rec}", "whole")))
        lines.append("| raw pixels | – | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def load_speed(path: Path) -> tuple[dict[str, float], str]:
    """images/s per method from benchmarks/methods.py's JSON, and a line saying where and when."""
    rec = _read_mapping(path)
    try:
        speed = {r["method"]: float(r["images_per_s"]) for r in rec["results"]["rows"]}
        where = f"{rec['machine']['cpu']}, {rec['settings']['threads']} threads, {rec['date']}"
    except (KeyError, TypeError, ValueError) as e:
        raise BaselinesError(f"{path}: not a benchmarks.methods record ({e})") from None
    return speed, where


def sources(rows: dict[str, list[Run]]) -> str:
    lines = []
    for method, runs in rows.items():
        lines.append(f"- `{method}`: " + ", ".join(f"{r.name} (seed {r.seed})" for r in runs))
    return "\n".join(lines) + "\n"


def plot(rows: dict[str, list[Run]], path: Path) -> None:
    """Continuous MIG and recognition rank-1 per method: bar = mean, bar line = sample std, dot = one seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("continuous MIG", "disentanglement.mig_continuous"),
        ("recognition across pose, rank-1", "recognition.{rec}.identification.top1"),
    )
    names = list(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, (title, p) in zip(axes, panels, strict=True):
        for i, m in enumerate(names):
            v = values(rows[m], p)
            if not v:
                continue
            sd = np.std(v, ddof=1) if len(v) > 1 else 0.0
            ax.bar(i, np.mean(v), yerr=sd, color="tab:orange" if m == "dcign" else "tab:blue", capsize=4)
            ax.plot([i] * len(v), v, "k.", ms=5)
        if "recognition" in p:
            px = [r.pixels for m in names for r in rows[m] if r.pixels]
            top = dig(px[0], "recognition.whole.identification.top1") if px else None
            if top is not None:
                ax.axhline(top, color="gray", ls="--", lw=1, label="raw pixels")
                ax.legend(fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def parse_from_record(specs: tuple[str, ...]) -> dict[str, tuple[str, list[str]]]:
    out = {}
    for s in specs:
        method, sep, rest = s.partition("=")
        model, sep2, names = rest.partition("@")
        if not (sep and sep2 and method and model and names):
            raise BaselinesError(f"--from-record {s!r}: expected METHOD=MODEL@RUN,RUN,...")
        out[method] = (model, [n for n in names.split(",") if n])
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """The baselines table (docs/baselines.md) from the runs of baselines/dvc.yaml."""


@main.command("table")
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--runs", "runs_dir", default=RUNS_DIR, show_default=True, type=click.Path(path_type=Path))
@click.option("--doc", default=DOC, show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--plot", "plot_path", default=PLOT, show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--record", default=RECORD, show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--from-record", "from_record", multiple=True, help="METHOD=MODEL@RUN,RUN,...: rows from the record.")
@click.option("--speed", "speed_path", default=SPEED, show_default=True, type=click.Path(path_type=Path))
def table_cmd(params_path, runs_dir, doc, plot_path, record, from_record, speed_path):
    """Write the table and the bar chart from the runs (mean ± sample std over seeds)."""
    try:
        params = load_params(params_path)
        methods = get(params, "baselines.methods", list)
        seeds = get(params, "baselines.seeds", list)
    except ParamsError as e:
        raise e.as_click() from None
    recorded = parse_from_record(from_record)
    unknown = sorted(set(recorded) - set(methods))
    if unknown:
        raise BaselinesError(f"--from-record: {', '.join(unknown)} not in baselines.methods of {params_path}")
    rec = _read_mapping(record) if recorded else {}
    rows = {}
    for m in methods:
        if m in recorded:
            model, names = recorded[m]
            rows[m] = runs_from_record(rec, record, model, names, m)
        else:
            rows[m] = runs_from_dir(runs_dir, m, [int(s) for s in seeds])
    try:
        text = doc.read_text(encoding="utf-8")
    except OSError as e:
        raise BaselinesError(f"{doc}: {e.strerror or e}") from None
    speed, where = load_speed(speed_path) if speed_path.exists() else (None, "")
    body = table(rows, speed)
    if speed:
        body += f"\n*train img/s: `python -m benchmarks.methods` ({speed_path}; {where}).*\n"
    body += "\nRuns:\n\n" + sources(rows)
    try:
        new = replace_between(text, "baselines", body)
    except MarkerError as e:
        raise BaselinesError(f"{doc}: {e.message}") from None
    atomic_write_bytes(doc, new.encode("utf-8"))
    plot(rows, plot_path)
    click.echo(f"{doc}: table of {len(rows)} methods; {plot_path}")


@main.command("sweep")
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--runs", "runs_dir", default=RUNS_DIR, show_default=True, type=click.Path(path_type=Path))
@click.option("--doc", default=DOC, show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--plot", "plot_path", default=SWEEP_PLOT, show_default=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option("--record", default=RECORD, show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--reference", multiple=True, help="METHOD=MODEL@RUN,RUN,...: a band in the plot from the record.")
def sweep_cmd(params_path, runs_dir, doc, plot_path, record, reference):
    """Write each method's hyper-parameter sweep (table and plot) from the sweep runs."""
    try:
        params = load_params(params_path)
    except ParamsError as e:
        raise e.as_click() from None
    points = sweep_points(params, runs_dir)
    if not points:
        raise BaselinesError(f"{params_path}: baselines.sweep is empty")
    refs = parse_from_record(reference)
    rec = _read_mapping(record) if refs else {}
    bands = {m: runs_from_record(rec, record, model, names, m) for m, (model, names) in refs.items()}
    try:
        text = doc.read_text(encoding="utf-8")
    except OSError as e:
        raise BaselinesError(f"{doc}: {e.strerror or e}") from None
    body = sweep_table(points)
    body += "\nRuns: " + ", ".join(f"{p.run.name} (seed {p.run.seed})" for p in points) + ".\n"
    try:
        new = replace_between(text, "sweep", body)
    except MarkerError as e:
        raise BaselinesError(f"{doc}: {e.message}") from None
    atomic_write_bytes(doc, new.encode("utf-8"))
    today = ", ".join(f"{k} {(params.get('train') or {}).get(k)}" for k in NETWORK)
    note = "" if network(points) == today else f"\na previous network, not {params_path}'s ({today})"
    sweep_plot(points, plot_path, bands, note)
    click.echo(f"{doc}: sweep of {len(points)} runs; {plot_path}")


if __name__ == "__main__":
    main()
