"""Training images/s of every ``train.method``, side by side in one run, through the real trainer.

Each method trains ``--steps`` steps on the same shards with the same params (``dcign.train.train``,
data loading and checkpointing included, into a temporary folder), one after the other, and the
trainer's own ``images_per_s`` is recorded. The ratios between methods are the figure to read;
absolute rates vary with the machine's load, so run it on an idle machine.

    python -m benchmarks.methods --data data/train --steps 150 --json benchmarks/results/methods.json
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

# Run as a script, benchmarks/ would come first on sys.path and its render.py would shadow the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import click  # noqa: E402
import torch  # noqa: E402

from benchmarks import record  # noqa: E402
from dcign.config import METHODS, load_config  # noqa: E402
from dcign.train import train  # noqa: E402
from render.vocabulary import SWEEPS  # noqa: E402


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--data", "data_root", default="data/train", show_default=True, type=click.Path(file_okay=False))
@click.option("--steps", default=150, show_default=True, type=click.IntRange(2, 100_000), help="Steps per method.")
@click.option("--methods", default=",".join(METHODS), show_default=True, help="Comma-separated train.method values.")
@click.option("--threads", default=0, show_default=True, type=click.IntRange(0, 1024), help="torch threads (0: all).")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False), help="Also write the figures here.")
def main(params_path, data_root, steps, methods, threads, json_path):
    if threads:
        torch.set_num_threads(threads)
    methods = [m for m in methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        known = ", ".join(METHODS)
        raise click.BadParameter(f"unknown method(s) {', '.join(unknown)}; known: {known}", param_hint="--methods")
    base = load_config(params_path)
    dirs = [d for d in (Path(data_root) / s for s in SWEEPS) if d.is_dir()]  # what the pipeline rendered
    if not dirs:
        raise click.BadParameter(f"{data_root}: no sweep folders ({', '.join(SWEEPS)})", param_hint="--data")
    rows = []
    click.echo(f"{'method':>12} {'img/s':>8} {'x dcign':>8} {'wall s':>7}")
    for m in methods:
        cfg = replace(base, method=m, steps=steps, checkpoint_every=steps).validate()
        with tempfile.TemporaryDirectory(prefix="dcign-bench-") as tmp:
            t0 = time.perf_counter()
            summary = train(cfg, dirs, Path(tmp) / "model")
            wall = time.perf_counter() - t0
        rows.append({"method": m, "images_per_s": summary["images_per_s"], "wall_s": wall, "steps": steps})
        ref = next((r["images_per_s"] for r in rows if r["method"] == "dcign"), None)
        ratio = f"{summary['images_per_s'] / ref:.2f}" if ref else "–"
        click.echo(f"{m:>12} {summary['images_per_s']:>8.1f} {ratio:>8} {wall:>7.1f}")
    if json_path:
        threads = torch.get_num_threads()
        settings = {"params": str(params_path), "data": str(data_root), "steps": steps, "threads": threads}
        record.write(json_path, "methods", settings, {"rows": rows}, torch=torch.__version__)


if __name__ == "__main__":
    main()
