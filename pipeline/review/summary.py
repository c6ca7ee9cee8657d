"""``dcign-summary``: the headline figures in a terminal, instead of every metrics file of the repository.

    dcign-summary metrics [eval/metrics.json]   # after dvc repro: DC-IGN, entangled VAE, raw pixels
    dcign-summary exp [--limit 4]               # after dvc exp run: changed params and headline metrics

The figures are the study's headline (``pipeline.study.record.HEADLINE``); ``dvc metrics show`` and
``dvc exp show`` still print everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

from pipeline.study.record import HEADLINE, IGNORED_PARAMS, RESULTS_ROWS, dig, flatten

METRICS = Path("eval/metrics.json")
WIDTH = 100  # columns of the terminal the tables must fit
MODELS = (("dcign", "DC-IGN"), ("baseline", "entangled VAE"), ("pixels", "raw pixels"))
# The result rows (docs/results.md) whose DC-IGN figure is a headline one: each with the baseline's and the pixels'.
ROWS = tuple(row for row in RESULTS_ROWS if ("dcign", row[1]) in {(m, p) for _, m, p in HEADLINE})


class SummaryError(click.ClickException):
    """One-line failure naming the file or the command."""


def fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, float):
        return str(v)  # counts (ints) and strings as they are
    return f"{v:.2f}" if abs(v) >= 10 else f"{v:.3f}"


def text_table(head: list[str], rows: list[list[str]]) -> str:
    """Left-aligned first column, right-aligned others, two spaces between columns."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells):
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]) + "\n"


def metrics_summary(metrics: dict) -> str:
    """The headline rows of one evaluation, one column per model."""
    rows = []
    for label, *paths in ROWS:
        cells = [fmt(dig(metrics.get(m) or {}, p)) if p else "" for (m, _), p in zip(MODELS, paths, strict=True)]
        rows.append([label.replace("\\|", "|"), *cells])
    return text_table(["headline figure", *(name for _, name in MODELS)], rows)


def read_metrics(path: Path) -> dict:
    try:
        metrics = json.loads(path.read_text())
    except OSError as e:
        raise SummaryError(f"{path}: cannot read ({e.strerror or e}); run dvc repro first") from None
    except ValueError as e:
        raise SummaryError(f"{path}: not JSON ({e})") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("dcign"), dict):
        raise SummaryError(f"{path}: no 'dcign' section (write it with dcign-evaluate)")
    return metrics


def exp_columns(rows: list) -> list[dict]:
    """``dvc exp show --json`` -> [{"name", "params" (flat), "metrics"}]: each base commit, then its
    experiments, newest first. The workspace is left out (after dvc exp run it is the newest experiment)."""
    cols = []

    def column(entry: dict, name: str) -> dict | None:
        data = entry.get("data") or {}
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data")
        metrics = ((data.get("metrics") or {}).get(str(METRICS)) or {}).get("data")
        if not params:
            return None
        return {"name": name, "params": flatten(params), "metrics": metrics or {}, "time": data.get("timestamp")}

    for row in rows:
        rev = row.get("rev") or ""
        if rev == "workspace":
            continue
        if base := column(row, (row.get("name") or rev)[:12]):
            cols.append(base)
        found = []
        for exp in row.get("experiments") or []:
            if (exp.get("executor") or {}).get("state", "success") != "success":
                continue  # queued, running or failed: no metrics yet
            for r in exp.get("revs") or []:
                if c := column(r, r.get("name") or exp.get("name") or (r.get("rev") or "")[:7]):
                    found.append(c)
        cols += sorted(found, key=lambda c: c["time"] or "", reverse=True)
    return cols


def exp_summary(cols: list[dict], limit: int) -> str:
    """Params that differ between the base commit and its newest ``limit`` experiments, then the headline."""
    if not cols:
        return "No commit or experiment with params.yaml to show.\n"
    base, exps = cols[0], cols[1 : 1 + limit]
    shown = [base, *exps]
    keys = sorted({k for c in shown for k in c["params"]} - set(IGNORED_PARAMS))
    changed = [k for k in keys if len({json.dumps(c["params"].get(k)) for c in shown}) > 1]
    rows = [[k, *(fmt(c["params"].get(k)) for c in shown)] for k in changed]
    rows += [[f"{label} ({m})", *(fmt(dig(c["metrics"].get(m) or {}, p)) for c in shown)] for label, m, p in HEADLINE]
    out = text_table(["", *(c["name"] for c in shown)], rows)
    if not exps:
        out += "No experiment of this commit yet (dvc exp run -S ...).\n"
    elif len(cols) > len(shown):
        out += f"{len(cols) - len(shown)} more not shown (--limit; dvc exp show lists them all).\n"
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """The headline figures in a terminal (dvc metrics show / dvc exp show print everything)."""


@main.command("metrics")
@click.argument("metrics_file", type=click.Path(dir_okay=False, path_type=Path), default=METRICS)
def metrics_cmd(metrics_file):
    """Headline figures of one evaluation (default eval/metrics.json) for the three models."""
    click.echo(metrics_summary(read_metrics(metrics_file)), nl=False)


@main.command("exp")
@click.option("--limit", type=click.IntRange(min=1), default=4, show_default=True, help="Newest experiments shown.")
def exp_cmd(limit):
    """Changed params and headline metrics of HEAD and its newest experiments (dvc exp show --json)."""
    r = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        raise SummaryError(f"dvc exp show failed: {lines[-1] if lines else 'no output'}")
    try:
        rows = json.loads(r.stdout)
    except ValueError:
        raise SummaryError("dvc exp show --json printed no JSON") from None
    click.echo(exp_summary(exp_columns(rows), limit), nl=False)


if __name__ == "__main__":
    main()
